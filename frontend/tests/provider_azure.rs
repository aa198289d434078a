//! The Azure OpenAI adapter against aimock's Azure deployment routes
//! (`/openai/deployments/{deployment}/...`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{EmbeddingRequest, FinishReason};
use frontend::ProviderError;
use provider_support::*;
use serde_json::json;

fn mock() -> Aimock {
    Aimock::start(&fixture("azure.json"), &[])
}

fn params(mock: &Aimock) -> DeploymentParams {
    DeploymentParams {
        model: "azure/my-gpt4o-deployment".to_owned(),
        api_base: Some(mock.url.clone()),
        api_key: Some("azure-key".to_owned()),
        api_version: Some("2024-10-21".to_owned()),
        ..DeploymentParams::default()
    }
}

#[tokio::test]
async fn chat_streaming_and_usage() {
    let mock = mock();
    let p = build(params(&mock));
    let r = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hello"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Hello from Azure, streamed in several chunks!")
    );
    assert_eq!(r.usage.total_tokens, 21);
    let s = reassemble(
        p.chat_stream(chat(
            json!({"messages": [{"role": "user", "content": "hello"}],
            "stream": true, "stream_options": {"include_usage": true}}),
        ))
        .await
        .unwrap(),
    )
    .await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.content, "Hello from Azure, streamed in several chunks!");
    assert_eq!(s.finish_reason, Some(FinishReason::Stop));
    assert_eq!(s.usage.unwrap().total_tokens, 21);
}

#[tokio::test]
async fn tool_call_then_tool_result_turn() {
    let mock = mock();
    let p = build(params(&mock));
    let r = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "weather in Paris?"}],
                          "tools": weather_tool()}),
        ))
        .await
        .unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let s = reassemble(
        p.chat_stream(chat(
            json!({"messages": [{"role": "user", "content": "weather in Paris?"}],
            "tools": weather_tool(), "stream": true}),
        ))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(s.tool_calls[0].2, "{\"city\":\"Paris\"}");
    let r = p
        .chat(chat(json!({"messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "tool_calls": [{"id": "call_weather_1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny, 21C"}],
            "tools": weather_tool()})))
        .await
        .unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("It is sunny in Paris.")
    );
}

#[tokio::test]
async fn embeddings() {
    let mock = mock();
    let p = build(params(&mock));
    let req: EmbeddingRequest =
        serde_json::from_value(json!({"model": CLIENT_MODEL, "input": "embed me"})).unwrap();
    let r = p.embeddings(req).await.unwrap();
    assert_eq!(r.data[0].embedding, vec![0.25, -0.5, 0.75]);
    assert_eq!(r.model, CLIENT_MODEL);
}

#[tokio::test]
async fn error_statuses() {
    let mock = mock();
    let p = build(params(&mock));
    let ask = |text: &str| chat(json!({"messages": [{"role": "user", "content": text}]}));
    assert_upstream(
        &p.chat(ask("trigger 401")).await.unwrap_err(),
        401,
        "Incorrect API key",
    );
    let e = p.chat(ask("trigger 429")).await.unwrap_err();
    assert!(
        matches!(
            e,
            ProviderError::Upstream {
                status: 429,
                retry_after: Some(7),
                ..
            }
        ),
        "{e:?}"
    );
    assert_upstream(
        &p.chat(ask("trigger 500")).await.unwrap_err(),
        500,
        "server had an error",
    );
}

#[test]
fn api_version_is_required() {
    let params = DeploymentParams {
        model: "azure/d".to_owned(),
        api_base: Some("https://x.openai.azure.com".to_owned()),
        ..DeploymentParams::default()
    };
    let client = frontend::providers::http::client().unwrap();
    let err = frontend::providers::build("m", &params, &client)
        .err()
        .unwrap();
    assert_eq!(err.status().as_u16(), 400);
    assert!(err.to_string().contains("api_version"));
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error() {
    let mock = mock();
    let p = build(params(&mock));
    assert_cut_stream_is_an_error(&p).await;
}
