//! HTTP-layer tests: the real router on 127.0.0.1:0, a real HTTP client,
//! and a small in-test provider (the real engine is tested end to end
//! elsewhere). Models of the test provider: `echo` answers with the last
//! message (one chunk per word when streaming), `slow` never finishes and
//! flips a flag when its future or stream is dropped, `broken` fails after
//! one chunk.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use frontend::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
    ChatCompletionResponse, ChatDelta, ChatResponseMessage, CompletionChoice, CompletionChunk,
    CompletionRequest, CompletionResponse, DetokenizeRequest, DetokenizeResponse, FinishReason,
    ModelCard, Prompt, TokenizeInput, TokenizeRequest, TokenizeResponse, Usage,
};
use frontend::{router, AppState, ChunkStream, Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const MAX_MODEL_LEN: usize = 32;

/// Flips its flag when dropped: proves a provider future/stream was dropped.
struct DropGuard(Arc<AtomicBool>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

struct TestProvider {
    healthy: AtomicBool,
    dropped: Arc<AtomicBool>,
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap()
}

impl TestProvider {
    fn check_len(&self, prompt: &[String]) -> Result<(), ProviderError> {
        if prompt.len() > MAX_MODEL_LEN {
            return Err(ProviderError::ContextLengthExceeded {
                message: format!(
                    "This model's maximum context length is {MAX_MODEL_LEN} tokens, \
                     but the prompt has {} tokens.",
                    prompt.len()
                ),
            });
        }
        Ok(())
    }

    fn guard(&self) -> DropGuard {
        DropGuard(Arc::clone(&self.dropped))
    }
}

fn last_message(req: &ChatCompletionRequest) -> String {
    req.messages
        .last()
        .map(|m| m.text_content())
        .unwrap_or_default()
}

fn prompt_text(req: &CompletionRequest) -> String {
    match &req.prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Texts(t) => t.join(" "),
        Prompt::Tokens(ids) => ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
        Prompt::TokenBatches(b) => b
            .iter()
            .flatten()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn chat_chunk(model: &str, delta: ChatDelta, finish: Option<FinishReason>) -> ChatCompletionChunk {
    ChatCompletionChunk::new(
        "chatcmpl-test".into(),
        1,
        model.into(),
        vec![ChatChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }],
    )
}

fn content(text: &str) -> ChatDelta {
    ChatDelta {
        content: Some(text.into()),
        ..ChatDelta::default()
    }
}

#[async_trait::async_trait]
impl Provider for TestProvider {
    fn models(&self) -> Vec<ModelCard> {
        ["echo", "slow", "broken"]
            .into_iter()
            .map(|id| ModelCard::new(id, "test", Some(count(MAX_MODEL_LEN))))
            .collect()
    }

    fn health(&self) -> Result<(), ProviderError> {
        if self.healthy.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(ProviderError::Unavailable {
                message: "workers died".into(),
            })
        }
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        if req.model == "slow" {
            let _guard = self.guard();
            return futures::future::pending().await;
        }
        let text = last_message(&req);
        let prompt = words(&text);
        self.check_len(&prompt)?;
        let n = count(prompt.len());
        Ok(ChatCompletionResponse::new(
            "chatcmpl-test".into(),
            req.model,
            vec![ChatChoice {
                index: 0,
                message: ChatResponseMessage::assistant(text),
                logprobs: None,
                finish_reason: Some(FinishReason::Stop),
            }],
            Usage::new(n, n),
        ))
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let model = req.model.clone();
        match model.as_str() {
            "slow" => {
                let guard = self.guard();
                Ok(futures::stream::unfold(guard, move |guard| {
                    let model = model.clone();
                    async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Some((Ok(chat_chunk(&model, content("tick "), None)), guard))
                    }
                })
                .boxed())
            }
            "broken" => Ok(futures::stream::iter(vec![
                Ok(chat_chunk(&model, content("partial"), None)),
                Err(ProviderError::Internal {
                    message: "worker crashed".into(),
                }),
                Ok(chat_chunk(&model, content("never sent"), None)),
            ])
            .boxed()),
            _ => {
                let prompt = words(&last_message(&req));
                self.check_len(&prompt)?;
                let n = count(prompt.len());
                let mut chunks = vec![chat_chunk(
                    &model,
                    ChatDelta {
                        role: Some("assistant".into()),
                        ..ChatDelta::default()
                    },
                    None,
                )];
                for w in &prompt {
                    chunks.push(chat_chunk(&model, content(&format!("{w} ")), None));
                }
                chunks.push(chat_chunk(
                    &model,
                    ChatDelta::default(),
                    Some(FinishReason::Stop),
                ));
                if req.include_usage() {
                    chunks.push(ChatCompletionChunk::usage_only(
                        "chatcmpl-test".into(),
                        1,
                        model.clone(),
                        Usage::new(n, n),
                    ));
                }
                Ok(futures::stream::iter(chunks.into_iter().map(Ok)).boxed())
            }
        }
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let text = prompt_text(&req);
        let n = count(words(&text).len());
        Ok(CompletionResponse::new(
            "cmpl-test".into(),
            req.model,
            vec![CompletionChoice {
                index: 0,
                text,
                logprobs: None,
                finish_reason: Some(FinishReason::Length),
            }],
            Usage::new(n, n),
        ))
    }

    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        let text = prompt_text(&req);
        let prompt = words(&text);
        let n = count(prompt.len());
        let mut chunks: Vec<_> = prompt
            .iter()
            .map(|w| {
                CompletionChunk::new(
                    "cmpl-test".into(),
                    1,
                    req.model.clone(),
                    vec![CompletionChoice {
                        index: 0,
                        text: format!("{w} "),
                        logprobs: None,
                        finish_reason: None,
                    }],
                )
            })
            .collect();
        if req.include_usage() {
            chunks.push(CompletionChunk::usage_only(
                "cmpl-test".into(),
                1,
                req.model.clone(),
                Usage::new(n, n),
            ));
        }
        Ok(futures::stream::iter(chunks.into_iter().map(Ok)).boxed())
    }

    async fn tokenize(&self, req: TokenizeRequest) -> Result<TokenizeResponse, ProviderError> {
        let text = match req.input()? {
            TokenizeInput::Prompt(p) => p.to_owned(),
            TokenizeInput::Messages(m) => m
                .iter()
                .map(|m| m.text_content())
                .collect::<Vec<_>>()
                .join("\n"),
        };
        let tokens: Vec<u32> = text.bytes().map(u32::from).collect();
        Ok(TokenizeResponse {
            count: tokens.len(),
            max_model_len: MAX_MODEL_LEN,
            tokens,
        })
    }

    async fn detokenize(
        &self,
        req: DetokenizeRequest,
    ) -> Result<DetokenizeResponse, ProviderError> {
        let bytes = req
            .tokens
            .iter()
            .map(|&t| u8::try_from(t))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| ProviderError::invalid("tokens", "token id out of range"))?;
        Ok(DetokenizeResponse {
            prompt: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

struct Server {
    base: String,
    provider: Arc<TestProvider>,
    client: reqwest::Client,
}

impl Server {
    async fn start() -> Self {
        let provider = Arc::new(TestProvider {
            healthy: AtomicBool::new(true),
            dropped: Arc::new(AtomicBool::new(false)),
        });
        let providers: Vec<Arc<dyn Provider>> = vec![provider.clone()];
        let state = AppState::new(providers, prometheus::Registry::new()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(frontend::serve(
            listener,
            router(state),
            futures::future::pending(),
        ));
        Self {
            base: format!("http://{addr}"),
            provider,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn post_text(&self, path: &str, body: Value) -> (u16, String) {
        let resp = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Waits up to a second for the provider's drop guard to flip.
    async fn provider_dropped_within_a_second(&self) -> bool {
        for _ in 0..100 {
            if self.provider.dropped.load(Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// The `data:` payloads of an SSE body, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn chat_body(extra: Value) -> Value {
    let mut body =
        json!({"model": "echo", "messages": [{"role": "user", "content": "hello there world"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

fn assert_openai_error(body: &Value, kind: &str) {
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(err["type"], kind, "{body}");
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn chat_non_streaming() {
    let s = Server::start().await;
    let (status, body) = s.post("/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "echo");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "hello there world"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["total_tokens"], 6);
}

#[tokio::test]
async fn chat_without_model_uses_first_model() {
    let s = Server::start().await;
    let mut body = chat_body(json!({}));
    body.as_object_mut().unwrap().remove("model");
    let (status, body) = s.post("/v1/chat/completions", body).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "echo");
}

#[tokio::test]
async fn chat_streaming_ends_with_done() {
    let s = Server::start().await;
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&chat_body(json!({"stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "hello there world ");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
}

#[tokio::test]
async fn include_usage_final_chunk_passes_through() {
    let s = Server::start().await;
    let (status, body) = s
        .post_text(
            "/v1/chat/completions",
            chat_body(json!({"stream": true, "stream_options": {"include_usage": true}})),
        )
        .await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6})
    );
}

#[tokio::test]
async fn mid_stream_error_is_an_sse_error_event_without_done() {
    let s = Server::start().await;
    let (status, body) = s
        .post_text(
            "/v1/chat/completions",
            chat_body(json!({"model": "broken", "stream": true})),
        )
        .await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.len(), 2, "{body}");
    let err: Value = serde_json::from_str(&data[1]).unwrap();
    assert_openai_error(&err, "server_error");
    // The worker's text stays in the log; the event quotes the request id
    // (the stream is polled after the handler returned, still in scope).
    let message = err["error"]["message"].as_str().unwrap();
    assert!(!message.contains("worker crashed"), "{message}");
    assert!(message.contains("Request id: req-"), "{message}");
}

#[tokio::test]
async fn completions_non_streaming_and_streaming() {
    let s = Server::start().await;
    let (status, body) = s
        .post("/v1/completions", json!({"model": "echo", "prompt": "a b"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "a b");
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);

    let (status, body) = s
        .post_text(
            "/v1/completions",
            json!({"model": "echo", "prompt": [1, 2, 3], "stream": true,
                   "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(status, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "1 2 3 ");
    assert_eq!(chunks.last().unwrap()["usage"]["total_tokens"], 6);
}

#[tokio::test]
async fn models_lists_cards() {
    let s = Server::start().await;
    let body: Value = s.get("/v1/models").await.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["echo", "slow", "broken"]);
    assert_eq!(body["data"][0]["object"], "model");
    assert_eq!(body["data"][0]["owned_by"], "test");
    assert_eq!(body["data"][0]["max_model_len"], MAX_MODEL_LEN);
}

#[tokio::test]
async fn models_retrieve_one_card_or_404() {
    let s = Server::start().await;
    let card = s.get("/v1/models/slow").await;
    assert_eq!(card.status(), 200);
    let card: Value = card.json().await.unwrap();
    assert_eq!(card["id"], "slow");
    assert_eq!(card["object"], "model");
    for unknown in ["/v1/models/nope", "/v1/models/openai/echo"] {
        let r = s.get(unknown).await;
        assert_eq!(r.status(), 404, "{unknown}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "model_not_found", "{unknown}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn health_follows_provider() {
    let s = Server::start().await;
    let resp = s.get("/health").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "");
    s.provider.healthy.store(false, Ordering::SeqCst);
    let resp = s.get("/health").await;
    assert_eq!(resp.status(), 503);
    assert_openai_error(&resp.json().await.unwrap(), "server_error");
    s.provider.healthy.store(true, Ordering::SeqCst);
    assert_eq!(s.get("/health").await.status(), 200);
}

#[tokio::test]
async fn metrics_has_http_metrics() {
    let s = Server::start().await;
    assert_eq!(s.get("/v1/models").await.status(), 200);
    assert_eq!(s.get("/nope").await.status(), 404);
    let resp = s.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{handler="/v1/models",method="GET",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"http_requests_total{handler="other",method="GET",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn tokenize_and_detokenize() {
    let s = Server::start().await;
    let (status, body) = s.post("/tokenize", json!({"prompt": "hi"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"count": 2, "max_model_len": MAX_MODEL_LEN, "tokens": [104, 105]})
    );
    let (status, body) = s
        .post(
            "/tokenize",
            json!({"model": "echo", "messages": [{"role": "user", "content": "A"}],
                   "add_generation_prompt": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokens"], json!([65]));
    let (status, body) = s.post("/detokenize", json!({"tokens": [104, 105]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"prompt": "hi"}));
    let (status, body) = s.post("/tokenize", json!({})).await;
    assert_eq!(status, 400);
    assert_openai_error(&body, "invalid_request_error");
    let (status, body) = s
        .post("/detokenize", json!({"model": "nope", "tokens": [1]}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn bad_requests_get_openai_errors_and_server_keeps_serving() {
    let s = Server::start().await;
    let long_prompt = vec!["word"; MAX_MODEL_LEN + 1].join(" ");
    // (body, status, param, code)
    let cases: Vec<(Value, u16, Option<&str>, Option<&str>)> = vec![
        (json!({"model": "echo"}), 400, Some("messages"), None),
        (
            json!({"model": "echo", "messages": []}),
            400,
            Some("messages"),
            None,
        ),
        (
            chat_body(json!({"max_tokens": -1})),
            400,
            Some("max_tokens"),
            None,
        ),
        (
            chat_body(json!({"temperature": 3})),
            400,
            Some("temperature"),
            None,
        ),
        (chat_body(json!({"top_p": 0})), 400, Some("top_p"), None),
        (chat_body(json!({"n": 0})), 400, Some("n"), None),
        (
            chat_body(json!({"messages": [{"role": "user", "content": long_prompt}]})),
            400,
            Some("messages"),
            Some("context_length_exceeded"),
        ),
        (
            chat_body(json!({"model": "no-such-model"})),
            404,
            Some("model"),
            Some("model_not_found"),
        ),
        (
            chat_body(json!({"messages": "not a list"})),
            400,
            None,
            Some("invalid_json"),
        ),
    ];
    for (body, status, param, code) in cases {
        let (got, err) = s.post("/v1/chat/completions", body.clone()).await;
        assert_eq!(got, status, "{body} -> {err}");
        assert_openai_error(&err, "invalid_request_error");
        assert_eq!(err["error"]["param"].as_str(), param, "{body} -> {err}");
        assert_eq!(err["error"]["code"].as_str(), code, "{body} -> {err}");
    }

    // Streaming requests fail before the stream starts, with a real status.
    let (got, err) = s
        .post(
            "/v1/chat/completions",
            chat_body(json!({"stream": true, "model": "gone"})),
        )
        .await;
    assert_eq!(got, 404, "{err}");

    let (got, err) = s
        .post(
            "/v1/completions",
            json!({"model": "echo", "prompt": "a", "max_tokens": -5}),
        )
        .await;
    assert_eq!(got, 400);
    assert_eq!(err["error"]["param"], "max_tokens");

    // Malformed JSON.
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body("{\"model\": \"echo\", \"messages\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_openai_error(&err, "invalid_request_error");
    assert_eq!(err["error"]["code"], "invalid_json");

    // Not JSON at all by content type.
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_openai_error(&resp.json().await.unwrap(), "invalid_request_error");

    // Unknown route and wrong method.
    let resp = s.get("/v1/nope").await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert_openai_error(&err, "invalid_request_error");
    assert_eq!(err["error"]["message"], "Invalid URL (GET /v1/nope)");
    let resp = s.get("/v1/chat/completions").await;
    assert_eq!(resp.status(), 405);
    assert_openai_error(&resp.json().await.unwrap(), "invalid_request_error");

    // After all that, the server still answers.
    let (status, body) = s.post("/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.get("/health").await.status(), 200);
}

#[tokio::test]
async fn huge_fan_out_is_refused_before_the_provider_sees_it() {
    let s = Server::start().await;
    // A million token prompts at n = 128 (about 4 MB of JSON): one 400
    // naming `prompt`, and the provider is never called.
    let million: Vec<Vec<u32>> = vec![vec![1]; 1_000_000];
    let (status, err) = s
        .post(
            "/v1/completions",
            json!({"model": "echo", "prompt": million, "n": 128}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_openai_error(&err, "invalid_request_error");
    assert_eq!(err["error"]["param"], "prompt");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("128000000 sequences"),
        "{err}"
    );
    // 16 stop strings of 1 MiB each (2 MiB would pass the 32 MiB body
    // limit and get 413): refused by their length.
    let huge = "x".repeat(1 << 20);
    let stops = vec![huge.as_str(); 16];
    let (status, err) = s
        .post(
            "/v1/completions",
            json!({"model": "echo", "prompt": "a", "n": 128, "stop": stops}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "stop");
    let (status, err) = s
        .post("/v1/chat/completions", chat_body(json!({"stop": [huge]})))
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["param"], "stop");
    // The server still answers.
    let (status, body) = s.post("/v1/chat/completions", chat_body(json!({}))).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn oversized_body_is_413_openai_error() {
    let provider: Arc<dyn Provider> = Arc::new(TestProvider {
        healthy: AtomicBool::new(true),
        dropped: Arc::new(AtomicBool::new(false)),
    });
    let state = AppState::new(vec![provider], prometheus::Registry::new())
        .unwrap()
        .with_body_limit(1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(frontend::serve(
        listener,
        router(state),
        futures::future::pending(),
    ));
    let big = "x ".repeat(2048);
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&chat_body(
            json!({"messages": [{"role": "user", "content": big}]}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_openai_error(&resp.json().await.unwrap(), "invalid_request_error");
}

#[tokio::test]
async fn client_dropping_a_stream_drops_the_provider_stream() {
    let s = Server::start().await;
    let resp = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&chat_body(json!({"model": "slow", "stream": true})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("tick"));
    assert!(
        !s.provider.dropped.load(Ordering::SeqCst),
        "stream alive while read"
    );
    drop(body);
    assert!(
        s.provider_dropped_within_a_second().await,
        "provider stream still alive a second after the client left"
    );
}

#[tokio::test]
async fn client_dropping_a_pending_request_drops_the_provider_future() {
    let s = Server::start().await;
    let result = s
        .client
        .post(s.url("/v1/chat/completions"))
        .json(&chat_body(json!({"model": "slow"})))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(result.is_err(), "slow model must not answer");
    assert!(
        s.provider_dropped_within_a_second().await,
        "provider future still alive a second after the client left"
    );
}
