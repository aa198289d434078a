//! Qwen3-Coder's XML calls:
//! `<tool_call><function=f><parameter=a>value</parameter></function></tool_call>`.
//! A parameter's value is JSON when it reads as JSON (numbers, objects,
//! `true`), else the text itself.

use serde_json::{Map, Value};

use super::{tagged_calls, Parsed, ToolCall};

pub(super) fn parse(text: &str) -> Option<Parsed> {
    tagged_calls(text, "<tool_call>", "</tool_call>", function)
}

pub(super) fn function(call: &str) -> Option<ToolCall> {
    let body = call.trim().strip_prefix("<function=")?;
    let (name, body) = body.split_once('>')?;
    let body = body.trim_end();
    let body = body.strip_suffix("</function>").unwrap_or(body);
    let mut arguments = Map::new();
    let mut rest = body.trim_start();
    while let Some(after) = rest.strip_prefix("<parameter=") {
        let (key, after) = after.split_once('>')?;
        let (value, after) = after.split_once("</parameter>")?;
        let value = value.strip_prefix('\n').unwrap_or(value);
        let value = value.strip_suffix('\n').unwrap_or(value);
        let parsed = serde_json::from_str::<Value>(value)
            .unwrap_or_else(|_| Value::String(value.to_owned()));
        arguments.insert(key.trim().to_owned(), parsed);
        rest = after.trim_start();
    }
    if !rest.is_empty() || name.trim().is_empty() {
        return None;
    }
    Some(ToolCall {
        name: name.trim().to_owned(),
        arguments,
    })
}
