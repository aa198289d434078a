//! Ollama's native API: `POST /api/chat` (NDJSON when streaming) and
//! `POST /api/embed`, default base `http://localhost:11434`.
//!
//! Translation: sampling parameters go into `options` (`num_predict`,
//! `repeat_penalty`, ...); images travel per message as base64 in
//! `images` (Ollama takes inline images only: a `data:` URL's payload, or
//! an http(s) URL fetched first as LiteLLM does, but only when the config
//! turns fetching on, and then through [`crate::fetch::SafeFetcher`], which
//! refuses private addresses, caps size and time, and never echoes what it
//! got); tool calls carry their arguments as a
//! JSON object where OpenAI has a string, and tool results name the tool
//! (`tool_name`) where OpenAI names the call id; usage is
//! `prompt_eval_count` / `eval_count`, and `done_reason` maps to OpenAI's
//! finish reasons. Text completions go through `/api/chat` as one user
//! message ([`crate::provider::completion_over_chat`]).

use super::http;
use super::resolve::Resolved;
use super::stream_pump::{self, cut_stream, pump, ChunkBuilder, StreamTranslator};
use super::upstream::Upstream;
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::fetch::SafeFetcher;
use crate::openai::{
    new_id, ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
    ChatMessage, ChatResponseMessage, EmbeddingRequest, EmbeddingResponse, FinishReason,
    MessageContent, ModelCard, Usage,
};
use crate::provider::{ChunkStream, Provider};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Ollama's default local endpoint.
pub const OLLAMA_BASE: &str = "http://localhost:11434";

/// The OpenAI chat parameters `/api/chat` can express.
const SUPPORTED: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "top_k",
    "min_p",
    "repetition_penalty",
    "tools",
    "tool_choice",
    "response_format",
];

/// The adapter for one Ollama model (`ollama/<model>`).
pub struct OllamaProvider {
    upstream: Upstream,
    images: Arc<SafeFetcher>,
}

impl OllamaProvider {
    /// Builds the adapter; `api_base` defaults to the local Ollama, and an
    /// `api_key` (Ollama behind a proxy, Ollama Cloud) is sent as Bearer;
    /// `images` fetches http(s) image URLs (or refuses them all).
    pub fn new(
        model_name: &str,
        resolved: Resolved,
        params: &DeploymentParams,
        client: reqwest::Client,
        images: Arc<SafeFetcher>,
    ) -> Result<Self, ProviderError> {
        Ok(Self {
            upstream: Upstream::new(
                model_name,
                resolved.upstream_model,
                params,
                client,
                OLLAMA_BASE,
            ),
            images,
        })
    }

    /// The `/api/chat` body for `req`, images fetched where needed.
    async fn chat_body(
        &self,
        req: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<Value, ProviderError> {
        self.upstream.check_params(req, "ollama", SUPPORTED)?;
        let mut body = request_body(
            req,
            &self.upstream.upstream_model,
            stream,
            self.upstream.drop_params,
        )?;
        if let Some(Value::Array(messages)) = body.get_mut("messages") {
            for m in messages.iter_mut() {
                if let Some(Value::Array(images)) = m.get_mut("images") {
                    for image in images.iter_mut() {
                        if let Value::String(url) = image {
                            *image = Value::String(self.image_base64(url).await?);
                        }
                    }
                }
            }
        }
        Ok(body)
    }

    /// The base64 payload of an OpenAI image URL: a `data:` URL's own, or
    /// the bytes of an http(s) URL when the fetcher may fetch it.
    async fn image_base64(&self, url: &str) -> Result<String, ProviderError> {
        if let Some(data) = data_url_payload(url) {
            return Ok(data.to_owned());
        }
        let fetched = self.images.fetch(url).await.map_err(|e| {
            ProviderError::invalid("messages", format!("cannot use the image_url: {e}"))
        })?;
        Ok(base64::engine::general_purpose::STANDARD.encode(&fetched.bytes))
    }
}

/// The base64 part of `data:<mime>;base64,<payload>`.
fn data_url_payload(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("data:")?;
    let (meta, payload) = rest.split_once(',')?;
    meta.ends_with(";base64").then_some(payload)
}

/// The `/api/chat` body; image URLs are left in `images` for the caller to
/// turn into base64 (that may need a fetch).
fn request_body(
    req: &ChatCompletionRequest,
    model: &str,
    stream: bool,
    drop_params: bool,
) -> Result<Value, ProviderError> {
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert("messages".into(), Value::Array(messages(&req.messages)?));
    body.insert("stream".into(), stream.into());

    let mut options = Map::new();
    let mut opt = |key: &str, v: Option<Value>| {
        if let Some(v) = v {
            options.insert(key.to_owned(), v);
        }
    };
    opt("temperature", req.temperature.map(Value::from));
    opt("top_p", req.top_p.map(Value::from));
    opt("top_k", req.top_k.map(Value::from));
    opt("min_p", req.min_p.map(Value::from));
    opt("repeat_penalty", req.repetition_penalty.map(Value::from));
    opt("presence_penalty", req.presence_penalty.map(Value::from));
    opt("frequency_penalty", req.frequency_penalty.map(Value::from));
    opt("seed", req.seed.map(Value::from));
    opt("num_predict", req.max_new_tokens().map(Value::from));
    opt("stop", req.stop.as_ref().map(|s| json!(s.to_vec())));
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }

    let tools_off = match &req.tool_choice {
        None => false,
        Some(Value::String(c)) if c == "auto" => false,
        Some(Value::String(c)) if c == "none" => true,
        Some(_) if drop_params => false,
        Some(_) => {
            return Err(ProviderError::invalid(
                "tool_choice",
                "ollama lets the model choose tools itself: tool_choice may only be \
                 \"auto\" or \"none\" (or set drop_params)",
            ))
        }
    };
    if let Some(tools) = &req.tools {
        if !tools_off {
            body.insert("tools".into(), tools.clone());
        }
    }
    if let Some(format) = &req.response_format {
        match format.get("type").and_then(Value::as_str) {
            Some("json_object") => {
                body.insert("format".into(), "json".into());
            }
            Some("json_schema") => {
                if let Some(schema) = format.pointer("/json_schema/schema") {
                    body.insert("format".into(), schema.clone());
                }
            }
            _ => {}
        }
    }
    Ok(Value::Object(body))
}

/// OpenAI messages as Ollama's: text content, `images`, tool calls with
/// object arguments, tool results with `tool_name`.
fn messages(messages: &[ChatMessage]) -> Result<Vec<Value>, ProviderError> {
    let mut call_names: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "developer" => "system",
            other => other,
        };
        let mut msg = Map::new();
        msg.insert("role".into(), role.into());
        let mut text = Vec::new();
        let mut images = Vec::new();
        match &m.content {
            None => {}
            Some(MessageContent::Text(t)) => text.push(t.clone()),
            Some(MessageContent::Parts(parts)) => {
                for p in parts {
                    match p.kind.as_str() {
                        "text" => text.push(p.text.clone().unwrap_or_default()),
                        "image_url" => {
                            let url = p.extra.get("image_url").and_then(|u| {
                                u.get("url").and_then(Value::as_str).or_else(|| u.as_str())
                            });
                            match url {
                                Some(url) => images.push(Value::String(url.to_owned())),
                                None => {
                                    return Err(ProviderError::invalid(
                                        "messages",
                                        format!("messages[{i}]: image_url part without a url"),
                                    ))
                                }
                            }
                        }
                        other => {
                            return Err(ProviderError::invalid(
                                "messages",
                                format!("messages[{i}]: ollama does not take `{other}` parts"),
                            ))
                        }
                    }
                }
            }
        }
        msg.insert("content".into(), text.join("\n").into());
        if !images.is_empty() {
            msg.insert("images".into(), Value::Array(images));
        }
        if let Some(Value::Array(calls)) = &m.tool_calls {
            let mut ollama_calls = Vec::with_capacity(calls.len());
            for call in calls {
                let name = call
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    call_names.insert(id.to_owned(), name.to_owned());
                }
                let arguments = match call.pointer("/function/arguments") {
                    Some(Value::String(s)) if s.trim().is_empty() => json!({}),
                    Some(Value::String(s)) => serde_json::from_str(s).map_err(|e| {
                        ProviderError::invalid(
                            "messages",
                            format!("messages[{i}]: tool call arguments are not JSON: {e}"),
                        )
                    })?,
                    Some(other) => other.clone(),
                    None => json!({}),
                };
                ollama_calls.push(json!({"function": {"name": name, "arguments": arguments}}));
            }
            msg.insert("tool_calls".into(), Value::Array(ollama_calls));
        }
        if role == "tool" {
            let id = m.tool_call_id.as_ref().and_then(Value::as_str);
            if let Some(name) = id.and_then(|id| call_names.get(id)) {
                msg.insert("tool_name".into(), name.clone().into());
            }
        }
        out.push(Value::Object(msg));
    }
    Ok(out)
}

/// OpenAI's finish reason for Ollama's `done_reason`.
fn finish_reason(done_reason: Option<&str>) -> FinishReason {
    match done_reason {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

fn usage(v: &Value) -> Usage {
    let count = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    Usage::new(count("prompt_eval_count"), count("eval_count"))
}

/// OpenAI tool calls (fresh ids, string arguments) from Ollama's.
fn tool_calls(message: &Value) -> Vec<Value> {
    message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    let id = c
                        .get("id")
                        .and_then(Value::as_str)
                        .map_or_else(|| new_id("call"), str::to_owned);
                    let name = c
                        .pointer("/function/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let args = c.pointer("/function/arguments").unwrap_or(&Value::Null);
                    stream_pump::tool_call(&id, name, args)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A whole `/api/chat` answer as OpenAI's.
fn parse_response(v: &Value, model_name: &str) -> Result<ChatCompletionResponse, ProviderError> {
    let message = v
        .get("message")
        .ok_or_else(|| http::malformed("no `message`".to_owned(), v.to_string().as_bytes()))?;
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let calls = tool_calls(message);
    let finish = if calls.is_empty() {
        finish_reason(v.get("done_reason").and_then(Value::as_str))
    } else {
        FinishReason::ToolCalls
    };
    let message = ChatResponseMessage {
        role: "assistant".to_owned(),
        content: (!content.is_empty() || calls.is_empty()).then(|| content.to_owned()),
        tool_calls: (!calls.is_empty()).then_some(Value::Array(calls)),
        reasoning_content: None,
    };
    Ok(ChatCompletionResponse::new(
        new_id("chatcmpl"),
        model_name.to_owned(),
        vec![ChatChoice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: Some(finish),
        }],
        usage(v),
    ))
}

/// A streamed `/api/chat` answer's translation: one NDJSON line at a time,
/// complete at the `done: true` line.
pub(crate) struct OllamaStream {
    builder: ChunkBuilder,
    done: bool,
}

impl StreamTranslator<Value> for OllamaStream {
    fn on_event(&mut self, v: Value) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        if v.get("error").is_some_and(|e| !e.is_null()) {
            let body = v.to_string();
            return Err(http::error_from_parts(
                reqwest::StatusCode::BAD_GATEWAY,
                None,
                body.as_bytes(),
            ));
        }
        let b = &mut self.builder;
        let mut chunks = Vec::new();
        if let Some(message) = v.get("message") {
            if let Some(text) = message.get("content").and_then(Value::as_str) {
                if !text.is_empty() {
                    chunks.push(b.content(text));
                }
            }
            for call in tool_calls(message) {
                let id = call["id"].as_str().unwrap_or_default();
                let name = call.pointer("/function/name").and_then(Value::as_str);
                let args = call.pointer("/function/arguments").and_then(Value::as_str);
                chunks.push(b.tool_call_start(id, name.unwrap_or_default(), args.unwrap_or("{}")));
            }
        }
        self.done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
        if self.done {
            let reason = finish_reason(v.get("done_reason").and_then(Value::as_str));
            chunks.extend(b.finish(reason, usage(&v)));
        }
        Ok(chunks)
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        Err(cut_stream("upstream", "its `done: true` line"))
    }
}

pub(crate) fn ollama_stream(model_name: &str, include_usage: bool) -> OllamaStream {
    OllamaStream {
        builder: ChunkBuilder::new(model_name, include_usage),
        done: false,
    }
}

/// OpenAI embeddings from `/api/embed`'s `embeddings` (one per input), or
/// the single `embedding` of the legacy `/api/embeddings` shape (which
/// aimock 1.43 answers on `/api/embed` too).
fn parse_embeddings(v: &Value, model_name: &str) -> Result<EmbeddingResponse, ProviderError> {
    let vector = |e: &Value| -> Option<Vec<f32>> {
        e.as_array()?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect()
    };
    let vectors: Option<Vec<Vec<f32>>> = match (v.get("embeddings"), v.get("embedding")) {
        (Some(Value::Array(all)), _) => all.iter().map(vector).collect(),
        (None, Some(one)) => vector(one).map(|e| vec![e]),
        _ => None,
    };
    let vectors = vectors
        .ok_or_else(|| http::malformed("no embeddings".to_owned(), v.to_string().as_bytes()))?;
    let tokens = v
        .get("prompt_eval_count")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    Ok(EmbeddingResponse::new(
        model_name.to_owned(),
        vectors,
        tokens,
    ))
}

#[async_trait::async_trait]
impl Provider for OllamaProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(&self.upstream.model_name, "ollama", None)]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let body = self.chat_body(&req, false).await?;
        let v: Value =
            http::json_body(self.upstream.post_json("/api/chat", &body, false).await?).await?;
        parse_response(&v, &self.upstream.model_name)
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let body = self.chat_body(&req, true).await?;
        let resp = self.upstream.post_json("/api/chat", &body, true).await?;
        Ok(pump(
            http::ndjson_values(resp, self.upstream.stream_timeout),
            ollama_stream(&self.upstream.model_name, req.include_usage()),
        ))
    }

    async fn embeddings(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        let mut body = json!({"model": self.upstream.upstream_model, "input": req.input.texts()?});
        if let Some(d) = req.dimensions {
            body["dimensions"] = d.into();
        }
        let v: Value =
            http::json_body(self.upstream.post_json("/api/embed", &body, false).await?).await?;
        parse_embeddings(&v, &self.upstream.model_name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use futures::StreamExt;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn request_translates_options_tools_images_and_tool_turns() {
        let r = req(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
            ],
            "temperature": 0.2, "top_p": 0.9, "max_tokens": 7, "stop": ["\n"], "seed": 1,
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
            "tool_choice": "auto",
            "response_format": {"type": "json_object"}
        }));
        let body = request_body(&r, "llama3", false, false).unwrap();
        assert_eq!(body["model"], "llama3");
        assert_eq!(body["stream"], false);
        assert_eq!(
            body["options"],
            json!({"temperature": 0.2f32, "top_p": 0.9f32, "num_predict": 7,
                   "stop": ["\n"], "seed": 1})
        );
        assert_eq!(body["format"], "json");
        assert_eq!(body["tools"][0]["function"]["name"], "get_weather");
        let m = &body["messages"];
        assert_eq!(m[0], json!({"role": "system", "content": "be brief"}));
        assert_eq!(m[1]["images"], json!(["data:image/png;base64,AAAA"]));
        assert_eq!(
            m[2]["tool_calls"],
            json!([{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}])
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "content": "sunny", "tool_name": "get_weather"})
        );
        assert_eq!(data_url_payload("data:image/png;base64,AAAA"), Some("AAAA"));
    }

    #[test]
    fn forced_tool_choice_is_a_400_unless_dropped() {
        let r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                           "tools": [], "tool_choice": "required"}),
        );
        let err = request_body(&r, "x", false, false).unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("tool_choice"));
        assert!(request_body(&r, "x", false, true).is_ok());
    }

    #[test]
    fn response_maps_tool_calls_usage_and_done_reason() {
        let v = json!({
            "model": "llama3", "created_at": "2024-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "",
                        "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
            "done": true, "done_reason": "stop", "prompt_eval_count": 11, "eval_count": 5
        });
        let r = parse_response(&v, "client").unwrap();
        assert_eq!(r.model, "client");
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        let calls = r.choices[0].message.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(calls[0]["type"], "function");
        assert!(calls[0]["id"].as_str().unwrap().starts_with("call"));
        assert_eq!(r.usage, Usage::new(11, 5));
        let v = json!({"message": {"role": "assistant", "content": "abc"},
                       "done": true, "done_reason": "length"});
        let r = parse_response(&v, "client").unwrap();
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Length));
        assert_eq!(r.choices[0].message.content.as_deref(), Some("abc"));
    }

    #[tokio::test]
    async fn stream_lines_become_chunks() {
        let lines = vec![
            Ok(json!({"message": {"role": "assistant", "content": "Hel"}, "done": false})),
            Ok(json!({"message": {"role": "assistant", "content": "lo"}, "done": false})),
            Ok(
                json!({"message": {"role": "assistant", "content": ""}, "done": true,
                      "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 2}),
            ),
        ];
        let out: Vec<_> = pump(
            futures::stream::iter(lines).boxed(),
            ollama_stream("client", true),
        )
        .map(Result::unwrap)
        .collect()
        .await;
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].choices[0].delta.content.as_deref(), Some("Hel"));
        assert_eq!(out[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(out[3].usage, Some(Usage::new(3, 2)));
    }

    #[tokio::test]
    async fn an_error_line_is_an_error_item() {
        let lines = vec![Ok(json!({"error": "model crashed"}))];
        let out: Vec<_> = pump(
            futures::stream::iter(lines).boxed(),
            ollama_stream("client", false),
        )
        .collect()
        .await;
        assert_eq!(out.len(), 1);
        assert!(out[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("model crashed"));
    }

    #[test]
    fn embeddings_in_both_shapes() {
        let v = json!({"model": "m", "embeddings": [[0.1, 0.2], [0.3, 0.4]],
                       "prompt_eval_count": 4});
        let r = parse_embeddings(&v, "client").unwrap();
        assert_eq!(r.data.len(), 2);
        assert_eq!(r.data[1].embedding, vec![0.3f32, 0.4]);
        assert_eq!(r.usage.prompt_tokens, 4);
        let r = parse_embeddings(&json!({"embedding": [1.0]}), "client").unwrap();
        assert_eq!(r.data.len(), 1);
        assert!(parse_embeddings(&json!({}), "client").is_err());
    }
}
