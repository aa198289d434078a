//! Mistral: `[TOOL_CALLS]` then a JSON array of `{"name", "arguments"}`
//! (tokenizers before v11), or one `name[ARGS]{...}` per `[TOOL_CALLS]`
//! (v11 on).

use serde_json::Value;

use super::{named_call, object, Parsed, ToolCall};

const TOOL_CALLS: &str = "[TOOL_CALLS]";
const ARGS: &str = "[ARGS]";

pub(super) fn parse(text: &str) -> Option<Parsed> {
    let start = text.find(TOOL_CALLS)?;
    let content = text[..start].to_owned();
    let mut calls = Vec::new();
    for part in text[start + TOOL_CALLS.len()..].split(TOOL_CALLS) {
        let part = part.trim();
        if let Some((name, args)) = part.split_once(ARGS) {
            let name = name.trim();
            if name.is_empty() {
                return None;
            }
            calls.push(ToolCall {
                name: name.to_owned(),
                arguments: object(serde_json::from_str(args.trim()).ok()?)?,
            });
            continue;
        }
        match serde_json::from_str::<Value>(part).ok()? {
            Value::Array(list) => {
                for v in list {
                    calls.push(named_call(v, &["arguments", "parameters"])?);
                }
            }
            v => calls.push(named_call(v, &["arguments", "parameters"])?),
        }
    }
    (!calls.is_empty()).then_some(Parsed { content, calls })
}
