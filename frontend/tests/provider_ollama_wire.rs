//! What the Ollama adapter puts on the wire, seen by a small recording
//! upstream: `options`, images as base64 (a data: URL's payload; fetched
//! http images are `provider_ollama_images.rs`), tool calls with object
//! arguments and tool results naming the tool.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod provider_support;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use frontend::config::params::DeploymentParams;
use provider_support::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<Value>>>;

async fn record(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    seen.lock().unwrap().push(body);
    Json(
        json!({"model": "llava", "created_at": "2024-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": "a cat"},
                "done": true, "done_reason": "stop",
                "prompt_eval_count": 20, "eval_count": 2}),
    )
}

#[tokio::test]
async fn images_options_and_tool_turns_on_the_wire() {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/api/chat", post(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let p = build(DeploymentParams {
        model: "ollama/llava".to_owned(),
        api_base: Some(base),
        ..DeploymentParams::default()
    });
    let r = p
        .chat(chat(json!({
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what are these?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "zoom", "arguments": "{\"x\":2}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "zoomed"}
            ],
            "max_completion_tokens": 8, "temperature": 0.0, "repetition_penalty": 1.1
        })))
        .await
        .unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(r.choices[0].message.content.as_deref(), Some("a cat"));
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (20, 2));

    let body = seen.lock().unwrap()[0].clone();
    assert_eq!(body["model"], "llava");
    assert_eq!(body["stream"], false);
    assert_eq!(body["options"]["num_predict"], 8);
    assert_eq!(body["options"]["temperature"], 0.0);
    assert!(body["options"]["repeat_penalty"].as_f64().unwrap() > 1.0);
    assert_eq!(body["messages"][0]["images"], json!(["QUJD"]));
    assert_eq!(body["messages"][0]["content"], "what are these?");
    assert_eq!(
        body["messages"][1]["tool_calls"][0]["function"]["arguments"],
        json!({"x": 2})
    );
    assert_eq!(body["messages"][2]["tool_name"], "zoom");
}
