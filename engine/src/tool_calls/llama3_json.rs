//! Llama 3.1-3.3 JSON tool calls: the output is `{"name": ...,
//! "parameters": {...}}` (after `<|python_tag|>` when the model writes
//! one), several separated by `;`.

use serde_json::Value;

use super::{named_call, Parsed};

const PYTHON_TAG: &str = "<|python_tag|>";

pub(super) fn parse(text: &str) -> Option<Parsed> {
    let (content, mut rest) = match text.find(PYTHON_TAG) {
        Some(i) => (&text[..i], &text[i + PYTHON_TAG.len()..]),
        None if text.trim_start().starts_with('{') => ("", text),
        None => return None,
    };
    let mut calls = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = values.next()?.ok()?;
        calls.push(named_call(value, &["parameters", "arguments"])?);
        rest = rest[values.byte_offset()..].trim_start();
        if !rest.is_empty() {
            rest = rest.strip_prefix(';')?;
        }
    }
    (!calls.is_empty()).then(|| Parsed {
        content: content.to_owned(),
        calls,
    })
}
