//! OpenAI chat request → Bedrock Converse body (the same body for
//! `converse` and `converse-stream`).
//!
//! `system`/`developer` messages become `system` blocks; `tool` results
//! become `toolResult` blocks of a `user` turn; consecutive messages that
//! land in the same role are merged (Converse requires user and assistant
//! turns to alternate). Images must be `data:` URLs: Converse takes bytes
//! or S3 locations, not web URLs.

use crate::error::ProviderError;
use crate::openai::{ChatCompletionRequest, ChatMessage, MessageContent};
use crate::providers::request_shapes::{self, Image, ToolChoice};
use serde_json::{json, Map, Value};

/// The OpenAI parameters Converse takes. `user` is accepted and not
/// forwarded: it is end-user metadata for the gateway's own logs.
pub const SUPPORTED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "user",
];

/// The Converse body for `req` (parameters outside [`SUPPORTED`] are not
/// read: the caller has checked or dropped them).
pub fn converse_body(req: &ChatCompletionRequest) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    let (system, messages) = messages(&req.messages)?;
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let mut inference = Map::new();
    if let Some(m) = req.max_new_tokens() {
        inference.insert("maxTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    if let Some(stop) = &req.stop {
        inference.insert("stopSequences".into(), json!(stop.to_vec()));
    }
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(config) = tool_config(req, history_has_tools(&body))? {
        body.insert("toolConfig".into(), config);
    }
    Ok(Value::Object(body))
}

/// Whether the conversation already holds toolUse/toolResult blocks
/// (Converse then needs `toolConfig` even when the client says `none`).
fn history_has_tools(body: &Map<String, Value>) -> bool {
    body.get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .flatten()
        .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some())
}

/// `toolConfig`. Converse has no "none" choice: with `tool_choice: none`
/// the tools are left out, unless the history uses tools (then they are
/// sent without a choice, as Converse requires).
fn tool_config(req: &ChatCompletionRequest, history: bool) -> Result<Option<Value>, ProviderError> {
    let specs = request_shapes::tools(req.tools.as_ref())?;
    if specs.is_empty() {
        return Ok(None);
    }
    let choice = request_shapes::tool_choice(req.tool_choice.as_ref())?;
    if choice == Some(ToolChoice::None) && !history {
        return Ok(None);
    }
    let tools: Vec<Value> = specs
        .into_iter()
        .map(|t| {
            let mut spec = Map::new();
            spec.insert("name".into(), json!(t.name));
            if let Some(d) = t.description {
                spec.insert("description".into(), json!(d));
            }
            let schema = t
                .parameters
                .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
            spec.insert("inputSchema".into(), json!({ "json": schema }));
            json!({ "toolSpec": spec })
        })
        .collect();
    let mut config = json!({ "tools": tools });
    match choice {
        Some(ToolChoice::Auto) => config["toolChoice"] = json!({"auto": {}}),
        Some(ToolChoice::Required) => config["toolChoice"] = json!({"any": {}}),
        Some(ToolChoice::Function(name)) => config["toolChoice"] = json!({"tool": {"name": name}}),
        Some(ToolChoice::None) | None => {}
    }
    Ok(Some(config))
}

fn messages(messages: &[ChatMessage]) -> Result<(Vec<Value>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in messages {
        let (role, blocks) = match m.role.as_str() {
            "system" | "developer" => {
                let text = m.text_content();
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
                continue;
            }
            "user" => ("user", content_blocks(m.content.as_ref())?),
            "assistant" => {
                let mut blocks = content_blocks(m.content.as_ref())?;
                for call in request_shapes::tool_calls(m.tool_calls.as_ref())? {
                    let input = if call.arguments.is_object() {
                        call.arguments
                    } else {
                        json!({})
                    };
                    blocks.push(json!({"toolUse": {
                        "toolUseId": call.id, "name": call.name, "input": input}}));
                }
                ("assistant", blocks)
            }
            "tool" | "function" => {
                let id = request_shapes::tool_call_id(m.tool_call_id.as_ref())?;
                // As text, as LiteLLM sends it: every Converse model takes
                // text results, not every one takes `json` blocks.
                let content = json!([{ "text": m.text_content() }]);
                (
                    "user",
                    vec![json!({"toolResult": {"toolUseId": id, "content": content}})],
                )
            }
            other => {
                return Err(ProviderError::invalid(
                    "messages",
                    format!("role `{other}` is not supported by Bedrock"),
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, messages))
}

fn content_blocks(content: Option<&MessageContent>) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![json!({ "text": t })]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .map(|p| match p.kind.as_str() {
                "text" => Ok(json!({ "text": p.text.clone().unwrap_or_default() })),
                "image_url" => match request_shapes::image(&p.extra)? {
                    Image::Inline { mime_type, base64 } => {
                        // Checked here so a bad payload is our 400, not Bedrock's.
                        Image::bytes(&base64)?;
                        let format = image_format(&mime_type)?;
                        Ok(json!({"image": {"format": format, "source": {"bytes": base64}}}))
                    }
                    Image::Url(_) => Err(ProviderError::invalid(
                        "messages",
                        "Bedrock takes images as data: URLs only (base64), not web URLs",
                    )),
                },
                other => Err(ProviderError::invalid(
                    "messages",
                    format!("content parts of type `{other}` are not supported by Bedrock"),
                )),
            })
            .collect(),
    }
}

fn image_format(mime_type: &str) -> Result<&'static str, ProviderError> {
    match mime_type {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(ProviderError::invalid(
            "messages",
            format!("Bedrock takes png, jpeg, gif or webp images, not {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn body(v: Value) -> Result<Value, ProviderError> {
        converse_body(&serde_json::from_value(v).unwrap())
    }

    #[test]
    fn system_messages_images_and_inference_config() {
        let b = body(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}}]},
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "thanks"}
            ],
            "max_tokens": 20, "temperature": 0.5, "top_p": 0.5, "stop": ["END"]
        }))
        .unwrap();
        assert_eq!(
            b,
            json!({
                "system": [{"text": "be brief"}],
                "messages": [
                    {"role": "user", "content": [
                        {"text": "what is this?"},
                        {"image": {"format": "png", "source": {"bytes": "aGk="}}}]},
                    {"role": "assistant", "content": [{"text": "a cat"}]},
                    {"role": "user", "content": [{"text": "thanks"}]}
                ],
                "inferenceConfig": {"maxTokens": 20, "temperature": 0.5, "topP": 0.5,
                                    "stopSequences": ["END"]}
            })
        );
        let err = body(
            json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]}]}),
        )
        .unwrap_err();
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn tools_choice_tool_use_and_results() {
        let b = body(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "tu_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "tu_1", "content": "{\"temp\": 20}"},
                {"role": "user", "content": "and tomorrow?"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required"
        }))
        .unwrap();
        assert_eq!(
            b,
            json!({
                "messages": [
                    {"role": "user", "content": [{"text": "weather?"}]},
                    {"role": "assistant", "content": [
                        {"text": "Let me check."},
                        {"toolUse": {"toolUseId": "tu_1", "name": "get_weather",
                                     "input": {"city": "Paris"}}}]},
                    {"role": "user", "content": [
                        {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "{\"temp\": 20}"}]}},
                        {"text": "and tomorrow?"}]}
                ],
                "toolConfig": {
                    "tools": [{"toolSpec": {"name": "get_weather", "description": "Weather of a city",
                        "inputSchema": {"json": {"type": "object",
                                                 "properties": {"city": {"type": "string"}}}}}}],
                    "toolChoice": {"any": {}}
                }
            })
        );
        let base = |choice: Value| {
            body(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}),
            )
            .unwrap()
        };
        assert_eq!(
            base(json!("auto"))["toolConfig"]["toolChoice"],
            json!({"auto": {}})
        );
        assert_eq!(
            base(json!({"type": "function", "function": {"name": "f"}}))["toolConfig"]
                ["toolChoice"],
            json!({"tool": {"name": "f"}})
        );
        assert!(base(json!("none")).get("toolConfig").is_none());
    }
}
