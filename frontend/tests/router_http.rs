//! The router behind the real HTTP app: `AppState` gets one provider, the
//! `Router`, and clients see model_names, retried and failed-over answers,
//! upstream statuses in OpenAI's error format, SSE error events after the
//! first chunk, and the router's metrics on `/metrics`. Deployments are
//! small in-test providers (remote adapters are tested against aimock in
//! their own files).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use frontend::config::{GatewayConfig, RouterPolicy};
use frontend::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, ModelCard,
};
use frontend::router::{DeploymentSpec, Router};
use frontend::{router, AppState, ChunkStream, Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// What one call does.
#[derive(Clone)]
enum Step {
    Ok,
    Fail(ProviderError),
    /// Stream: one chunk, then this error.
    CutAfterOne(ProviderError),
}

struct Upstream {
    name: &'static str,
    script: Mutex<VecDeque<Step>>,
    then: Step,
}

impl Upstream {
    fn new(name: &'static str, script: Vec<Step>, then: Step) -> Arc<Self> {
        Arc::new(Self {
            name,
            script: Mutex::new(script.into()),
            then,
        })
    }
    fn next(&self) -> Step {
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.then.clone())
    }
    fn chunk(&self, model: &str, text: &str) -> ChatCompletionChunk {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]
        }))
        .unwrap()
    }
}

#[async_trait::async_trait]
impl Provider for Upstream {
    fn models(&self) -> Vec<ModelCard> {
        vec![]
    }
    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        match self.next() {
            Step::Fail(e) | Step::CutAfterOne(e) => Err(e),
            Step::Ok => Ok(serde_json::from_value(json!({
                "id": "x", "object": "chat.completion", "created": 0, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.name},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
            }))
            .unwrap()),
        }
    }
    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let items = match self.next() {
            Step::Fail(e) => return Err(e),
            Step::CutAfterOne(e) => vec![Ok(self.chunk(&req.model, "partial")), Err(e)],
            Step::Ok => vec![Ok(self.chunk(&req.model, self.name))],
        };
        Ok(futures::stream::iter(items).boxed())
    }
    async fn completion(&self, r: CompletionRequest) -> Result<CompletionResponse, ProviderError> {
        Err(frontend::provider::unsupported(&r.model, "completions"))
    }
    async fn completion_stream(
        &self,
        r: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        Err(frontend::provider::unsupported(&r.model, "completions"))
    }
}

fn up(status: u16, message: &str, retry_after: Option<u64>) -> ProviderError {
    ProviderError::Upstream {
        status,
        message: message.to_owned(),
        retry_after,
    }
}

fn spec(model_name: &str, u: &Arc<Upstream>) -> DeploymentSpec {
    DeploymentSpec {
        model_name: model_name.to_owned(),
        id: u.name.to_owned(),
        params: Default::default(),
        provider: Arc::clone(u) as Arc<dyn Provider>,
    }
}

async fn serve(specs: Vec<DeploymentSpec>, policy: RouterPolicy) -> String {
    let registry = prometheus::Registry::new();
    let r = Router::new(specs, policy, &registry).unwrap();
    let state = AppState::new(vec![Arc::new(r)], registry).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(frontend::serve(
        listener,
        router(state),
        futures::future::pending(),
    ));
    format!("http://{addr}")
}

async fn post(base: &str, body: Value) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn models_retries_fallbacks_and_metrics_over_http() {
    let flaky = Upstream::new("flaky", vec![Step::Fail(up(500, "boom", None))], Step::Ok);
    let steady = Upstream::new("steady", vec![], Step::Ok);
    let down = Upstream::new("down", vec![], Step::Fail(up(503, "down", None)));
    let base = serve(
        vec![
            spec("m", &flaky),
            spec("other", &steady),
            spec("dead", &down),
        ],
        RouterPolicy {
            num_retries: 1,
            fallbacks: vec![("dead".into(), vec!["other".into()])],
            ..RouterPolicy::default()
        },
    )
    .await;

    let models: Value = reqwest::get(format!("{base}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m", "other", "dead"]);

    // A 500 is retried (on the single deployment, after a backoff).
    let (status, body) = post(&base, chat("m", false)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][0]["message"]["content"], "flaky");

    // A dead group falls back; the answer names the fallback model_name.
    let (status, body) = post(&base, chat("dead", false)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "other");

    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gateway_retries_total{model_name=\"m\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_fallbacks_total{from=\"dead\",to=\"other\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_upstream_errors_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_upstream_latency_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn upstream_statuses_and_messages_reach_the_client_in_openai_format() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
    ] {
        let u = Upstream::new(
            "u",
            vec![],
            Step::Fail(up(status, &format!("upstream message {status}"), Some(0))),
        );
        let base = serve(
            vec![spec("m", &u)],
            RouterPolicy {
                num_retries: 0,
                ..RouterPolicy::default()
            },
        )
        .await;
        let (got, body) = post(&base, chat("m", false)).await;
        assert_eq!(got, status, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], kind, "{status}: {body}");
        assert_eq!(
            v["error"]["message"],
            format!("upstream message {status}"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_huge_timeout_or_retry_after_is_served_not_a_panic() {
    let limited = Upstream::new(
        "limited",
        vec![Step::Fail(up(429, "slow", Some(u64::MAX)))],
        Step::Ok,
    );
    let steady = Upstream::new("steady", vec![], Step::Ok);
    let base = serve(
        vec![spec("m", &limited), spec("m", &steady)],
        RouterPolicy {
            num_retries: 1,
            ..RouterPolicy::default()
        },
    )
    .await;
    for timeout in [json!(1e20), json!(1.8e19), json!(1e308)] {
        let mut body = chat("m", false);
        body["timeout"] = timeout.clone();
        let (status, body) = post(&base, body).await;
        assert_eq!(status, 200, "{timeout}: {body}");
    }
    // The 429 with a Retry-After of "forever" cooled `limited` down without
    // overflowing the clock, and the server still answers.
    let (status, body) = post(&base, chat("m", true)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn streams_retry_before_the_first_chunk_and_carry_an_error_event_after_it() {
    let u = Upstream::new(
        "u",
        vec![
            Step::Fail(up(503, "not yet", None)),
            Step::Ok,
            Step::CutAfterOne(up(502, "stream cut", None)),
        ],
        Step::Ok,
    );
    let base = serve(
        vec![spec("m", &u)],
        RouterPolicy {
            num_retries: 1,
            ..RouterPolicy::default()
        },
    )
    .await;
    let (status, body) = post(&base, chat("m", true)).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"content\":\"u\""), "{body}");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");

    let (status, body) = post(&base, chat("m", true)).await;
    assert_eq!(status, 200);
    assert!(body.contains("partial"), "{body}");
    assert!(body.contains("stream cut"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
}

#[tokio::test]
async fn a_config_with_a_local_entry_serves_end_to_end() {
    // Config -> Router::from_config -> AppState -> HTTP, with the local
    // engine played by an in-test provider.
    let yaml = "model_list:\n  - model_name: mine\n    litellm_params: {model: local/x}\nrouter_settings: {num_retries: 0}\n";
    let config = GatewayConfig::from_yaml(yaml, &|_| None).unwrap();
    let engine = Upstream::new("engine", vec![], Step::Ok);
    let registry = prometheus::Registry::new();
    let r = Router::from_config(
        &config,
        Some(engine as Arc<dyn Provider>),
        reqwest::Client::new(),
        &registry,
    )
    .unwrap();
    let state = AppState::new(vec![Arc::new(r)], registry).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(frontend::serve(
        listener,
        router(state),
        futures::future::pending(),
    ));
    let (status, body) = post(&format!("http://{addr}"), chat("mine", false)).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "mine");
}
