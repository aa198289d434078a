//! `tools` and `tool_choice` on the local engine, as vLLM serves them:
//! the tools go to the chat template; `auto` parses the model's own call
//! syntax with the `--tool-call-parser`; `required` and a named function
//! are enforced with a grammar (a JSON array of calls, or the named
//! function's arguments object), so they cannot fail to call.

use frontend::openai::{new_call_id, ChatCompletionRequest, FinishReason};
use frontend::providers::request_shapes::{self, ToolChoice, ToolSpec};
use frontend::ProviderError;
use serde_json::{json, Map, Value};

use crate::structured::{GrammarSpec, SpecSource};
use crate::tool_calls::{Parsed, StreamSplitter, ToolCall, ToolCallParser};

/// How the server was started for tools (`--tool-call-parser`,
/// `--enable-auto-tool-choice`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ToolSettings {
    pub parser: Option<ToolCallParser>,
    pub auto_tool_choice: bool,
}

/// How one request's output becomes tool calls.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum ToolMode {
    /// No tools, or `tool_choice: "none"`: text only.
    Off,
    /// The model may call: its output goes through the family's parser.
    Auto(ToolCallParser),
    /// The output is a JSON array of `{"name", "parameters"}` (grammar).
    Required,
    /// The output is this function's arguments object (grammar).
    Named(String),
}

/// What a request's tools change: the template's `tools`, the grammar,
/// and how the output is read.
#[derive(Debug)]
pub(super) struct ToolPlan {
    pub mode: ToolMode,
    /// `tools` as the chat template receives them (`None`: not rendered).
    pub template_tools: Option<Value>,
    pub grammar: Option<SpecSource>,
}

impl ToolPlan {
    /// Reads `tools` and `tool_choice`. Refused with a 400: tools on a
    /// template that never reads them, `auto` without a parser (as vLLM
    /// refuses it), a named function that is not among the tools.
    pub fn of(
        req: &ChatCompletionRequest,
        settings: ToolSettings,
        template_reads_tools: bool,
    ) -> Result<Self, ProviderError> {
        let tools = request_shapes::tools(req.tools.as_ref())?;
        let choice = request_shapes::tool_choice(req.tool_choice.as_ref())?;
        let off = Self {
            mode: ToolMode::Off,
            template_tools: None,
            grammar: None,
        };
        let choice = match (tools.is_empty(), choice) {
            (true, None | Some(ToolChoice::None)) => return Ok(off),
            (true, Some(_)) => {
                return Err(ProviderError::invalid(
                    "tool_choice",
                    "tool_choice needs tools",
                ))
            }
            (false, Some(ToolChoice::None)) => return Ok(off),
            (false, choice) => choice.unwrap_or(ToolChoice::Auto),
        };
        if !template_reads_tools {
            return Err(ProviderError::invalid(
                "tools",
                "this model's chat template does not support tools; start the server with a \
                 --chat-template that renders them",
            ));
        }
        let template_tools = Some(Value::Array(
            req.tools
                .as_ref()
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        ));
        let (mode, grammar) = match choice {
            ToolChoice::Auto => {
                let parser = settings
                    .parser
                    .filter(|_| settings.auto_tool_choice)
                    .ok_or_else(|| {
                        ProviderError::invalid(
                            "tool_choice",
                            "\"auto\" tool choice requires --enable-auto-tool-choice and \
                             --tool-call-parser to be set",
                        )
                    })?;
                (ToolMode::Auto(parser), None)
            }
            ToolChoice::Required => {
                // OpenAI's `parallel_tool_calls: false`: one call at most.
                let one = req.extra.get("parallel_tool_calls") == Some(&Value::Bool(false));
                (
                    ToolMode::Required,
                    Some(grammar("tool_choice", required_schema(&tools, one))),
                )
            }
            ToolChoice::Function(name) => {
                let tool = tools.iter().find(|t| t.name == name).ok_or_else(|| {
                    ProviderError::invalid(
                        "tool_choice",
                        format!("tool_choice names '{name}', which is not among the tools"),
                    )
                })?;
                (
                    ToolMode::Named(name),
                    Some(grammar("tool_choice", parameters(tool))),
                )
            }
            ToolChoice::None => (ToolMode::Off, None),
        };
        Ok(Self {
            mode,
            template_tools,
            grammar,
        })
    }
}

fn grammar(param: &str, schema: Value) -> SpecSource {
    SpecSource::new(param, GrammarSpec::JsonSchema(schema))
}

/// A tool's arguments schema (any object when it has none).
fn parameters(tool: &ToolSpec) -> Value {
    tool.parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}))
}

/// vLLM's schema for `tool_choice: "required"`: one or more calls (just
/// one when `single`), each naming one of the tools with that tool's
/// arguments.
fn required_schema(tools: &[ToolSpec], single: bool) -> Value {
    let calls: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": [t.name]},
                    "parameters": parameters(t),
                },
                "required": ["name", "parameters"],
                "additionalProperties": false,
            })
        })
        .collect();
    let mut schema = json!({"type": "array", "minItems": 1, "items": {"anyOf": calls}});
    if single {
        schema["maxItems"] = json!(1);
    }
    schema
}

/// One call in OpenAI's response shape (arguments as a JSON string).
pub(super) fn call_json(call: &ToolCall) -> Value {
    json!({
        "id": new_call_id(),
        "type": "function",
        "function": {
            "name": call.name,
            "arguments": Value::Object(call.arguments.clone()).to_string(),
        },
    })
}

/// A finished output read under `mode`: text when nothing parses.
pub(super) fn split(mode: &ToolMode, text: &str) -> Parsed {
    let as_text = || Parsed {
        content: text.to_owned(),
        calls: Vec::new(),
    };
    match mode {
        ToolMode::Off => as_text(),
        ToolMode::Auto(parser) => parser.parse(text),
        ToolMode::Required => required_calls(text).map_or_else(as_text, |calls| Parsed {
            content: String::new(),
            calls,
        }),
        ToolMode::Named(name) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(arguments)) => Parsed {
                content: String::new(),
                calls: vec![ToolCall {
                    name: name.clone(),
                    arguments,
                }],
            },
            _ => as_text(),
        },
    }
}

fn required_calls(text: &str) -> Option<Vec<ToolCall>> {
    let Value::Array(items) = serde_json::from_str(text).ok()? else {
        return None;
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Object(mut m) = item else {
                return None;
            };
            let name = m.remove("name")?.as_str()?.to_owned();
            let arguments = match m.remove("parameters") {
                Some(Value::Object(a)) => a,
                None | Some(Value::Null) => Map::new(),
                Some(_) => return None,
            };
            Some(ToolCall { name, arguments })
        })
        .collect()
}

/// The message and finish reason of a finished choice.
pub(super) fn message_parts(
    mode: &ToolMode,
    text: String,
    finish: Option<FinishReason>,
) -> (Option<String>, Option<Value>, Option<FinishReason>) {
    if *mode == ToolMode::Off {
        return (Some(text), None, finish);
    }
    let parsed = split(mode, &text);
    if parsed.calls.is_empty() {
        return (Some(text), None, finish);
    }
    let calls = Value::Array(parsed.calls.iter().map(call_json).collect());
    let content = Some(parsed.content).filter(|c| !c.trim().is_empty());
    (content, Some(calls), Some(tool_finish(mode, finish)))
}

/// OpenAI ends a forced call to a named function with `stop`; a call
/// the model chose (or had to make) with `tool_calls`.
fn tool_finish(mode: &ToolMode, finish: Option<FinishReason>) -> FinishReason {
    match (mode, finish) {
        (_, Some(FinishReason::Length)) => FinishReason::Length,
        (ToolMode::Named(_), _) => FinishReason::Stop,
        _ => FinishReason::ToolCalls,
    }
}

/// Streaming state of one choice.
pub(super) enum ToolStream {
    Off,
    /// Text shown until a call may start; calls at the end.
    Auto(StreamSplitter),
    /// Held whole and read at the end.
    Required(String),
    /// The output is the arguments: streamed as argument fragments after
    /// a first delta with the call's id and name.
    Named {
        name: String,
        started: bool,
    },
}

/// What a streamed delta becomes: text to show, tool-call deltas, and
/// the finish reason.
pub(super) struct StreamDelta {
    pub content: String,
    pub tool_calls: Option<Value>,
    pub finish: Option<FinishReason>,
}

impl ToolStream {
    pub fn new(mode: &ToolMode) -> Self {
        match mode {
            ToolMode::Off => Self::Off,
            ToolMode::Auto(p) => Self::Auto(StreamSplitter::new(*p)),
            ToolMode::Required => Self::Required(String::new()),
            ToolMode::Named(name) => Self::Named {
                name: name.clone(),
                started: false,
            },
        }
    }

    /// Feeds one delta of text; `finish` is set on the choice's last.
    pub fn push(&mut self, text: String, finish: Option<FinishReason>) -> StreamDelta {
        let plain = |content| StreamDelta {
            content,
            tool_calls: None,
            finish,
        };
        match self {
            Self::Off => plain(text),
            Self::Named { name, started } => {
                let mut call = json!({"index": 0, "function": {"arguments": text}});
                if !*started {
                    *started = true;
                    call["id"] = json!(new_call_id());
                    call["type"] = json!("function");
                    call["function"]["name"] = json!(name);
                }
                StreamDelta {
                    content: String::new(),
                    tool_calls: Some(json!([call])),
                    finish: finish.map(|f| tool_finish(&ToolMode::Named(name.clone()), Some(f))),
                }
            }
            Self::Auto(splitter) => {
                let shown = splitter.push(&text);
                if finish.is_none() {
                    return plain(shown);
                }
                let end = splitter.finish();
                Self::ending(format!("{shown}{}", end.content), end.calls, finish)
            }
            Self::Required(held) => {
                held.push_str(&text);
                if finish.is_none() {
                    return plain(String::new());
                }
                let parsed = split(&ToolMode::Required, held);
                Self::ending(parsed.content, parsed.calls, finish)
            }
        }
    }

    /// The last delta: the rest of the text, and every call whole (id,
    /// name and arguments in one delta each, as OpenAI's stream allows).
    fn ending(content: String, calls: Vec<ToolCall>, finish: Option<FinishReason>) -> StreamDelta {
        if calls.is_empty() {
            return StreamDelta {
                content,
                tool_calls: None,
                finish,
            };
        }
        let deltas = calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = call_json(c);
                v["index"] = json!(i);
                v
            })
            .collect();
        StreamDelta {
            content,
            tool_calls: Some(Value::Array(deltas)),
            finish: Some(tool_finish(&ToolMode::Required, finish)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn request(tools: Value, choice: Option<Value>) -> ChatCompletionRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                              "tools": tools});
        if let Some(c) = choice {
            body["tool_choice"] = c;
        }
        serde_json::from_value(body).unwrap()
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}])
    }

    const AUTO: ToolSettings = ToolSettings {
        parser: Some(ToolCallParser::Hermes),
        auto_tool_choice: true,
    };

    fn refusal(r: Result<ToolPlan, ProviderError>) -> (String, String) {
        match r {
            Err(ProviderError::InvalidRequest { param, message }) => (param.unwrap(), message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn choices_map_to_modes_and_grammars() {
        let plan = ToolPlan::of(&request(weather(), None), AUTO, true).unwrap();
        assert_eq!(plan.mode, ToolMode::Auto(ToolCallParser::Hermes));
        assert!(plan.grammar.is_none() && plan.template_tools.is_some());

        let plan = ToolPlan::of(&request(weather(), Some(json!("required"))), AUTO, true).unwrap();
        assert_eq!(plan.mode, ToolMode::Required);
        let Some(SpecSource {
            spec: GrammarSpec::JsonSchema(s),
            ..
        }) = plan.grammar
        else {
            panic!("no grammar")
        };
        assert_eq!(
            s["items"]["anyOf"][0]["properties"]["name"]["enum"],
            json!(["get_weather"])
        );

        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let plan = ToolPlan::of(
            &request(weather(), Some(named)),
            ToolSettings::default(),
            true,
        )
        .unwrap();
        assert_eq!(plan.mode, ToolMode::Named("get_weather".into()));

        let plan = ToolPlan::of(&request(weather(), Some(json!("none"))), AUTO, false).unwrap();
        assert_eq!(plan.mode, ToolMode::Off);
        assert!(plan.template_tools.is_none());
    }

    #[test]
    fn what_cannot_be_served_is_a_400() {
        let unknown = json!({"type": "function", "function": {"name": "launch"}});
        let (param, message) =
            refusal(ToolPlan::of(&request(weather(), Some(unknown)), AUTO, true));
        assert_eq!(param, "tool_choice");
        assert!(message.contains("launch"), "{message}");
        let (param, _) = refusal(ToolPlan::of(&request(weather(), None), AUTO, false));
        assert_eq!(param, "tools");
        let (param, message) = refusal(ToolPlan::of(
            &request(weather(), None),
            ToolSettings::default(),
            true,
        ));
        assert_eq!(param, "tool_choice");
        assert!(message.contains("--enable-auto-tool-choice"), "{message}");
    }

    #[test]
    fn outputs_become_calls_or_stay_text() {
        let (content, calls, finish) = message_parts(
            &ToolMode::Required,
            r#"[{"name": "get_weather", "parameters": {"city": "Rome"}}]"#.into(),
            Some(FinishReason::Stop),
        );
        assert_eq!(content, None);
        let calls = calls.unwrap();
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"Rome"}"#);
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(finish, Some(FinishReason::ToolCalls));

        let named = ToolMode::Named("get_weather".into());
        let (_, calls, finish) = message_parts(
            &named,
            r#"{"city": "Rome"}"#.into(),
            Some(FinishReason::Stop),
        );
        assert_eq!(calls.unwrap()[0]["function"]["name"], "get_weather");
        assert_eq!(finish, Some(FinishReason::Stop));

        // Cut by max_tokens: not JSON, so text, with the length reason.
        let (content, calls, finish) =
            message_parts(&named, r#"{"city": "Ro"#.into(), Some(FinishReason::Length));
        assert_eq!((content.as_deref(), calls), (Some(r#"{"city": "Ro"#), None));
        assert_eq!(finish, Some(FinishReason::Length));
    }

    #[test]
    fn streams_show_text_then_calls() {
        let mut s = ToolStream::new(&ToolMode::Auto(ToolCallParser::Hermes));
        let a = s.push("Sure. <tool_call>{\"name\": \"f\", ".into(), None);
        assert_eq!(a.content, "Sure. ");
        assert!(a.tool_calls.is_none());
        let b = s.push(
            "\"arguments\": {}}</tool_call>".into(),
            Some(FinishReason::Stop),
        );
        assert_eq!(b.tool_calls.unwrap()[0]["function"]["name"], "f");
        assert_eq!(b.finish, Some(FinishReason::ToolCalls));

        let mut s = ToolStream::new(&ToolMode::Named("f".into()));
        let a = s.push("{\"a\":".into(), None);
        let a = a.tool_calls.unwrap();
        assert_eq!(a[0]["function"]["name"], "f");
        assert_eq!(a[0]["function"]["arguments"], "{\"a\":");
        let b = s
            .push(" 1}".into(), Some(FinishReason::Stop))
            .tool_calls
            .unwrap();
        assert!(b[0].get("id").is_none());
        assert_eq!(b[0]["function"]["arguments"], " 1}");
    }
}
