//! OpenAI's own API and the OpenAI-compatible family (groq, together_ai,
//! fireworks_ai, deepseek, mistral, openrouter, perplexity, xai,
//! hosted_vllm, lm_studio, and `openai/<model>` with an `api_base`).
//!
//! The request is already OpenAI's shape, so translation is small: the
//! client-facing `model` becomes the upstream model, vLLM-only sampling
//! fields are dropped (or named in a 400) unless the upstream is vLLM or
//! LM Studio, and on the way back every `model` is rewritten to the
//! client's name. `OpenAiWire` does all of that over HTTP and is shared
//! with [`super::azure`], which differs only in URLs and its `api-key`
//! header (one way to do each thing).

use super::http::{self, SseEvent};
use super::resolve::{Compatible, ProviderKind, Resolved};
use super::upstream::Upstream;
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse, ModelCard,
};
use crate::provider::{ChunkStream, Provider};
use futures::stream::{BoxStream, StreamExt};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// OpenAI's public endpoint.
pub const OPENAI_BASE: &str = "https://api.openai.com/v1";

/// OpenAI chat parameters every OpenAI-shaped upstream takes.
const OPENAI_PARAMS: &[&str] = &[
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "user",
    "logit_bias",
    "tools",
    "tool_choice",
    "response_format",
];

/// vLLM's sampling extras (see `ChatCompletionRequest`): only vLLM and
/// LM Studio take them; OpenAI answers 400 to unknown arguments.
const VLLM_PARAMS: &[&str] = &[
    "top_k",
    "min_p",
    "repetition_penalty",
    "min_tokens",
    "ignore_eos",
    "skip_special_tokens",
    "stop_token_ids",
    "chat_template_kwargs",
];

/// Engine-side hints (`priority`, `add_generation_prompt`,
/// `add_special_tokens`) that only a vLLM upstream understands; other
/// upstreams never see them, since they change scheduling or templating
/// rather than what the model is asked.
const VLLM_HINTS: &[&str] = &["priority", "add_generation_prompt", "add_special_tokens"];

/// Which header carries an OpenAI-shaped upstream's key; without a key
/// none is sent (local vLLM, LM Studio).
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// Azure's `api-key: <key>`.
    ApiKey,
}

/// The URLs of one OpenAI-shaped deployment, parsed once when it is built
/// rather than on every request.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// `.../chat/completions`.
    pub chat: Url,
    /// `.../completions`.
    pub completions: Url,
    /// `.../embeddings`.
    pub embeddings: Url,
}

impl Endpoints {
    /// The URL `url_of` gives for each path (`chat/completions`,
    /// `completions`, `embeddings`); one that does not parse is a 400
    /// naming `api_base`, when the config is loaded.
    pub fn new(url_of: impl Fn(&str) -> String) -> Result<Self, ProviderError> {
        let parse = |path: &str| {
            let url = url_of(path);
            Url::parse(&url).map_err(|e| {
                ProviderError::invalid("api_base", format!("`{url}` is not a URL: {e}"))
            })
        };
        Ok(Self {
            chat: parse("chat/completions")?,
            completions: parse("completions")?,
            embeddings: parse("embeddings")?,
        })
    }
}

/// One deployment of an OpenAI-shaped API: what every call needs besides
/// its URL. Built by [`OpenAiProvider`] and by [`super::azure`].
#[derive(Debug, Clone)]
pub(crate) struct OpenAiWire {
    /// The deployment: names, base URL, key, timeouts, `drop_params`.
    pub upstream: Upstream,
    /// The header the key goes in.
    pub key_header: KeyHeader,
    /// Provider name for error messages (`openai`, `groq`, `azure`).
    pub provider: &'static str,
    /// Whether vLLM's extras go upstream (hosted_vllm, lm_studio).
    pub vllm_extras: bool,
    /// Where chat, completions and embeddings go.
    pub endpoints: Endpoints,
}

impl OpenAiWire {
    /// POSTs `body` to `url` with the key in [`Self::key_header`], sent
    /// as [`Upstream::send`] sends.
    async fn post(
        &self,
        url: &Url,
        body: &Value,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        let req = self.upstream.client.post(url.clone()).json(body);
        let req = match (&self.upstream.api_key, self.key_header) {
            (Some(key), KeyHeader::Bearer) => req.bearer_auth(key),
            (Some(key), KeyHeader::ApiKey) => req.header("api-key", key),
            (None, _) => req,
        };
        self.upstream.send(req, stream).await
    }

    /// The chat body: the client's request with the upstream model, an
    /// explicit `stream`, and what the upstream does not take removed
    /// (after `check_chat_params` said whether that is allowed).
    pub fn chat_body(
        &self,
        req: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<Value, ProviderError> {
        let supported: Vec<&str> = if self.vllm_extras {
            OPENAI_PARAMS.iter().chain(VLLM_PARAMS).copied().collect()
        } else {
            OPENAI_PARAMS.to_vec()
        };
        self.upstream.check_params(req, self.provider, &supported)?;
        self.body(req, stream)
    }

    /// The completions body; vLLM extras follow the chat rule (400 naming
    /// them unless `drop_params`).
    pub fn completion_body(
        &self,
        req: &CompletionRequest,
        stream: bool,
    ) -> Result<Value, ProviderError> {
        if !self.vllm_extras && !self.upstream.drop_params {
            let body = to_value(req)?;
            let set: Vec<&str> = VLLM_PARAMS
                .iter()
                .copied()
                .filter(|k| body.get(*k).is_some_and(|v| !v.is_null()))
                .collect();
            if !set.is_empty() {
                return Err(ProviderError::InvalidRequest {
                    message: format!(
                        "{} does not support parameters: {}. To drop them, set \
                         `litellm_settings: {{drop_params: true}}`",
                        self.provider,
                        set.join(", ")
                    ),
                    param: set.first().map(|p| (*p).to_owned()),
                });
            }
        }
        self.body(req, stream)
    }

    fn body<T: serde::Serialize>(&self, req: &T, stream: bool) -> Result<Value, ProviderError> {
        let mut body = to_value(req)?;
        if let Some(obj) = body.as_object_mut() {
            obj.insert(
                "model".to_owned(),
                Value::String(self.upstream.upstream_model.clone()),
            );
            obj.insert("stream".to_owned(), Value::Bool(stream));
            if !stream {
                obj.remove("stream_options");
            }
            if !self.vllm_extras {
                for key in VLLM_PARAMS.iter().chain(VLLM_HINTS) {
                    obj.remove(*key);
                }
            }
        }
        Ok(body)
    }

    /// A whole chat completion.
    pub async fn chat(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let body = self.chat_body(req, false)?;
        let resp = self.post(&self.endpoints.chat, &body, false).await?;
        let value: Value = http::json_body(resp).await?;
        parse_response(value, &self.upstream.model_name)
    }

    /// A streamed chat completion.
    pub async fn chat_stream(
        &self,
        req: &ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let body = self.chat_body(req, true)?;
        let resp = self.post(&self.endpoints.chat, &body, true).await?;
        Ok(chunks(
            http::sse_events(resp, self.upstream.stream_timeout),
            self.upstream.model_name.clone(),
        ))
    }

    /// A whole text completion.
    pub async fn completion(
        &self,
        req: &CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let body = self.completion_body(req, false)?;
        let resp = self.post(&self.endpoints.completions, &body, false).await?;
        let value: Value = http::json_body(resp).await?;
        parse_response(value, &self.upstream.model_name)
    }

    /// A streamed text completion.
    pub async fn completion_stream(
        &self,
        req: &CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        let body = self.completion_body(req, true)?;
        let resp = self.post(&self.endpoints.completions, &body, true).await?;
        Ok(chunks(
            http::sse_events(resp, self.upstream.stream_timeout),
            self.upstream.model_name.clone(),
        ))
    }

    /// Embeddings. Floats are always asked for upstream
    /// (`encoding_format` is removed): the response type carries floats,
    /// and base64 for a client that wants it is the route's encoding.
    pub async fn embeddings(
        &self,
        req: &EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let mut body = to_value(req)?;
        if let Some(obj) = body.as_object_mut() {
            obj.insert(
                "model".to_owned(),
                Value::String(self.upstream.upstream_model.clone()),
            );
            obj.remove("encoding_format");
        }
        let resp = self.post(&self.endpoints.embeddings, &body, false).await?;
        let value: Value = http::json_body(resp).await?;
        let mut out: EmbeddingResponse = from_value(value)?;
        out.model.clone_from(&self.upstream.model_name);
        Ok(out)
    }
}

fn to_value<T: serde::Serialize>(req: &T) -> Result<Value, ProviderError> {
    serde_json::to_value(req).map_err(|e| ProviderError::Internal {
        message: format!("cannot serialize the request: {e}"),
    })
}

/// `value` as `T`; the value is printed only when it does not fit.
fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ProviderError> {
    T::deserialize(&value)
        .map_err(|e| http::malformed(format!("{e}"), value.to_string().as_bytes()))
}

/// Makes an OpenAI-shaped response or chunk from any of the family fit our
/// types: `model` is the client's name, a missing `id`/`created`/`object`
/// or `usage` gets a value, and finish reasons outside OpenAI's four
/// (`function_call`, `eos`, `end_turn`, ...) map to theirs.
fn normalize(value: &mut Value, model_name: &str, object: &str, id_prefix: &str) {
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    obj.insert("model".to_owned(), Value::String(model_name.to_owned()));
    if !obj.get("id").is_some_and(Value::is_string) {
        obj.insert(
            "id".to_owned(),
            Value::String(crate::openai::new_id(id_prefix)),
        );
    }
    if !obj.get("created").is_some_and(Value::is_u64) {
        obj.insert("created".to_owned(), crate::openai::unix_now().into());
    }
    if !obj.get("object").is_some_and(Value::is_string) {
        obj.insert("object".to_owned(), Value::String(object.to_owned()));
    }
    if let Some(Value::Array(choices)) = obj.get_mut("choices") {
        for (i, choice) in choices.iter_mut().enumerate() {
            let Some(c) = choice.as_object_mut() else {
                continue;
            };
            if !c.contains_key("index") {
                c.insert("index".to_owned(), i.into());
            }
            if let Some(Value::String(reason)) = c.get("finish_reason") {
                let mapped = finish_reason(reason);
                c.insert("finish_reason".to_owned(), Value::String(mapped.to_owned()));
            }
        }
    }
}

/// OpenAI's finish reason for one of the family's.
fn finish_reason(reason: &str) -> &'static str {
    match reason {
        "length" | "max_tokens" | "model_length" => "length",
        "tool_calls" | "function_call" | "tool_use" => "tool_calls",
        "content_filter" => "content_filter",
        _ => "stop",
    }
}

/// A whole response (chat or text completion) from its JSON.
fn parse_response<T: DeserializeOwned + Shape>(
    mut value: Value,
    model_name: &str,
) -> Result<T, ProviderError> {
    if let Some(obj) = value.as_object_mut() {
        if obj.get("usage").is_none_or(Value::is_null) {
            obj.insert(
                "usage".to_owned(),
                serde_json::json!({"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}),
            );
        }
    }
    normalize(&mut value, model_name, T::OBJECT, T::ID_PREFIX);
    from_value(value)
}

/// What [`normalize`] fills in per response type.
pub(crate) trait Shape {
    const OBJECT: &'static str;
    const ID_PREFIX: &'static str;
}

impl Shape for ChatCompletionResponse {
    const OBJECT: &'static str = "chat.completion";
    const ID_PREFIX: &'static str = "chatcmpl";
}

impl Shape for ChatCompletionChunk {
    const OBJECT: &'static str = "chat.completion.chunk";
    const ID_PREFIX: &'static str = "chatcmpl";
}

impl Shape for CompletionResponse {
    const OBJECT: &'static str = "text_completion";
    const ID_PREFIX: &'static str = "cmpl";
}

impl Shape for CompletionChunk {
    const OBJECT: &'static str = "text_completion";
    const ID_PREFIX: &'static str = "cmpl";
}

/// One SSE event of an OpenAI stream, read: a chunk, the `[DONE]` end, or
/// an in-stream error.
fn read_event<T: DeserializeOwned + Shape>(
    ev: &SseEvent,
    model_name: &str,
) -> Option<Result<T, ProviderError>> {
    let data = ev.data.trim();
    if data == "[DONE]" {
        return None;
    }
    let mut value: Value = match serde_json::from_str(data) {
        Ok(v) => v,
        Err(e) => return Some(Err(http::malformed(format!("{e}"), data.as_bytes()))),
    };
    if ev.event == "error" || value.get("error").is_some_and(|e| !e.is_null()) {
        let status = value
            .pointer("/error/code")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        return Some(Err(http::error_from_parts(status, None, data.as_bytes())));
    }
    normalize(&mut value, model_name, T::OBJECT, T::ID_PREFIX);
    Some(from_value(value))
}

/// The chunks of an OpenAI SSE stream, `model` rewritten. `data: [DONE]`
/// ends it; a body that ends before `[DONE]` ends with a `502` item, and an
/// error event with an item carrying the upstream's message. The usage
/// chunk is whatever the upstream sent for the client's
/// `stream_options` (forwarded unchanged).
pub(crate) fn chunks<T: DeserializeOwned + Shape + Send + 'static>(
    events: BoxStream<'static, Result<SseEvent, ProviderError>>,
    model_name: String,
) -> ChunkStream<T> {
    futures::stream::unfold(Some(events), move |state| {
        let model_name = model_name.clone();
        async move {
            let mut events = state?;
            loop {
                match events.next().await {
                    Some(Ok(ev)) if ev.data.trim().is_empty() => continue,
                    Some(Ok(ev)) => {
                        return match read_event::<T>(&ev, &model_name) {
                            None => None,
                            Some(Ok(chunk)) => Some((Ok(chunk), Some(events))),
                            Some(Err(e)) => Some((Err(e), None)),
                        };
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        let err = ProviderError::Upstream {
                            status: 502,
                            message: "the upstream stream ended before `data: [DONE]`".to_owned(),
                            retry_after: None,
                        };
                        return Some((Err(err), None));
                    }
                }
            }
        }
    })
    .boxed()
}

/// The adapter for OpenAI and every OpenAI-compatible deployment.
pub struct OpenAiProvider {
    wire: OpenAiWire,
}

impl OpenAiProvider {
    /// Builds the adapter: the base URL is `api_base`, else the kind's
    /// default (OpenAI's, or the compatible service's); hosted vLLM has no
    /// default, so it needs `api_base` (a 400 saying so otherwise).
    pub fn new(
        model_name: &str,
        resolved: Resolved,
        params: &DeploymentParams,
        client: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let (provider, default_base, vllm_extras) = match resolved.kind {
            ProviderKind::OpenAi => ("openai", Some(OPENAI_BASE), false),
            ProviderKind::OpenAiCompatible(c) => (
                c.prefix(),
                c.default_base(),
                matches!(c, Compatible::HostedVllm | Compatible::LmStudio),
            ),
            other => {
                return Err(ProviderError::Internal {
                    message: format!("the OpenAI adapter cannot serve {other:?}"),
                })
            }
        };
        let default_base = params.api_base().or(default_base).ok_or_else(|| {
            ProviderError::invalid(
                "api_base",
                format!(
                    "model `{model_name}` ({}) needs `api_base` in its litellm_params: \
                         {provider} has no default endpoint",
                    params.model
                ),
            )
        })?;
        let upstream = Upstream::new(
            model_name,
            resolved.upstream_model,
            params,
            client,
            default_base,
        );
        let endpoints = Endpoints::new(|path| format!("{}/{path}", upstream.base))?;
        Ok(Self {
            wire: OpenAiWire {
                upstream,
                key_header: KeyHeader::Bearer,
                provider,
                vllm_extras,
                endpoints,
            },
        })
    }
}

#[async_trait::async_trait]
impl Provider for OpenAiProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(
            &self.wire.upstream.model_name,
            self.wire.provider,
            None,
        )]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        self.wire.chat(&req).await
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        self.wire.chat_stream(&req).await
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        self.wire.completion(&req).await
    }

    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        self.wire.completion_stream(&req).await
    }

    async fn embeddings(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        self.wire.embeddings(&req).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::FinishReason;
    use futures::stream;
    use serde_json::json;

    fn provider(model: &str, api_base: Option<&str>) -> Result<OpenAiProvider, ProviderError> {
        let params = DeploymentParams {
            model: model.to_owned(),
            api_base: api_base.map(str::to_owned),
            ..DeploymentParams::default()
        };
        let resolved = super::super::resolve::resolve(model)?;
        OpenAiProvider::new("client-name", resolved, &params, reqwest::Client::new())
    }

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn bases_come_from_the_kind_or_api_base() {
        assert_eq!(
            provider("gpt-4o", None).unwrap().wire.upstream.base,
            OPENAI_BASE
        );
        assert_eq!(
            provider("groq/llama3", None).unwrap().wire.upstream.base,
            "https://api.groq.com/openai/v1"
        );
        assert_eq!(
            provider("openai/x", Some("http://h:1/v1/"))
                .unwrap()
                .wire
                .upstream
                .base,
            "http://h:1/v1"
        );
        let err = provider("hosted_vllm/m", None).err().unwrap();
        assert_eq!(err.status(), 400);
        assert_eq!(err.body().error.param.as_deref(), Some("api_base"));
        assert!(provider("hosted_vllm/m", Some("http://vllm:8000/v1")).is_ok());
    }

    #[test]
    fn chat_body_keeps_extra_and_sets_upstream_model() {
        let p = provider("groq/llama3-8b", None).unwrap();
        let r = req(json!({
            "model": "client-name", "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0.5, "stream_options": {"include_usage": true},
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "parallel_tool_calls": false, "priority": 3
        }));
        let body = p.wire.chat_body(&r, true).unwrap();
        assert_eq!(body["model"], "llama3-8b");
        assert_eq!(body["stream"], true);
        assert_eq!(body["parallel_tool_calls"], false);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["tools"][0]["function"]["name"], "f");
        assert!(body.get("priority").is_none());
        let body = p.wire.chat_body(&r, false).unwrap();
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn vllm_extras_are_a_400_or_dropped_except_for_vllm() {
        let r = req(
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                           "top_k": 5, "min_p": 0.1}),
        );
        let p = provider("openai/x", Some("http://h/v1")).unwrap();
        let err = p.wire.chat_body(&r, false).unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("top_k"));
        let mut dropping = provider("openai/x", Some("http://h/v1")).unwrap();
        dropping.wire.upstream.drop_params = true;
        let body = dropping.wire.chat_body(&r, false).unwrap();
        assert!(body.get("top_k").is_none() && body.get("min_p").is_none());
        let vllm = provider("hosted_vllm/x", Some("http://h/v1")).unwrap();
        let body = vllm.wire.chat_body(&r, false).unwrap();
        assert_eq!(body["top_k"], 5);
    }

    #[test]
    fn responses_get_the_client_model_and_openai_finish_reasons() {
        let upstream = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1,
            "model": "llama3-8b-8192", "system_fingerprint": "x",
            "choices": [{"index": 0, "finish_reason": "function_call",
                         "message": {"role": "assistant", "content": null,
                                     "tool_calls": [{"id": "c1", "type": "function",
                                        "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        });
        let r: ChatCompletionResponse = parse_response(upstream, "client-name").unwrap();
        assert_eq!(r.model, "client-name");
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
        assert_eq!(r.usage.total_tokens, 7);
        assert_eq!(
            r.choices[0].message.tool_calls.as_ref().unwrap()[0]["id"],
            "c1"
        );
        let bare = json!({"choices": [{"message": {"role": "assistant", "content": "x"},
                                       "finish_reason": "eos"}]});
        let r: ChatCompletionResponse = parse_response(bare, "m").unwrap();
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(r.usage.total_tokens, 0);
        let broken: Result<ChatCompletionResponse, _> = parse_response(json!({"x": 1}), "m");
        assert_eq!(broken.unwrap_err().status(), 502);
    }

    fn sse(data: &[&str]) -> BoxStream<'static, Result<SseEvent, ProviderError>> {
        let items: Vec<_> = data
            .iter()
            .map(|d| {
                Ok(SseEvent {
                    event: String::new(),
                    data: (*d).to_owned(),
                })
            })
            .collect();
        stream::iter(items).boxed()
    }

    async fn collect(data: &[&str]) -> Vec<Result<ChatCompletionChunk, ProviderError>> {
        chunks::<ChatCompletionChunk>(sse(data), "client".to_owned())
            .collect()
            .await
    }

    #[tokio::test]
    async fn stream_chunks_end_at_done() {
        let items = collect(&[
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":"He"},"finish_reason":null}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[{"index":0,"delta":{"content":"llo"},"finish_reason":"stop"}]}"#,
            r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"up","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            "[DONE]",
        ])
        .await;
        assert_eq!(items.len(), 3);
        let chunks: Vec<_> = items.into_iter().map(Result::unwrap).collect();
        assert!(chunks.iter().all(|c| c.model == "client"));
        assert_eq!(chunks[1].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(chunks[2].usage.as_ref().unwrap().total_tokens, 3);
    }

    #[tokio::test]
    async fn a_stream_cut_before_done_ends_with_a_502() {
        let items = collect(&[
            r#"{"id":"c","created":1,"choices":[{"index":0,"delta":{"content":"He"},"finish_reason":null}]}"#,
        ])
        .await;
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().unwrap_err().status(), 502);
    }

    #[tokio::test]
    async fn an_error_event_carries_the_upstream_message() {
        let items = collect(&[
            r#"{"error":{"message":"engine overloaded","type":"server_error","code":503}}"#,
            "[DONE]",
        ])
        .await;
        assert_eq!(items.len(), 1);
        let err = items[0].as_ref().unwrap_err();
        assert_eq!(err.status(), 503);
        assert!(err.to_string().contains("engine overloaded"));
    }
}
