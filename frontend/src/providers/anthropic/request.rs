//! OpenAI chat request → Anthropic Messages request.
//!
//! System and developer messages become the top-level `system`; user and
//! assistant turns become content blocks (images from `image_url` parts,
//! `tool_use` from assistant `tool_calls`); `role: tool` messages become
//! `tool_result` blocks of a user turn, and consecutive turns of one role
//! are merged (Anthropic wants tool results of one assistant turn in one
//! user turn).

use crate::error::ProviderError;
use crate::messages_api::types::{
    empty_object_schema, Content, ContentBlock, ImageSource, Message, MessagesRequest, Metadata,
    Role, SystemPrompt, Tool, ToolChoice,
};
use crate::openai::{ChatCompletionRequest, ChatMessage, ContentPart, MessageContent};
use serde_json::Value;

/// Anthropic requires `max_tokens`; LiteLLM's default when the client
/// gives none.
pub const DEFAULT_MAX_TOKENS: i64 = 4096;

/// The OpenAI parameters this adapter translates (`check_chat_params`).
pub const SUPPORTED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "user",
    "tools",
    "tool_choice",
];

/// Translates `req` for `upstream_model`, streaming or not.
pub fn to_anthropic(
    req: &ChatCompletionRequest,
    upstream_model: &str,
    stream: bool,
) -> Result<MessagesRequest, ProviderError> {
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                system.push(m.text_content());
                continue;
            }
            "user" => (Role::User, user_blocks(m, i)?),
            "assistant" => (Role::Assistant, assistant_blocks(m, i)?),
            "tool" => (Role::User, vec![tool_result(m, i)?]),
            other => {
                return Err(ProviderError::invalid(
                    "messages",
                    format!("messages[{i}]: role `{other}` is not supported by anthropic"),
                ))
            }
        };
        match messages.last_mut() {
            Some(Message {
                role: last,
                content: Content::Blocks(prev),
            }) if *last == role => prev.extend(blocks),
            _ => messages.push(Message {
                role,
                content: Content::Blocks(blocks),
            }),
        }
    }
    Ok(MessagesRequest {
        model: upstream_model.to_owned(),
        messages,
        system: (!system.is_empty()).then(|| SystemPrompt::Text(system.join("\n\n"))),
        max_tokens: Some(req.max_new_tokens().map_or(DEFAULT_MAX_TOKENS, i64::from)),
        stop_sequences: req.stop.as_ref().map(|s| s.to_vec()),
        stream: stream.then_some(true),
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k.filter(|k| *k > 0),
        tools: req.tools.as_ref().map(tools).transpose()?,
        tool_choice: tool_choice(req)?,
        metadata: req.user.as_ref().map(|u| Metadata {
            user_id: Some(u.clone()),
        }),
        extra: serde_json::Map::new(),
    })
}

fn user_blocks(m: &ChatMessage, i: usize) -> Result<Vec<ContentBlock>, ProviderError> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(vec![ContentBlock::Text { text: text.clone() }]),
        Some(MessageContent::Parts(parts)) => parts.iter().map(|p| part_block(p, i)).collect(),
    }
}

fn part_block(part: &ContentPart, i: usize) -> Result<ContentBlock, ProviderError> {
    match part.kind.as_str() {
        "text" => Ok(ContentBlock::Text {
            text: part.text.clone().unwrap_or_default(),
        }),
        "image_url" => {
            let url = match part.extra.get("image_url") {
                Some(Value::String(url)) => Some(url.as_str()),
                Some(obj) => obj.get("url").and_then(Value::as_str),
                None => None,
            };
            let url = url.ok_or_else(|| {
                ProviderError::invalid(
                    "messages",
                    format!("messages[{i}]: an image_url part needs image_url.url"),
                )
            })?;
            Ok(ContentBlock::Image {
                source: image_source(url, i)?,
            })
        }
        other => Err(ProviderError::invalid(
            "messages",
            format!("messages[{i}]: content part type `{other}` is not supported by anthropic"),
        )),
    }
}

/// A `data:<type>;base64,<data>` URL becomes inline bytes, an http(s) URL
/// a URL source (Anthropic fetches it).
fn image_source(url: &str, i: usize) -> Result<ImageSource, ProviderError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let parsed = rest
            .split_once(',')
            .and_then(|(meta, data)| Some((meta.strip_suffix(";base64")?, data)));
        return match parsed {
            Some((media_type, data)) if !media_type.is_empty() => Ok(ImageSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            }),
            _ => Err(ProviderError::invalid(
                "messages",
                format!("messages[{i}]: an image data URL must be data:<media type>;base64,<data>"),
            )),
        };
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(ImageSource::Url {
            url: url.to_owned(),
        });
    }
    Err(ProviderError::invalid(
        "messages",
        format!("messages[{i}]: an image URL must be a data: or http(s) URL"),
    ))
}

fn assistant_blocks(m: &ChatMessage, i: usize) -> Result<Vec<ContentBlock>, ProviderError> {
    let mut blocks: Vec<ContentBlock> = match &m.content {
        None => Vec::new(),
        Some(c) => {
            let text = c.text();
            if text.is_empty() {
                Vec::new()
            } else {
                vec![ContentBlock::Text { text }]
            }
        }
    };
    let calls = match &m.tool_calls {
        None | Some(Value::Null) => return Ok(blocks),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(ProviderError::invalid(
                "messages",
                format!("messages[{i}].tool_calls must be an array"),
            ))
        }
    };
    for call in calls {
        let bad = |what: &str| {
            ProviderError::invalid("messages", format!("messages[{i}].tool_calls: {what}"))
        };
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a call needs an id"))?;
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a call needs function.name"))?;
        let input = match call.pointer("/function/arguments") {
            None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(serde_json::Map::new()),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map_err(|e| bad(&format!("function.arguments is not JSON: {e}")))?,
            Some(obj @ Value::Object(_)) => obj.clone(),
            Some(_) => return Err(bad("function.arguments must be a JSON string")),
        };
        blocks.push(ContentBlock::ToolUse {
            id: id.to_owned(),
            name: name.to_owned(),
            input,
        });
    }
    Ok(blocks)
}

fn tool_result(m: &ChatMessage, i: usize) -> Result<ContentBlock, ProviderError> {
    let id = match &m.tool_call_id {
        Some(Value::String(id)) => id.clone(),
        _ => {
            return Err(ProviderError::invalid(
                "messages",
                format!("messages[{i}]: a tool message needs tool_call_id"),
            ))
        }
    };
    Ok(ContentBlock::ToolResult {
        tool_use_id: id,
        content: Some(Content::Text(m.text_content())),
        is_error: None,
    })
}

fn tools(tools: &Value) -> Result<Vec<Tool>, ProviderError> {
    let list = tools
        .as_array()
        .ok_or_else(|| ProviderError::invalid("tools", "tools must be an array"))?;
    list.iter()
        .map(|t| {
            let f = t.get("function").ok_or_else(|| {
                ProviderError::invalid("tools", "each tool needs a `function` (type: function)")
            })?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::invalid("tools", "each function needs a name"))?;
            Ok(Tool {
                name: name.to_owned(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                input_schema: f
                    .get("parameters")
                    .filter(|p| !p.is_null())
                    .cloned()
                    .unwrap_or_else(empty_object_schema),
            })
        })
        .collect()
}

/// `auto`/`none`/`required`/a named function → auto/none/any/tool;
/// `parallel_tool_calls: false` → `disable_parallel_tool_use`.
fn tool_choice(req: &ChatCompletionRequest) -> Result<Option<ToolChoice>, ProviderError> {
    let no_parallel =
        (req.extra.get("parallel_tool_calls") == Some(&Value::Bool(false))).then_some(true);
    let choice = match &req.tool_choice {
        None if no_parallel.is_some() && req.tools.is_some() => ToolChoice::Auto {
            disable_parallel_tool_use: no_parallel,
        },
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto {
                disable_parallel_tool_use: no_parallel,
            },
            "required" => ToolChoice::Any {
                disable_parallel_tool_use: no_parallel,
            },
            "none" => ToolChoice::None,
            other => {
                return Err(ProviderError::invalid(
                    "tool_choice",
                    format!("tool_choice `{other}` is not one of auto, none, required"),
                ))
            }
        },
        Some(obj) => match obj.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => ToolChoice::Tool {
                name: name.to_owned(),
                disable_parallel_tool_use: no_parallel,
            },
            None => return Err(ProviderError::invalid(
                "tool_choice",
                "tool_choice must be auto, none, required or {type: function, function: {name}}",
            )),
        },
    };
    Ok(Some(choice))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn full_conversation_translates() {
        let r = req(json!({
            "model": "client-name",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "use metric units"},
                {"role": "user", "content": [
                    {"type": "text", "text": "weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]},
                {"role": "assistant", "content": "let me check", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_time", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "20C"},
                {"role": "tool", "tool_call_id": "call_2", "content": "noon"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather",
                "description": "weather", "parameters": {"type": "object",
                "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "get_time"}}],
            "tool_choice": "required",
            "stop": ["END"], "temperature": 0.2, "top_p": 0.9, "user": "u1",
            "max_completion_tokens": 50
        }));
        let out = serde_json::to_value(to_anthropic(&r, "claude-x", true).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "claude-x",
                "system": "be brief\n\nuse metric units",
                "max_tokens": 50,
                "stop_sequences": ["END"],
                "stream": true,
                "temperature": 0.2f32,
                "top_p": 0.9f32,
                "metadata": {"user_id": "u1"},
                "tool_choice": {"type": "any"},
                "tools": [
                    {"name": "get_weather", "description": "weather",
                     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "weather here?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}}]},
                    {"role": "assistant", "content": [
                        {"type": "text", "text": "let me check"},
                        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": "20C"},
                        {"type": "tool_result", "tool_use_id": "call_2", "content": "noon"},
                        {"type": "text", "text": "thanks"}]}
                ]
            })
        );
    }

    #[test]
    fn max_tokens_defaults_and_tool_choices_map() {
        let base = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                          "tools": [{"type": "function", "function": {"name": "f"}}]});
        let out = to_anthropic(&req(base.clone()), "c", false).unwrap();
        assert_eq!(out.max_tokens, Some(DEFAULT_MAX_TOKENS));
        assert_eq!(out.stream, None);
        assert_eq!(out.system, None);
        for (choice, expected) in [
            (json!("auto"), json!({"type": "auto"})),
            (json!("none"), json!({"type": "none"})),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            let mut v = base.clone();
            v["tool_choice"] = choice;
            let out = to_anthropic(&req(v), "c", false).unwrap();
            assert_eq!(serde_json::to_value(out.tool_choice).unwrap(), expected);
        }
        let mut v = base.clone();
        v["parallel_tool_calls"] = json!(false);
        let out = to_anthropic(&req(v), "c", false).unwrap();
        assert_eq!(
            serde_json::to_value(out.tool_choice).unwrap(),
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn bad_inputs_are_400s_naming_the_param() {
        let cases = [
            (
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}]),
                "messages",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]),
                "messages",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
                "messages",
            ),
            (json!([{"role": "tool", "content": "x"}]), "messages"),
            (
                json!([{"role": "assistant", "tool_calls": [{"id": "1", "function": {"name": "f", "arguments": "{oops"}}]}]),
                "messages",
            ),
            (json!([{"role": "function", "content": "x"}]), "messages"),
        ];
        for (messages, param) in cases {
            let r = req(json!({"model": "m", "messages": messages}));
            match to_anthropic(&r, "c", false) {
                Err(ProviderError::InvalidRequest { param: p, .. }) => {
                    assert_eq!(p.as_deref(), Some(param), "{messages}")
                }
                other => panic!("{messages}: {other:?}"),
            }
        }
        let r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                           "tool_choice": "sometimes"}),
        );
        assert!(to_anthropic(&r, "c", false).is_err());
    }
}
