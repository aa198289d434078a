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
use crate::tool_calls::{
    json_calls, CallProgress, Parsed, StreamSplitter, ToolCall, ToolCallParser,
};

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
        let template_tools = rendered_tools(req.tools.as_ref(), template_reads_tools)?;
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

/// `tools` as the chat template receives them, checked as a request's
/// are; refused when the template never reads them (they would vanish
/// from the prompt).
pub(super) fn rendered_tools(
    tools: Option<&Value>,
    template_reads_tools: bool,
) -> Result<Option<Value>, ProviderError> {
    if request_shapes::tools(tools)?.is_empty() {
        return Ok(None);
    }
    if !template_reads_tools {
        return Err(ProviderError::invalid(
            "tools",
            "this model's chat template does not support tools; start the server with a \
             --chat-template that renders them",
        ));
    }
    Ok(tools.cloned())
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
    /// Text shown until a call may start; the calls as they are written.
    Auto {
        parser: ToolCallParser,
        splitter: StreamSplitter,
        calls: CallDeltas,
    },
    /// The output is a JSON array of calls, streamed as it is written.
    Required {
        held: String,
        calls: CallDeltas,
    },
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
            ToolMode::Auto(parser) => Self::Auto {
                parser: *parser,
                splitter: StreamSplitter::new(*parser),
                calls: CallDeltas::default(),
            },
            ToolMode::Required => Self::Required {
                held: String::new(),
                calls: CallDeltas::default(),
            },
            ToolMode::Named(name) => Self::Named {
                name: name.clone(),
                started: false,
            },
        }
    }

    /// Feeds one delta of text; `finish` is set on the choice's last.
    pub fn push(&mut self, text: String, finish: Option<FinishReason>) -> StreamDelta {
        match self {
            Self::Off => StreamDelta {
                content: text,
                tool_calls: None,
                finish,
            },
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
            Self::Auto {
                parser,
                splitter,
                calls,
            } => {
                let shown = splitter.push(&text);
                let progress = splitter
                    .held()
                    .map(|held| parser.progress(held))
                    .unwrap_or_default();
                if finish.is_none() {
                    let deltas = calls.advance(&progress);
                    return calls.delta(shown, deltas, None);
                }
                let end = splitter.finish();
                let deltas = calls.finish(&end.calls, &progress);
                calls.delta(format!("{shown}{}", end.content), deltas, finish)
            }
            Self::Required { held, calls } => {
                held.push_str(&text);
                let progress = json_calls(held);
                if finish.is_none() {
                    let deltas = calls.advance(&progress);
                    return calls.delta(String::new(), deltas, None);
                }
                let parsed = split(&ToolMode::Required, held);
                let deltas = calls.finish(&parsed.calls, &progress);
                calls.delta(parsed.content, deltas, finish)
            }
        }
    }
}

/// The `tool_calls` deltas sent so far for one choice: each call's index
/// is its place in the output, and what was sent of its arguments is
/// kept, so the next delta sends only what the model wrote since.
#[derive(Debug, Default)]
pub(super) struct CallDeltas {
    /// The arguments text sent for each call begun, in order.
    sent: Vec<String>,
}

impl CallDeltas {
    /// The deltas that bring the client up to `progress`: a first delta
    /// with id, type and name (and the arguments so far) for a new call,
    /// then argument fragments.
    fn advance(&mut self, progress: &[CallProgress]) -> Vec<Value> {
        let mut deltas = Vec::new();
        for (index, call) in progress.iter().enumerate() {
            match self.sent.get_mut(index) {
                None => {
                    deltas.push(json!({
                        "index": index,
                        "id": new_call_id(),
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }));
                    self.sent.push(call.arguments.clone());
                }
                Some(sent) => {
                    if let Some(more) = call.arguments.strip_prefix(sent.as_str()) {
                        if !more.is_empty() {
                            deltas.push(json!({"index": index, "function": {"arguments": more}}));
                            *sent = call.arguments.clone();
                        }
                    }
                }
            }
        }
        deltas
    }

    /// The last deltas, once the whole output parsed into `calls`: the
    /// rest of each call begun, and the calls not begun whole. A call's
    /// arguments are the model's own text when the stream had it whole
    /// (what was sent is its start), else the parsed object.
    fn finish(&mut self, calls: &[ToolCall], progress: &[CallProgress]) -> Vec<Value> {
        let whole: Vec<CallProgress> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let streamed = progress
                    .get(i)
                    .filter(|p| p.name == call.name && p.arguments_done)
                    .filter(|p| {
                        serde_json::from_str::<Map<String, Value>>(&p.arguments)
                            .ok()
                            .as_ref()
                            == Some(&call.arguments)
                    });
                CallProgress {
                    name: call.name.clone(),
                    arguments: streamed.map_or_else(
                        || Value::Object(call.arguments.clone()).to_string(),
                        |p| p.arguments.clone(),
                    ),
                    arguments_done: true,
                }
            })
            .collect();
        for (i, (call, sent)) in whole.iter().zip(&self.sent).enumerate() {
            if !call.arguments.starts_with(sent.as_str()) {
                tracing::warn!(
                    index = i,
                    "a streamed tool call's arguments parsed differently at the end;                      the client's concatenation may not parse"
                );
            }
        }
        self.advance(&whole)
    }

    /// One stream delta: `content`, the call deltas (none: no
    /// `tool_calls`) and the finish reason, `tool_calls` once a call was
    /// sent (or `length` when the output was cut).
    fn delta(
        &self,
        content: String,
        deltas: Vec<Value>,
        finish: Option<FinishReason>,
    ) -> StreamDelta {
        let finish = match finish {
            Some(f) if !self.sent.is_empty() => Some(tool_finish(&ToolMode::Required, Some(f))),
            f => f,
        };
        StreamDelta {
            content,
            tool_calls: (!deltas.is_empty()).then_some(Value::Array(deltas)),
            finish,
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
        let a = s.push("Sure. <tool_call>{\"name\": \"f".into(), None);
        assert_eq!(a.content, "Sure. ");
        assert!(a.tool_calls.is_none(), "the name is not whole yet");
        let b = s.push("\", ".into(), None);
        assert_eq!(b.tool_calls.unwrap()[0]["function"]["name"], "f");
        let c = s.push(
            "\"arguments\": {}}</tool_call>".into(),
            Some(FinishReason::Stop),
        );
        assert_eq!(c.tool_calls.unwrap()[0]["function"]["arguments"], "{}");
        assert_eq!(c.finish, Some(FinishReason::ToolCalls));

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

    /// Streams `text` under `mode` cut into pieces of `size` characters
    /// and joins the deltas as an OpenAI client does: (content, calls as
    /// (name, arguments string), finish reason, deltas carrying
    /// arguments).
    fn stream(
        mode: &ToolMode,
        text: &str,
        size: usize,
    ) -> (String, Vec<(String, String)>, Option<FinishReason>, usize) {
        let chars: Vec<char> = text.chars().collect();
        let pieces: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
        let mut s = ToolStream::new(mode);
        let (mut content, mut calls, mut finish) = (String::new(), Vec::new(), None);
        let mut ids = std::collections::HashSet::new();
        let mut fragments = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let last = (i + 1 == pieces.len()).then_some(FinishReason::Stop);
            let d = s.push(piece.clone(), last);
            content.push_str(&d.content);
            finish = d.finish.or(finish);
            for call in d.tool_calls.iter().flat_map(|v| v.as_array().unwrap()) {
                let index = call["index"].as_u64().unwrap() as usize;
                if let Some(id) = call.get("id") {
                    assert_eq!(index, calls.len(), "a call's first delta comes in order");
                    assert!(
                        ids.insert(id.as_str().unwrap().to_owned()),
                        "ids are unique"
                    );
                    let name = call["function"]["name"].as_str().unwrap().to_owned();
                    calls.push((name, String::new()));
                } else {
                    assert!(
                        call["function"].get("name").is_none(),
                        "the name comes once"
                    );
                }
                let args = call["function"]["arguments"].as_str().unwrap();
                if !args.is_empty() {
                    fragments += 1;
                }
                calls[index].1.push_str(args);
            }
        }
        (content, calls, finish, fragments)
    }

    /// Whatever the cut, a stream adds up to the finished message.
    fn streams_as_finished(mode: &ToolMode, text: &str) -> usize {
        let (content, message_calls, finish) =
            message_parts(mode, text.to_owned(), Some(FinishReason::Stop));
        let message_calls: Vec<(String, Value)> = message_calls
            .iter()
            .flat_map(|v| v.as_array().unwrap().clone())
            .map(|c| {
                let args = c["function"]["arguments"].as_str().unwrap();
                (
                    c["function"]["name"].as_str().unwrap().to_owned(),
                    serde_json::from_str(args).unwrap(),
                )
            })
            .collect();
        let mut most_fragments = 0;
        for size in [1, 2, 3, 7, 1000] {
            let (streamed, calls, streamed_finish, fragments) = stream(mode, text, size);
            let calls: Vec<(String, Value)> = calls
                .into_iter()
                .map(|(name, args)| {
                    let parsed = serde_json::from_str(&args)
                        .unwrap_or_else(|e| panic!("{args:?} (cut {size}): {e}"));
                    (name, parsed)
                })
                .collect();
            assert_eq!(calls, message_calls, "cut {size}: {text}");
            assert_eq!(
                streamed.trim(),
                content.clone().unwrap_or_default().trim(),
                "cut {size}"
            );
            assert_eq!(streamed_finish, finish, "cut {size}");
            most_fragments = most_fragments.max(fragments);
        }
        most_fragments
    }

    #[test]
    fn streamed_calls_add_up_to_the_finished_message_however_cut() {
        use ToolCallParser::*;
        let auto = [
            (
                Hermes,
                "Let me look. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris, \\\"FR\\\"\", \"days\": [1, 2], \"unit\": {\"c\": true}}}\n</tool_call>\n<tool_call>{\"arguments\": {}, \"name\": \"now\"}</tool_call>",
            ),
            (
                Llama3Json,
                "<|python_tag|>{\"name\": \"search\", \"parameters\": {\"q\": \"caf\u{e9} {x}\"}}; {\"name\": \"f\", \"parameters\": {\"n\": -1.5e3}}",
            ),
            (
                Mistral,
                "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": [1, {\"y\": null}]}}, {\"name\": \"b\", \"arguments\": \"{\\\"s\\\": 1}\"}]",
            ),
            (
                Mistral,
                "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}[TOOL_CALLS]now[ARGS]{}",
            ),
            (
                Qwen3Coder,
                "<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
            ),
            (Llama4Pythonic, "[get_weather(city='Paris'), now()]"),
            (Hermes, "No call here, just {braces} and \"quotes\"."),
        ];
        for (parser, text) in auto {
            streams_as_finished(&ToolMode::Auto(parser), text);
        }
        // JSON arguments arrive in several fragments when cut finely.
        let fragments = streams_as_finished(&ToolMode::Auto(Hermes), auto[0].1);
        assert!(fragments > 3, "{fragments} fragments");
        let required = "[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}, {\"name\": \"now\", \"parameters\": {}}]";
        let fragments = streams_as_finished(&ToolMode::Required, required);
        assert!(fragments > 3, "{fragments} fragments");
    }

    #[test]
    fn a_streamed_call_that_never_parses_still_reaches_the_client_as_text() {
        // The name and arguments went out before the missing `}` showed
        // the call malformed; the text is not lost.
        let text = "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}";
        let (content, calls, finish, _) = stream(&ToolMode::Auto(ToolCallParser::Hermes), text, 4);
        assert_eq!(content, text);
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].0, "f");
        assert!("{\"a\": 1}".starts_with(&calls[0].1), "{calls:?}");
        assert_eq!(finish, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn a_call_streams_its_name_before_its_arguments_are_whole() {
        let mut s = ToolStream::new(&ToolMode::Required);
        let a = s.push(
            "[{\"name\": \"get_weather\", \"parameters\": {\"ci".into(),
            None,
        );
        let a = a.tool_calls.unwrap();
        assert_eq!(a[0]["function"]["name"], "get_weather");
        assert_eq!(a[0]["function"]["arguments"], "{\"ci");
        let b = s.push("ty\": \"Paris\"}}]".into(), Some(FinishReason::Stop));
        assert_eq!(
            b.tool_calls.unwrap()[0]["function"]["arguments"],
            "ty\": \"Paris\"}"
        );
        assert_eq!(b.finish, Some(FinishReason::ToolCalls));
    }
}
