//! The Cohere v2 adapter against aimock's `/v2/chat` (SSE events) and
//! `/v2/embed`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{CompletionRequest, EmbeddingRequest, FinishReason};
use frontend::ProviderError;
use futures::StreamExt;
use provider_support::*;
use serde_json::json;

fn mock() -> Aimock {
    Aimock::start(&fixture("cohere.json"), &[])
}

fn params(mock: &Aimock) -> DeploymentParams {
    DeploymentParams {
        model: "cohere/command-r-plus".to_owned(),
        api_base: Some(mock.url.clone()),
        ..DeploymentParams::default()
    }
}

#[tokio::test]
async fn chat_and_stream() {
    let mock = mock();
    let p = build(params(&mock));
    let r = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hello"}],
                          "temperature": 0.1, "max_tokens": 30, "seed": 4, "stop": ["\n\n"]}),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Hello from Cohere, streamed in several chunks!")
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (9, 12));
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
    assert!(s.chunks > 3);
    assert_eq!(s.first_role.as_deref(), Some("assistant"));
    assert_eq!(s.content, "Hello from Cohere, streamed in several chunks!");
    assert_eq!(s.finish_reason, Some(FinishReason::Stop));
    let usage = s.usage.expect("usage chunk");
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 12));
}

#[tokio::test]
async fn completion_goes_through_chat() {
    let mock = mock();
    let p = build(params(&mock));
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": CLIENT_MODEL, "prompt": "hello", "max_tokens": 20}))
            .unwrap();
    let r = p.completion(req.clone()).await.unwrap();
    assert_eq!(
        r.choices[0].text,
        "Hello from Cohere, streamed in several chunks!"
    );
    let mut streamed = req;
    streamed.stream = Some(true);
    let text: String = p
        .completion_stream(streamed)
        .await
        .unwrap()
        .map(|c| {
            c.unwrap()
                .choices
                .into_iter()
                .map(|c| c.text)
                .collect::<String>()
        })
        .collect()
        .await;
    assert_eq!(text, "Hello from Cohere, streamed in several chunks!");
}

#[tokio::test]
async fn tool_call_then_tool_result_turn() {
    let mock = mock();
    let p = build(params(&mock));
    let ask = json!({"messages": [{"role": "user", "content": "weather in Paris?"}],
                     "tools": weather_tool(), "tool_choice": "auto"});
    let r = p.chat(chat(ask.clone())).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    // Cohere's string arguments stay OpenAI's JSON string.
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    let mut streamed = ask;
    streamed["stream"] = json!(true);
    let s = reassemble(p.chat_stream(chat(streamed)).await.unwrap()).await;
    assert_eq!(s.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(s.tool_calls.len(), 1);
    assert_eq!(s.tool_calls[0].1, "get_weather");
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
    assert_eq!(r.model, CLIENT_MODEL);
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

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error() {
    let mock = mock();
    let p = build(params(&mock));
    assert_cut_stream_is_an_error(&p).await;
}
