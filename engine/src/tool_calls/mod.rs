//! Tool calls out of a model's text, per model family (vLLM's
//! `--tool-call-parser`).
//!
//! Each family writes its calls its own way; a [`ToolCallParser`] splits a
//! finished output into the text around the calls and the calls
//! themselves. Output that looks like a call but does not parse stays
//! text: a malformed call is the model's answer, never a server error.
//! [`StreamSplitter`] holds back text from the first sign of a call, so a
//! stream shows plain text as it comes; [`ToolCallParser::progress`] reads
//! the held calls as far as they are written, so their names and
//! arguments stream too.

mod hermes;
mod llama3_json;
mod mistral;
mod progress;
mod pythonic;
mod qwen3_coder;

pub use progress::{json_calls, CallProgress};

use serde_json::{Map, Value};

/// One call a model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    /// The arguments object.
    pub arguments: Map<String, Value>,
}

/// A finished output split into text and calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// The text outside the calls (the whole output when there are none).
    pub content: String,
    pub calls: Vec<ToolCall>,
}

/// The families, by vLLM's `--tool-call-parser` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ToolCallParser {
    /// `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` (Hermes,
    /// Qwen2.5 and Qwen3).
    Hermes,
    /// Llama 3.1-3.3: a JSON object `{"name": ..., "parameters": {...}}`,
    /// after `<|python_tag|>` or alone, several joined by `;`.
    #[value(name = "llama3_json")]
    Llama3Json,
    /// Llama 4 (and vLLM's `pythonic`): `[f(a=1), g(b="x")]`.
    #[value(name = "llama4_pythonic", alias = "pythonic")]
    Llama4Pythonic,
    /// Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}]`, or
    /// `[TOOL_CALLS]f[ARGS]{...}` from the v11 tokenizers on.
    Mistral,
    /// Qwen3-Coder's XML: `<tool_call><function=f><parameter=a>1</parameter>
    /// </function></tool_call>`.
    #[value(name = "qwen3_coder", alias = "qwen3_xml")]
    Qwen3Coder,
}

impl ToolCallParser {
    /// vLLM's name of the parser.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Llama3Json => "llama3_json",
            Self::Llama4Pythonic => "llama4_pythonic",
            Self::Mistral => "mistral",
            Self::Qwen3Coder => "qwen3_coder",
        }
    }

    /// Splits a finished output. An output whose calls do not all parse
    /// is text, whole.
    pub fn parse(self, text: &str) -> Parsed {
        let parsed = match self {
            Self::Hermes => hermes::parse(text),
            Self::Llama3Json => llama3_json::parse(text),
            Self::Llama4Pythonic => pythonic::parse(text),
            Self::Mistral => mistral::parse(text),
            Self::Qwen3Coder => qwen3_coder::parse(text),
        };
        parsed.unwrap_or_else(|| Parsed {
            content: text.to_owned(),
            calls: Vec::new(),
        })
    }

    /// Where a call may begin: the text from here on is held back while
    /// streaming. `None` when `text` shows no sign of one yet.
    fn call_start(self, text: &str) -> Option<usize> {
        let markers: &[&str] = match self {
            Self::Hermes | Self::Qwen3Coder => &["<tool_call>"],
            Self::Llama3Json => &["<|python_tag|>", "{"],
            Self::Llama4Pythonic => &["["],
            Self::Mistral => &["[TOOL_CALLS]"],
        };
        let at = markers.iter().filter_map(|m| text.find(m)).min();
        match self {
            // Both write the call as the whole output: a bracket or brace
            // only counts at its start (after blanks).
            Self::Llama3Json | Self::Llama4Pythonic => at
                .filter(|&i| text[..i].trim().is_empty() || text[..i].ends_with("<|python_tag|>"))
                .or_else(|| text.find("<|python_tag|>")),
            _ => at,
        }
    }

    /// The longest end of `text` that could be the first part of a marker
    /// (held back so `<tool_` is not shown before `call>` arrives).
    fn partial_marker(self, text: &str) -> usize {
        let markers: &[&str] = match self {
            Self::Hermes | Self::Qwen3Coder => &["<tool_call>"],
            Self::Llama3Json => &["<|python_tag|>"],
            Self::Llama4Pythonic => &[],
            Self::Mistral => &["[TOOL_CALLS]"],
        };
        markers
            .iter()
            .flat_map(|m| (1..m.len()).map(move |n| &m[..n]))
            .filter(|prefix| text.ends_with(prefix))
            .map(|prefix| prefix.len())
            .max()
            .unwrap_or(0)
    }
}

/// Streaming: shows text until a call may have started, then holds the
/// rest until the end, where [`StreamSplitter::finish`] parses it.
#[derive(Debug)]
pub struct StreamSplitter {
    parser: ToolCallParser,
    /// All text so far.
    text: String,
    /// How much of `text` has been shown.
    shown: usize,
    /// Set once a call may have started: nothing more is shown.
    holding: bool,
}

impl StreamSplitter {
    pub fn new(parser: ToolCallParser) -> Self {
        Self {
            parser,
            text: String::new(),
            shown: 0,
            holding: false,
        }
    }

    /// Adds a delta; returns the text that can be shown now.
    pub fn push(&mut self, delta: &str) -> String {
        self.text.push_str(delta);
        if self.holding {
            return String::new();
        }
        let end = match self.parser.call_start(&self.text) {
            Some(start) => {
                self.holding = true;
                start
            }
            None => self.text.len() - self.parser.partial_marker(&self.text),
        };
        let end = end.max(self.shown);
        let out = self.text[self.shown..end].to_owned();
        self.shown = end;
        out
    }

    /// The text held back since a call may have started (`None` before).
    pub fn held(&self) -> Option<&str> {
        self.holding.then(|| &self.text[self.shown..])
    }

    /// The output is complete: the text not shown yet (when no call
    /// parsed) and the calls. The splitter is empty afterwards.
    pub fn finish(&mut self) -> Parsed {
        let text = std::mem::take(&mut self.text);
        let shown = std::mem::take(&mut self.shown);
        self.holding = false;
        let parsed = self.parser.parse(&text);
        if parsed.calls.is_empty() {
            return Parsed {
                content: text[shown..].to_owned(),
                calls: Vec::new(),
            };
        }
        // What was shown is the start of the content; the rest follows.
        let content = parsed
            .content
            .strip_prefix(&text[..shown])
            .unwrap_or_default()
            .to_owned();
        Parsed {
            content,
            calls: parsed.calls,
        }
    }
}

/// The calls written between `open` and `close` tags (the last may lack
/// its closing tag, when the model stopped right after it), each read by
/// `call`, and the text around them; `None` when any call does not read.
fn tagged_calls(
    text: &str,
    open: &str,
    close: &str,
    call: impl Fn(&str) -> Option<ToolCall>,
) -> Option<Parsed> {
    let mut content = String::new();
    let mut calls = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(open) {
        content.push_str(&rest[..start]);
        let body = &rest[start + open.len()..];
        let (inner, after) = match body.find(close) {
            Some(end) => (&body[..end], &body[end + close.len()..]),
            None => (body, ""),
        };
        calls.push(call(inner)?);
        rest = after;
    }
    content.push_str(rest);
    Some(Parsed { content, calls })
}

/// A JSON object's fields, or `None` when `v` is not an object.
fn object(v: Value) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// `{"name": ..., <args_key>: {...}}` as a call; arguments given as a JSON
/// string (some models write them so) are read too.
fn named_call(v: Value, args_keys: &[&str]) -> Option<ToolCall> {
    let mut m = object(v)?;
    let name = match m.remove("name")? {
        Value::String(s) if !s.is_empty() => s,
        _ => return None,
    };
    let args = args_keys.iter().find_map(|k| m.remove(*k));
    let arguments = match args {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(s)) => object(serde_json::from_str(&s).ok()?)?,
        Some(v) => object(v)?,
    };
    Some(ToolCall { name, arguments })
}

#[cfg(test)]
mod tests;
