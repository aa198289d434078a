//! Hermes (and Qwen2.5/Qwen3): each call a JSON object between
//! `<tool_call>` and `</tool_call>`; the last may lack its closing tag when
//! the model stopped right after the object.

use super::{named_call, tagged_calls, Parsed};

pub(super) fn parse(text: &str) -> Option<Parsed> {
    tagged_calls(text, "<tool_call>", "</tool_call>", |json| {
        named_call(
            serde_json::from_str(json.trim()).ok()?,
            &["arguments", "parameters"],
        )
    })
}
