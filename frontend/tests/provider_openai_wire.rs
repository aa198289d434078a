//! What the OpenAI adapter puts on the wire, seen by a small recording
//! upstream (aimock 1.43 does not serve the legacy `/v1/completions`, and
//! it does not show the raw request): the upstream model name, the
//! client's extra fields, Bearer auth only with a key, and text
//! completions passed through, streamed or not.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider_support;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use frontend::config::params::DeploymentParams;
use frontend::openai::{CompletionRequest, FinishReason};
use futures::StreamExt;
use provider_support::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Requests the upstream saw: (Authorization header, body).
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

async fn record(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    seen.lock().unwrap().push((auth, body.clone()));
    let stream = body["stream"] == json!(true);
    let is_chat = body.get("messages").is_some();
    match (is_chat, stream) {
        (true, _) => Json(json!({
            "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": "upstream",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }))
        .into_response(),
        (false, false) => Json(json!({
            "id": "cmpl-up", "object": "text_completion", "created": 1, "model": "upstream",
            "choices": [{"index": 0, "text": " world", "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
        }))
        .into_response(),
        (false, true) => {
            let chunk = |text: &str, finish: Value| {
                json!({"id": "cmpl-up", "object": "text_completion", "created": 1,
                       "model": "upstream",
                       "choices": [{"index": 0, "text": text, "logprobs": null,
                                    "finish_reason": finish}]})
            };
            let body = format!(
                "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
                chunk(" wor", Value::Null),
                chunk("ld", json!("length"))
            );
            ([("content-type", "text/event-stream")], body).into_response()
        }
    }
}

async fn upstream() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(record))
        .route("/v1/completions", post(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn params(url: &str, model: &str, key: Option<&str>) -> DeploymentParams {
    DeploymentParams {
        model: model.to_owned(),
        api_base: Some(url.to_owned()),
        api_key: key.map(str::to_owned),
        ..DeploymentParams::default()
    }
}

#[tokio::test]
async fn chat_body_and_auth_on_the_wire() {
    let (url, seen) = upstream().await;
    let keyed = build(params(&url, "openai/gpt-4o-2024", Some("sk-1")));
    let r = keyed
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hi"}],
                          "parallel_tool_calls": false, "max_tokens": 3}),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    let keyless = build(params(&url, "lm_studio/qwen", None));
    keyless
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hi"}], "top_k": 3}),
        ))
        .await
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0.as_deref(), Some("Bearer sk-1"));
    assert_eq!(seen[0].1["model"], "gpt-4o-2024");
    assert_eq!(seen[0].1["parallel_tool_calls"], false);
    assert_eq!(seen[0].1["max_tokens"], 3);
    assert_eq!(seen[0].1["stream"], false);
    assert_eq!(seen[1].0, None, "no key, no Authorization header");
    assert_eq!(seen[1].1["model"], "qwen");
    assert_eq!(seen[1].1["top_k"], 3, "LM Studio takes vLLM's extras");
}

#[tokio::test]
async fn completions_pass_through() {
    let (url, seen) = upstream().await;
    let p = build(params(&url, "openai/gpt-3.5-turbo-instruct", Some("sk-1")));
    let req: CompletionRequest = serde_json::from_value(
        json!({"model": CLIENT_MODEL, "prompt": "hello", "max_tokens": 2, "echo": false}),
    )
    .unwrap();
    let r = p.completion(req.clone()).await.unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(r.choices[0].text, " world");
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(r.usage.total_tokens, 3);
    let mut streamed = req;
    streamed.stream = Some(true);
    let chunks: Vec<_> = p
        .completion_stream(streamed)
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let text: String = chunks.iter().map(|c| c.choices[0].text.as_str()).collect();
    assert_eq!(text, " world");
    assert!(chunks.iter().all(|c| c.model == CLIENT_MODEL));
    assert_eq!(
        chunks[1].choices[0].finish_reason,
        Some(FinishReason::Length)
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].1["model"], "gpt-3.5-turbo-instruct");
    assert_eq!(seen[0].1["prompt"], "hello");
    assert_eq!(seen[1].1["stream"], true);
}

/// An upstream answering a redirect to another host: the gateway does not
/// follow it (no request, so no key, reaches that host), and the client
/// gets an error carrying the upstream's status and message.
#[tokio::test]
async fn a_redirect_is_not_followed_and_the_key_stays_home() {
    let (elsewhere, seen_elsewhere) = upstream().await;
    let target = format!("{elsewhere}/chat/completions");
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move || async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [("location", target)],
                "moved",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let p = build(params(&url, "openai/gpt-4o", Some("sk-secret")));
    let err = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        ))
        .await
        .unwrap_err();
    // Statuses outside 400-599 are answered as 400 (`ProviderError::status`).
    assert_upstream(&err, 400, "moved");
    assert!(
        matches!(err, frontend::ProviderError::Upstream { status: 307, .. }),
        "{err:?}"
    );
    assert!(
        seen_elsewhere.lock().unwrap().is_empty(),
        "the redirect target got a request"
    );
}
