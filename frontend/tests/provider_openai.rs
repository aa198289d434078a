//! The OpenAI adapter (and the OpenAI-compatible family through it)
//! against aimock's OpenAI chat/embeddings surface.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{EmbeddingRequest, FinishReason};
use frontend::ProviderError;
use provider_support::*;
use serde_json::json;

fn params(mock: &Aimock, model: &str) -> DeploymentParams {
    DeploymentParams {
        model: model.to_owned(),
        api_base: Some(format!("{}/v1", mock.url)),
        api_key: Some("sk-test".to_owned()),
        ..DeploymentParams::default()
    }
}

fn mock() -> Aimock {
    Aimock::start(&fixture("openai.json"), &[])
}

#[tokio::test]
async fn chat_non_streaming_with_usage() {
    let mock = mock();
    for model in [
        "openai/gpt-4o-mini",
        "groq/llama3-8b",
        "hosted_vllm/meta/llama",
    ] {
        let p = build(params(&mock, model));
        let r = p
            .chat(chat(
                json!({"messages": [{"role": "user", "content": "hello there"}],
                              "temperature": 0.2, "max_tokens": 50}),
            ))
            .await
            .unwrap();
        assert_eq!(r.model, CLIENT_MODEL, "{model}");
        assert_eq!(
            r.choices[0].message.content.as_deref(),
            Some("Hello from OpenAI, streamed in several chunks!")
        );
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (9, 12));
        assert_eq!(r.usage.total_tokens, 21);
    }
}

#[tokio::test]
async fn chat_streaming_reassembles_with_usage_chunk() {
    let mock = mock();
    let p = build(params(&mock, "openai/gpt-4o-mini"));
    let stream = p
        .chat_stream(chat(
            json!({"messages": [{"role": "user", "content": "hello"}],
                                 "stream": true, "stream_options": {"include_usage": true}}),
        ))
        .await
        .unwrap();
    let r = reassemble(stream).await;
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(r.chunks > 3, "expected several chunks, got {}", r.chunks);
    assert_eq!(r.first_role.as_deref(), Some("assistant"));
    assert_eq!(r.content, "Hello from OpenAI, streamed in several chunks!");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    let usage = r.usage.expect("usage chunk");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 12));
}

#[tokio::test]
async fn tool_call_then_tool_result_turn() {
    let mock = mock();
    let p = build(params(&mock, "gpt-4o"));
    let ask = json!({"messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                     "tools": weather_tool(), "tool_choice": "auto"});
    let r = p.chat(chat(ask.clone())).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");

    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let s = reassemble(p.chat_stream(chat(streamed)).await.unwrap()).await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(s.tool_calls.len(), 1);
    assert_eq!(s.tool_calls[0].1, "get_weather");
    assert_eq!(s.tool_calls[0].2, "{\"city\":\"Paris\"}");
    assert!(!s.tool_calls[0].0.is_empty());

    let follow = json!({"messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_weather_1",
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny, 21C"}],
        "tools": weather_tool()});
    let r = p.chat(chat(follow)).await.unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("It is sunny in Paris.")
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn embeddings() {
    let mock = mock();
    let p = build(params(&mock, "openai/text-embedding-3-small"));
    let req: EmbeddingRequest = serde_json::from_value(json!({
        "model": CLIENT_MODEL, "input": ["embed me"], "encoding_format": "base64"}))
    .unwrap();
    let r = p.embeddings(req).await.unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].embedding, vec![0.25, -0.5, 0.75]);
    let req: EmbeddingRequest =
        serde_json::from_value(json!({"model": CLIENT_MODEL, "input": "embed 500"})).unwrap();
    assert_upstream(
        &p.embeddings(req).await.unwrap_err(),
        500,
        "embedding backend down",
    );
}

#[tokio::test]
async fn error_statuses_keep_status_message_and_retry_after() {
    let mock = mock();
    let p = build(params(&mock, "openai/gpt-4o"));
    let ask = |text: &str| chat(json!({"messages": [{"role": "user", "content": text}]}));
    let e = p.chat(ask("trigger 401")).await.unwrap_err();
    assert_upstream(&e, 401, "Incorrect API key provided");
    assert_eq!(e.body().error.kind, "authentication_error");
    let e = p.chat(ask("trigger 429")).await.unwrap_err();
    assert_upstream(&e, 429, "Rate limit reached");
    assert!(
        matches!(
            e,
            ProviderError::Upstream {
                retry_after: Some(7),
                ..
            }
        ),
        "{e:?}"
    );
    let e = p.chat(ask("trigger 500")).await.unwrap_err();
    assert_upstream(&e, 500, "error while processing your request");
    // Streaming requests fail the same way before their first chunk.
    let mut streamed = ask("trigger 429");
    streamed.stream = Some(true);
    let e = p.chat_stream(streamed).await.err().unwrap();
    assert!(matches!(
        e,
        ProviderError::Upstream {
            status: 429,
            retry_after: Some(7),
            ..
        }
    ));
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let params = DeploymentParams {
        model: "openai/x".to_owned(),
        api_base: Some("http://127.0.0.1:9/v1".to_owned()),
        ..DeploymentParams::default()
    };
    let p = build(params);
    let e = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hello"}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 503, "{e:?}");
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error() {
    let mock = mock();
    let p = build(params(&mock, "openai/gpt-4o"));
    assert_cut_stream_is_an_error(&p).await;
}

#[tokio::test]
async fn malformed_json_is_a_502() {
    let mock = Aimock::start(&fixture("openai.json"), &["--chaos-malformed", "1"]);
    let p = build(params(&mock, "openai/gpt-4o"));
    let e = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hello"}]}),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.status().as_u16(), 502, "{e:?}");
    assert!(e.to_string().contains("malformed"), "{e}");
}
