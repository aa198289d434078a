//! How far the calls in an unfinished output have been written, so a
//! stream can send each call's id and name as soon as the name is whole
//! and its arguments as they grow (OpenAI's `tool_calls` deltas).
//!
//! For the JSON families the arguments are streamed as the model writes
//! them: the raw text of the arguments object, which only grows, so every
//! fragment sent stays a prefix of the final arguments string and the
//! client's concatenation parses to the arguments the finished output
//! reads. The XML family (`qwen3_coder`) gives a call's arguments once its
//! closing tag is there; the pythonic family gives its calls at the end.

use super::{qwen3_coder, ToolCallParser};

/// One call as far as it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallProgress {
    pub name: String,
    /// The arguments' JSON text written so far (for the JSON families the
    /// model's own text, for others the whole object once the call is).
    pub arguments: String,
    /// Whether `arguments` is all of them.
    pub arguments_done: bool,
}

/// The argument keys of the JSON families.
const ARGUMENT_KEYS: [&str; 2] = ["arguments", "parameters"];

impl ToolCallParser {
    /// The calls of `held` (the text from where the first call may start)
    /// as far as they are written, in order, up to the first whose name
    /// is not whole yet.
    pub fn progress(self, held: &str) -> Vec<CallProgress> {
        match self {
            Self::Hermes | Self::Llama3Json => json_calls(held),
            Self::Mistral => mistral_calls(held),
            Self::Qwen3Coder => qwen3_calls(held),
            Self::Llama4Pythonic => Vec::new(),
        }
    }
}

/// Mistral: `[TOOL_CALLS]f[ARGS]{...}` from the v11 tokenizers on, a JSON
/// array of calls after `[TOOL_CALLS]` before.
fn mistral_calls(held: &str) -> Vec<CallProgress> {
    const TOOL_CALLS: &str = "[TOOL_CALLS]";
    const ARGS: &str = "[ARGS]";
    let Some(start) = held.find(TOOL_CALLS) else {
        return Vec::new();
    };
    let body = &held[start + TOOL_CALLS.len()..];
    if body.trim_start().starts_with(['[', '{']) || body.trim().is_empty() {
        return json_calls(body);
    }
    let mut calls = Vec::new();
    for part in body.split(TOOL_CALLS) {
        let Some((name, args)) = part.split_once(ARGS) else {
            break;
        };
        let args = args.trim_start();
        let end = json_value_end(args);
        calls.push(CallProgress {
            name: name.trim().to_owned(),
            arguments: args[..end.unwrap_or(args.len())].to_owned(),
            arguments_done: end.is_some(),
        });
    }
    calls
}

/// Qwen3-Coder's XML: a call's name once `<function=NAME>` is whole, its
/// arguments once `</tool_call>` is.
fn qwen3_calls(held: &str) -> Vec<CallProgress> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut calls = Vec::new();
    for part in held.split(OPEN).skip(1) {
        match part.find(CLOSE) {
            Some(end) => {
                let Some(call) = qwen3_coder::function(&part[..end]) else {
                    break;
                };
                calls.push(CallProgress {
                    name: call.name,
                    arguments: serde_json::Value::Object(call.arguments).to_string(),
                    arguments_done: true,
                });
            }
            None => {
                let name = part
                    .split_once("<function=")
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(name, _)| name.trim());
                if let Some(name) = name.filter(|n| !n.is_empty()) {
                    calls.push(CallProgress {
                        name: name.to_owned(),
                        arguments: String::new(),
                        arguments_done: false,
                    });
                }
                break;
            }
        }
    }
    calls
}

/// Where the first JSON value of `text` ends, if it is whole.
fn json_value_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let mut escaped = false;
                let closed = chars.by_ref().find(|&(_, c)| {
                    let end = c == '"' && !escaped;
                    escaped = c == '\\' && !escaped;
                    end
                });
                let (j, _) = closed?;
                if depth == 0 {
                    return Some(j + 1);
                }
            }
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// What the scanner is reading inside a call object.
#[derive(Debug, Default)]
struct CallScan {
    /// Nesting depth of the call object's own fields.
    depth: usize,
    /// The key whose value comes next (or is being read).
    key: Option<String>,
    /// Where the current value began.
    value_start: Option<usize>,
    /// After `:` and before the value's first character.
    awaiting_value: bool,
    name: Option<String>,
    arguments: Option<(usize, Option<usize>)>,
}

impl CallScan {
    /// The current value ends at `end`: keeps it if it is the name or the
    /// arguments.
    fn value_ends(&mut self, text: &str, end: usize) {
        let (Some(start), Some(key)) = (self.value_start.take(), self.key.take()) else {
            return;
        };
        if key == "name" {
            self.name = serde_json::from_str::<String>(&text[start..end]).ok();
        } else if ARGUMENT_KEYS.contains(&key.as_str()) && text[start..].starts_with('{') {
            self.arguments = Some((start, Some(end)));
        }
    }

    fn progress(&self, text: &str) -> Option<CallProgress> {
        let name = self.name.clone().filter(|n| !n.is_empty())?;
        let (arguments, arguments_done) = match self.arguments {
            Some((start, Some(end))) => (text[start..end].to_owned(), true),
            Some((start, None)) => (text[start..].to_owned(), false),
            None => (String::new(), false),
        };
        Some(CallProgress {
            name,
            arguments,
            arguments_done,
        })
    }
}

/// The JSON families' calls: every object not inside another object (at
/// the top, or in a top-level array) is a call with a string `name` and
/// an arguments object under `arguments` or `parameters`. Text around them
/// (tags, `;`) is skipped. A value that is still being written counts as
/// far as it goes, when it is the arguments object.
pub fn json_calls(text: &str) -> Vec<CallProgress> {
    let bytes = text.as_bytes();
    let mut stack: Vec<u8> = Vec::new();
    let mut calls = Vec::new();
    let mut call: Option<CallScan> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let at_call_level = call.as_ref().is_some_and(|c| stack.len() == c.depth);
        if let Some(c) = call.as_mut().filter(|c| c.awaiting_value && at_call_level) {
            if !b.is_ascii_whitespace() {
                c.awaiting_value = false;
                c.value_start = Some(i);
                if b == b'{' && c.key.as_deref().is_some_and(|k| ARGUMENT_KEYS.contains(&k)) {
                    c.arguments = Some((i, None));
                }
            }
        }
        match b {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    break;
                }
                let end = i + 1;
                if let Some(c) = call.as_mut().filter(|_| at_call_level) {
                    if c.value_start == Some(start) {
                        c.value_ends(text, end);
                    } else if c.value_start.is_none() {
                        c.key = serde_json::from_str::<String>(&text[start..end]).ok();
                    }
                }
            }
            b'{' | b'[' => {
                if b == b'{' && !stack.contains(&b'{') {
                    call = Some(CallScan {
                        depth: stack.len() + 1,
                        ..CallScan::default()
                    });
                }
                stack.push(b);
            }
            b'}' | b']' => {
                stack.pop();
                if let Some(c) = call.as_mut() {
                    if stack.len() + 1 == c.depth {
                        // The call object closes (a scalar value with it).
                        c.value_ends(text, i);
                        calls.extend(c.progress(text));
                        call = None;
                    } else if stack.len() == c.depth {
                        c.value_ends(text, i + 1);
                    }
                }
            }
            b':' if at_call_level => {
                if let Some(c) = call.as_mut() {
                    c.awaiting_value = true;
                }
            }
            b',' if at_call_level => {
                if let Some(c) = call.as_mut() {
                    c.value_ends(text, i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    calls.extend(call.and_then(|c| c.progress(text)));
    calls
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client can make the model write anything (a forced regex): deep
    /// nesting, unclosed strings and stray closers are read without
    /// recursion or panic, in time linear in the text.
    #[test]
    fn hostile_call_text_is_read_without_panic() {
        let deep = "[".repeat(200_000);
        assert!(json_calls(&deep).is_empty());
        let args = format!(
            r#"{{"name": "f", "arguments": {{"a": {}"#,
            "[".repeat(100_000)
        );
        let calls = json_calls(&args);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "f");
        assert!(!calls[0].arguments_done);
        for text in [
            "]]]}}}",
            r#"{"name": "\"#,
            "\"\\",
            r#"{"name": 5, "arguments": {}}"#,
            "é{\"é\"",
        ] {
            let _ = json_calls(text);
            let _ = ToolCallParser::Mistral.progress(text);
            let _ = ToolCallParser::Qwen3Coder.progress(text);
        }
        assert_eq!(json_value_end(&"]".repeat(10)), None);
        assert_eq!(json_value_end(&format!("{}1", "[".repeat(50_000))), None);
    }
}
