//! Hermes (and Qwen2.5/Qwen3): each call a JSON object between
//! `<tool_call>` and `</tool_call>`; the last may lack its closing tag when
//! the model stopped right after the object.

use super::{named_call, Parsed};

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";

pub(super) fn parse(text: &str) -> Option<Parsed> {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        content.push_str(&rest[..start]);
        let body = &rest[start + OPEN.len()..];
        let (json, after) = match body.find(CLOSE) {
            Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
            None => (body, ""),
        };
        calls.push(named_call(
            serde_json::from_str(json.trim()).ok()?,
            &["arguments", "parameters"],
        )?);
        rest = after;
    }
    content.push_str(rest);
    Some(Parsed { content, calls })
}
