//! Shared by the provider integration tests (the suite in
//! `provider_suite.rs` and the per-adapter files): builds an adapter
//! through `providers::build` (as the config loader does) and reassembles
//! a streamed answer so a test can assert on the whole of it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use frontend::config::params::DeploymentParams;
use frontend::openai::{ChatCompletionRequest, FinishReason, Usage};
use frontend::providers;
use frontend::{ChunkStream, Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

/// The name clients use in these tests; every answer must carry it.
pub const CLIENT_MODEL: &str = "client-model";

/// An adapter for `params` under [`CLIENT_MODEL`].
pub fn build(params: DeploymentParams) -> Arc<dyn Provider> {
    let client = providers::http::client().unwrap();
    providers::build(CLIENT_MODEL, &params, &client).unwrap()
}

/// A chat request from JSON (model filled in).
pub fn chat(mut v: Value) -> ChatCompletionRequest {
    v["model"] = json!(CLIENT_MODEL);
    serde_json::from_value(v).unwrap()
}

/// A streamed answer put back together.
#[derive(Debug, Default)]
pub struct Reassembled {
    pub content: String,
    pub first_role: Option<String>,
    pub finish_reason: Option<FinishReason>,
    pub usage: Option<Usage>,
    /// Tool calls by index: (id, name, arguments).
    pub tool_calls: Vec<(String, String, String)>,
    pub chunks: usize,
    pub error: Option<ProviderError>,
}

/// Reads `stream` to its end, checking every chunk carries the client's model.
pub async fn reassemble(
    mut stream: ChunkStream<frontend::openai::ChatCompletionChunk>,
) -> Reassembled {
    let mut out = Reassembled::default();
    while let Some(item) = stream.next().await {
        let chunk = match item {
            Ok(c) => c,
            Err(e) => {
                out.error = Some(e);
                break;
            }
        };
        assert_eq!(chunk.model, CLIENT_MODEL);
        out.chunks += 1;
        if let Some(u) = chunk.usage {
            assert!(chunk.choices.is_empty(), "usage chunk must have no choices");
            out.usage = Some(u);
        }
        for c in chunk.choices {
            if out.first_role.is_none() {
                out.first_role = c.delta.role.clone();
            }
            if let Some(t) = c.delta.content {
                out.content.push_str(&t);
            }
            if let Some(r) = c.finish_reason {
                out.finish_reason = Some(r);
            }
            for call in c
                .delta
                .tool_calls
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = call["index"].as_u64().unwrap() as usize;
                if index == out.tool_calls.len() {
                    out.tool_calls.push(Default::default());
                }
                let slot = &mut out.tool_calls[index];
                if let Some(id) = call["id"].as_str() {
                    slot.0 = id.to_owned();
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    slot.1 = name.to_owned();
                }
                if let Some(a) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    slot.2.push_str(a);
                }
            }
        }
    }
    out
}

/// The tool definition the fixtures match on.
pub fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}])
}

/// Asserts `err` kept the upstream status and message.
pub fn assert_upstream(err: &ProviderError, status: u16, message_part: &str) {
    assert_eq!(err.status().as_u16(), status, "{err:?}");
    assert!(
        err.to_string().contains(message_part),
        "{err:?} should mention {message_part:?}"
    );
    assert!(err.body().error.message.contains(message_part));
}

/// Asserts a stream the mock cuts after three chunks ends with a `502`
/// item instead of a normal end.
pub async fn assert_cut_stream_is_an_error(p: &Arc<dyn Provider>) {
    let req = chat(json!({"messages": [{"role": "user", "content": "cut me"}], "stream": true}));
    let s = reassemble(p.chat_stream(req).await.unwrap()).await;
    let err = s.error.expect("a cut stream must end with an error item");
    assert_eq!(err.status().as_u16(), 502, "{err:?}");
    assert!(s.finish_reason.is_none());
    assert!(!s.content.ends_with("by the mock."), "{}", s.content);
}
