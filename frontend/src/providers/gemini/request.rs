//! OpenAI chat request → Gemini `generateContent` body (the same body for
//! the Generative Language API and Vertex AI).
//!
//! Roles: `assistant` becomes `model`; `system`/`developer` messages are
//! joined into `systemInstruction`; `tool` results become `functionResponse`
//! parts of a `user` turn, named after the assistant call they answer
//! (Gemini keys results by function name, OpenAI by call id). Consecutive
//! messages that land in the same role are merged into one turn, which
//! Gemini requires for parallel function responses.

use super::super::request_shapes::ResponseFormatKind;
use super::super::request_shapes::{self, Image, ToolChoice};
use crate::error::ProviderError;
use crate::openai::{ChatCompletionRequest, ChatMessage, MessageContent};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The OpenAI parameters this translation carries. `user` is accepted and
/// not forwarded: it is end-user metadata for the gateway's own logs.
pub const SUPPORTED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "response_format",
    "top_k",
    "user",
];

/// The `generateContent` body for `req` (parameters outside
/// [`SUPPORTED`] are not read: the caller has checked or dropped them).
pub fn generate_content_body(req: &ChatCompletionRequest) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    let (system, contents) = contents(&req.messages)?;
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let specs = request_shapes::tools(req.tools.as_ref())?;
    if !specs.is_empty() {
        let decls: Vec<Value> = specs
            .into_iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), Value::String(t.name));
                if let Some(desc) = t.description {
                    d.insert("description".into(), Value::String(desc));
                }
                if let Some(params) = t.parameters.map(clean_schema).filter(has_properties) {
                    d.insert("parameters".into(), params);
                }
                Value::Object(d)
            })
            .collect();
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
    }
    if let Some(choice) = request_shapes::tool_choice(req.tool_choice.as_ref())? {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Function(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert(
            "toolConfig".into(),
            json!({ "functionCallingConfig": config }),
        );
    }
    let config = generation_config(req)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

fn generation_config(req: &ChatCompletionRequest) -> Result<Map<String, Value>, ProviderError> {
    let mut c = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            c.insert(k.to_owned(), v);
        }
    };
    put("temperature", req.temperature.map(|t| json!(t)));
    put("topP", req.top_p.map(|t| json!(t)));
    put("topK", req.top_k.filter(|k| *k > 0).map(|k| json!(k)));
    put("maxOutputTokens", req.max_new_tokens().map(|m| json!(m)));
    put(
        "stopSequences",
        req.stop.as_ref().map(|s| json!(s.to_vec())),
    );
    put("seed", req.seed.map(|s| json!(s)));
    put(
        "candidateCount",
        req.n.filter(|n| *n != 1).map(|n| json!(n)),
    );
    put("presencePenalty", req.presence_penalty.map(|p| json!(p)));
    put("frequencyPenalty", req.frequency_penalty.map(|p| json!(p)));
    match ResponseFormatKind::of(req.response_format.as_ref())? {
        ResponseFormatKind::Text => {}
        ResponseFormatKind::JsonObject => put("responseMimeType", Some(json!("application/json"))),
        ResponseFormatKind::JsonSchema(schema) => {
            put("responseMimeType", Some(json!("application/json")));
            put("responseSchema", schema.map(clean_schema));
        }
    }
    Ok(c)
}

/// `systemInstruction` parts and `contents`.
fn contents(messages: &[ChatMessage]) -> Result<(Vec<Value>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for m in messages {
        let (role, parts) = match m.role.as_str() {
            "system" | "developer" => {
                let text = m.text_content();
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
                continue;
            }
            "user" => ("user", content_parts(m.content.as_ref())?),
            "assistant" => {
                let mut parts = content_parts(m.content.as_ref())?;
                for call in request_shapes::tool_calls(m.tool_calls.as_ref())? {
                    call_names.insert(call.id.clone(), call.name.clone());
                    parts
                        .push(json!({"functionCall": {"name": call.name, "args": call.arguments}}));
                }
                ("model", parts)
            }
            "tool" | "function" => {
                let id = request_shapes::tool_call_id(m.tool_call_id.as_ref())?;
                let name = call_names
                    .get(&id)
                    .cloned()
                    .or_else(|| m.name.clone())
                    .ok_or_else(|| {
                        ProviderError::invalid(
                            "messages",
                            format!("tool message answers `{id}`, which no earlier assistant tool call has"),
                        )
                    })?;
                let text = m.text_content();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(o)) => Value::Object(o),
                    _ => json!({ "content": text }),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => {
                return Err(ProviderError::invalid(
                    "messages",
                    format!("role `{other}` is not supported by Gemini"),
                ))
            }
        };
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let contents = turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect();
    Ok((system, contents))
}

fn content_parts(content: Option<&MessageContent>) -> Result<Vec<Value>, ProviderError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(t)) if t.is_empty() => Ok(Vec::new()),
        Some(MessageContent::Text(t)) => Ok(vec![json!({ "text": t })]),
        Some(MessageContent::Parts(parts)) => parts
            .iter()
            .map(|p| match p.kind.as_str() {
                "text" => Ok(json!({ "text": p.text.clone().unwrap_or_default() })),
                "image_url" => Ok(match request_shapes::image(&p.extra)? {
                    Image::Inline { mime_type, base64 } => {
                        json!({"inlineData": {"mimeType": mime_type, "data": base64}})
                    }
                    Image::Url(url) => json!({"fileData": {
                        "mimeType": request_shapes::mime_from_url(&url), "fileUri": url}}),
                }),
                other => Err(ProviderError::invalid(
                    "messages",
                    format!("content parts of type `{other}` are not supported by Gemini"),
                )),
            })
            .collect(),
    }
}

/// Gemini's schema dialect (an OpenAPI subset) rejects some JSON Schema
/// keys that OpenAI clients send; they are removed at every level, as
/// LiteLLM does.
fn clean_schema(schema: Value) -> Value {
    match schema {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "$schema" | "additionalProperties" | "strict")
                })
                .map(|(k, v)| (k, clean_schema(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(clean_schema).collect()),
        other => other,
    }
}

/// Gemini rejects an object schema with no properties; such a function
/// is declared without `parameters`.
fn has_properties(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) != Some("object")
        || schema
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn body(v: Value) -> Value {
        generate_content_body(&serde_json::from_value(v).unwrap()).unwrap()
    }

    #[test]
    fn roles_system_parts_and_generation_config() {
        let b = body(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": "and kind"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}}]},
                {"role": "assistant", "content": "a cat"},
                {"role": "user", "content": "thanks"}
            ],
            "temperature": 0.5, "top_p": 0.9, "max_tokens": 20, "stop": "END", "seed": 3, "n": 2,
            "response_format": {"type": "json_object"}
        }));
        assert_eq!(
            b,
            json!({
                "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "and kind"}]},
                "contents": [
                    {"role": "user", "parts": [
                        {"text": "what is this?"},
                        {"inlineData": {"mimeType": "image/png", "data": "aGk="}},
                        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat.jpg"}}]},
                    {"role": "model", "parts": [{"text": "a cat"}]},
                    {"role": "user", "parts": [{"text": "thanks"}]}
                ],
                "generationConfig": {
                    "temperature": 0.5, "topP": 0.8999999761581421, "maxOutputTokens": 20,
                    "stopSequences": ["END"], "seed": 3, "candidateCount": 2,
                    "responseMimeType": "application/json"
                }
            })
        );
    }

    #[test]
    fn tools_choice_calls_and_results() {
        let b = body(json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "weather in Paris and Rome?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 20}"},
                {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {
                "name": "get_weather", "description": "Weather of a city",
                "parameters": {"type": "object", "additionalProperties": false,
                               "properties": {"city": {"type": "string"}}}}},
                      {"type": "function", "function": {"name": "now",
                       "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}
        }));
        assert_eq!(
            b,
            json!({
                "contents": [
                    {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
                    {"role": "model", "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp": 20}}},
                        {"functionResponse": {"name": "get_weather", "response": {"content": "sunny"}}}]}
                ],
                "tools": [{"functionDeclarations": [
                    {"name": "get_weather", "description": "Weather of a city",
                     "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
                    {"name": "now"}]}],
                "toolConfig": {"functionCallingConfig": {
                    "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
            })
        );
        for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
            let b = body(
                json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                                "tool_choice": choice}),
            );
            assert_eq!(b["toolConfig"]["functionCallingConfig"]["mode"], mode);
        }
    }

    #[test]
    fn a_tool_result_without_its_call_is_a_400() {
        let req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"},
                         {"role": "tool", "tool_call_id": "nope", "content": "1"}]
        }))
        .unwrap();
        let err = generate_content_body(&req).unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("nope"));
    }

    #[test]
    fn json_schema_response_format() {
        let b = body(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "strict": true,
                "schema": {"type": "object", "additionalProperties": false,
                           "properties": {"a": {"type": "integer"}}}}}}),
        );
        assert_eq!(
            b["generationConfig"],
            json!({"responseMimeType": "application/json",
                   "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}}})
        );
    }
}
