//! `POST /v1/messages` end to end inside one process: the real router on
//! 127.0.0.1:0 with the Anthropic adapter against aimock as its provider,
//! called with reqwest. So each request goes Anthropic → OpenAI (ingress)
//! → Anthropic (adapter) → aimock and back the same way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::{router, serve, AppState};
use serde_json::{json, Value};

struct Gateway {
    url: String,
    _mock: Aimock,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn gateway() -> Gateway {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let params = DeploymentParams {
        model: "anthropic/claude-3-5-sonnet-20241022".into(),
        api_base: Some(mock.url.clone()),
        api_key: Some("sk-ant-test".into()),
        ..DeploymentParams::default()
    };
    let client = frontend::providers::http::client().unwrap();
    let provider = frontend::providers::build("my-claude", &params, &client).unwrap();
    let state = AppState::new(vec![provider], prometheus::Registry::new()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(listener, router(state), async {
        let _ = rx.await;
    }));
    Gateway {
        url,
        _mock: mock,
        _shutdown: tx,
    }
}

async fn post(gw: &Gateway, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/v1/messages", gw.url))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The `(event name, data)` pairs of an SSE body.
fn sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|frame| {
            let mut name = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = Some(n.trim().to_owned());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            Some((name?, serde_json::from_str(&data).unwrap()))
        })
        .collect()
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "Current weather",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}},
                             "required": ["location"]}}])
}

#[tokio::test]
async fn non_streaming_message() {
    let gw = gateway().await;
    let resp = post(
        &gw,
        json!({"model": "my-claude", "max_tokens": 100, "system": "be nice",
               "messages": [{"role": "user", "content": "please say hello"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], "my-claude");
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Hello! How can I help you today?"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert_eq!(body["usage"]["input_tokens"], 12);
    assert_eq!(body["usage"]["output_tokens"], 8);
}

#[tokio::test]
async fn streaming_message_event_sequence() {
    let gw = gateway().await;
    let resp = post(
        &gw,
        json!({"model": "my-claude", "max_tokens": 100, "stream": true,
               "messages": [{"role": "user", "content": "please say hello"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let events = sse(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names[1], "content_block_start");
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert!(names[2..names.len() - 3]
        .iter()
        .all(|n| *n == "content_block_delta"));
    for (name, data) in &events {
        assert_eq!(data["type"], *name);
    }
    assert_eq!(events[0].1["message"]["model"], "my-claude");
    assert_eq!(
        events[1].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d.pointer("/delta/text").and_then(Value::as_str))
        .collect();
    assert_eq!(text, "Hello! How can I help you today?");
    let delta = &events[names.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 8);
}

#[tokio::test]
async fn tool_use_and_tool_result_round_trip() {
    let gw = gateway().await;
    let resp = post(
        &gw,
        json!({"model": "my-claude", "max_tokens": 100, "tools": weather_tool(),
               "tool_choice": {"type": "auto"},
               "messages": [{"role": "user", "content": "what is the weather in Paris?"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"],
        json!([{"type": "tool_use", "id": "toolu_weather_1", "name": "get_weather",
                "input": {"location": "Paris", "unit": "celsius"}}])
    );

    let resp = post(
        &gw,
        json!({"model": "my-claude", "max_tokens": 100, "tools": weather_tool(),
               "messages": [
                   {"role": "user", "content": "what is the weather in Paris?"},
                   {"role": "assistant", "content": body["content"]},
                   {"role": "user", "content": [{"type": "tool_result",
                       "tool_use_id": "toolu_weather_1", "content": "20 degrees"}]}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "It is 20 degrees in Paris.");
    assert_eq!(body["stop_reason"], "end_turn");
}

#[tokio::test]
async fn streamed_tool_use_uses_input_json_delta() {
    let gw = gateway().await;
    let resp = post(
        &gw,
        json!({"model": "my-claude", "max_tokens": 100, "stream": true, "tools": weather_tool(),
               "messages": [{"role": "user", "content": "what is the weather in Paris?"}]}),
    )
    .await;
    let events = sse(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    let start = &events[1].1;
    assert_eq!(start["type"], "content_block_start");
    assert_eq!(
        start["content_block"],
        json!({"type": "tool_use", "id": "toolu_weather_1", "name": "get_weather", "input": {}})
    );
    let json_text: String = events
        .iter()
        .filter(|(_, d)| d.pointer("/delta/type") == Some(&json!("input_json_delta")))
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    let input: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(input, json!({"location": "Paris", "unit": "celsius"}));
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(
        events[names.len() - 2].1["delta"]["stop_reason"],
        "tool_use"
    );
}

#[tokio::test]
async fn errors_use_anthropic_shape_and_status() {
    let gw = gateway().await;
    let cases = [
        ("fail 401", 401, "authentication_error"),
        ("fail 429", 429, "rate_limit_error"),
        ("fail 500", 500, "api_error"),
        ("fail 529", 529, "overloaded_error"),
    ];
    for (prompt, status, kind) in cases {
        for stream in [false, true] {
            let resp = post(
                &gw,
                json!({"model": "my-claude", "max_tokens": 10, "stream": stream,
                       "messages": [{"role": "user", "content": prompt}]}),
            )
            .await;
            assert_eq!(resp.status().as_u16(), status, "{prompt} stream={stream}");
            if status == 429 {
                assert_eq!(resp.headers()["retry-after"], "7");
            }
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["type"], "error");
            assert_eq!(body["error"]["type"], kind, "{prompt}");
            assert!(body["error"]["message"].as_str().unwrap().len() > 3);
        }
    }
    // Gateway-side errors: unknown model, missing max_tokens, bad JSON.
    let resp = post(
        &gw,
        json!({"model": "nope", "max_tokens": 10,
               "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
    let resp = post(
        &gw,
        json!({"model": "my-claude", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("max_tokens"));
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/messages", gw.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
}

#[tokio::test]
async fn cut_upstream_stream_ends_with_error_event() {
    let gw = gateway().await;
    let resp = post(
        &gw,
        json!({"model": "my-claude", "max_tokens": 100, "stream": true,
               "messages": [{"role": "user", "content": "cut the stream"}]}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = sse(&resp.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "api_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
}
