//! The Anthropic adapter against aimock's Anthropic Messages endpoint:
//! text, streaming, tool call and tool result, usage, an image part,
//! stop-reason mapping, upstream error statuses (401, 429 with
//! Retry-After, 500, 529), and a stream cut mid-way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{
    ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, FinishReason,
};
use frontend::providers::anthropic::AnthropicProvider;
use frontend::providers::resolve::resolve;
use frontend::{Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};

fn provider(mock: &Aimock) -> AnthropicProvider {
    let params = DeploymentParams {
        model: "anthropic/claude-3-5-sonnet-20241022".into(),
        api_base: Some(mock.url.clone()),
        api_key: Some("sk-ant-test".into()),
        ..DeploymentParams::default()
    };
    AnthropicProvider::new(
        "my-claude",
        resolve(&params.model).unwrap(),
        &params,
        frontend::providers::http::client().unwrap(),
    )
    .unwrap()
}

fn chat(v: Value) -> ChatCompletionRequest {
    let mut v = v;
    v["model"] = json!("my-claude");
    let req: ChatCompletionRequest = serde_json::from_value(v).unwrap();
    req.validate().unwrap();
    req
}

fn user(text: &str) -> ChatCompletionRequest {
    chat(
        json!({"messages": [{"role": "system", "content": "be nice"},
                             {"role": "user", "content": text}]}),
    )
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Current weather", "parameters": {"type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string"}},
        "required": ["location"]}}}])
}

async fn collect(
    p: &AnthropicProvider,
    req: ChatCompletionRequest,
) -> Vec<Result<ChatCompletionChunk, ProviderError>> {
    p.chat_stream(req).await.unwrap().collect().await
}

#[tokio::test]
async fn text_answer_with_usage() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let resp = p.chat(user("please say hello")).await.unwrap();
    assert_eq!(resp.model, "my-claude");
    assert_eq!(
        resp.choices[0].message.content.as_deref(),
        Some("Hello! How can I help you today?")
    );
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        (
            resp.usage.prompt_tokens,
            resp.usage.completion_tokens,
            resp.usage.total_tokens
        ),
        (12, 8, 20)
    );
}

#[tokio::test]
async fn stream_reassembles_with_finish_and_usage_chunk() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let mut req = user("please say hello");
    req.stream = Some(true);
    req.stream_options = Some(serde_json::from_value(json!({"include_usage": true})).unwrap());
    let chunks: Vec<ChatCompletionChunk> = collect(&p, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(chunks.len() > 3, "{chunks:?}");
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert!(chunks.iter().all(|c| c.model == "my-claude"));
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.as_deref())
        .collect();
    assert_eq!(text, "Hello! How can I help you today?");
    let finish: Vec<_> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.finish_reason)
        .collect();
    assert_eq!(finish, vec![FinishReason::Stop]);
    let last = chunks.last().unwrap();
    assert!(last.choices.is_empty());
    // aimock puts input_tokens in message_start and output_tokens in message_delta.
    let usage = last.usage.as_ref().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 8));
}

#[tokio::test]
async fn tool_call_then_tool_result() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let first = chat(json!({
        "messages": [{"role": "user", "content": "what is the weather in Paris?"}],
        "tools": weather_tools(), "tool_choice": "auto"
    }));
    let resp = p.chat(first).await.unwrap();
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = resp.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["id"], "toolu_weather_1");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Paris", "unit": "celsius"}));
    assert_eq!(resp.usage.prompt_tokens, 30);

    let follow_up = chat(json!({
        "messages": [
            {"role": "user", "content": "what is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "toolu_weather_1", "content": "{\"temp\": 20}"}
        ],
        "tools": weather_tools()
    }));
    let resp = p.chat(follow_up).await.unwrap();
    assert_eq!(
        resp.choices[0].message.content.as_deref(),
        Some("It is 20 degrees in Paris.")
    );
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Stop));
}

#[tokio::test]
async fn streamed_tool_call_deltas() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let req = chat(json!({
        "messages": [{"role": "user", "content": "what is the weather in Paris?"}],
        "tools": weather_tools(), "stream": true
    }));
    let chunks: Vec<ChatCompletionChunk> = collect(&p, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.tool_calls.as_ref())
        .flat_map(|v| v.as_array().unwrap())
        .collect();
    assert_eq!(deltas[0]["id"], "toolu_weather_1");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas.iter().all(|d| d["index"] == 0));
    let args: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"location": "Paris", "unit": "celsius"}));
    let finish = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .find_map(|c| c.finish_reason);
    assert_eq!(finish, Some(FinishReason::ToolCalls));
}

#[tokio::test]
async fn image_parts_are_accepted() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let req = chat(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "describe the image"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/square.png"}}
    ]}]}));
    let resp = p.chat(req).await.unwrap();
    assert_eq!(
        resp.choices[0].message.content.as_deref(),
        Some("A small red square.")
    );
}

#[tokio::test]
async fn max_tokens_stop_is_length() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let resp = p.chat(user("run out of tokens")).await.unwrap();
    assert_eq!(resp.choices[0].finish_reason, Some(FinishReason::Length));
}

#[tokio::test]
async fn text_completion_goes_through_messages() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": "my-claude", "prompt": "say hello"})).unwrap();
    let resp = p.completion(req.clone()).await.unwrap();
    assert_eq!(resp.choices[0].text, "Hello! How can I help you today?");
    assert_eq!(resp.model, "my-claude");
    let mut req = req;
    req.stream = Some(true);
    let text: String = p
        .completion_stream(req)
        .await
        .unwrap()
        .map(|c| {
            c.unwrap()
                .choices
                .into_iter()
                .map(|c| c.text)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .await
        .concat();
    assert_eq!(text, "Hello! How can I help you today?");
}

#[tokio::test]
async fn embeddings_are_unsupported() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let req: EmbeddingRequest =
        serde_json::from_value(json!({"model": "my-claude", "input": "x"})).unwrap();
    assert_eq!(p.embeddings(req).await.unwrap_err().status(), 400);
}

#[tokio::test]
async fn upstream_error_statuses_are_kept() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let cases = [
        ("fail 401", 401, "invalid x-api-key", None),
        (
            "fail 429",
            429,
            "Number of request tokens has exceeded your per-minute rate limit",
            Some(7),
        ),
        ("fail 500", 500, "Internal server error", None),
        ("fail 529", 529, "Overloaded", None),
    ];
    for (prompt, status, message, retry_after) in cases {
        let expected = ProviderError::Upstream {
            status,
            message: message.into(),
            retry_after,
        };
        assert_eq!(
            p.chat(user(prompt)).await.unwrap_err(),
            expected,
            "{prompt}"
        );
        let mut req = user(prompt);
        req.stream = Some(true);
        match p.chat_stream(req).await {
            Err(e) => assert_eq!(e, expected, "{prompt} (stream)"),
            Ok(_) => panic!("{prompt}: a stream came back"),
        }
        assert_eq!(expected.status().as_u16(), status);
    }
}

#[tokio::test]
async fn cut_stream_ends_with_an_error_item() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let mut req = user("cut the stream");
    req.stream = Some(true);
    let items = collect(&p, req).await;
    assert!(items.len() >= 2, "{items:?}");
    match items.last().unwrap() {
        Err(ProviderError::Upstream { status: 502, .. }) => {}
        other => panic!("expected a 502 item, got {other:?}"),
    }
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
}

#[tokio::test]
async fn unsupported_params_are_named_unless_dropped() {
    let mock = Aimock::start(&fixture("anthropic.json"), &[]);
    let p = provider(&mock);
    let mut req = user("please say hello");
    req.seed = Some(1);
    match p.chat(req.clone()).await {
        Err(ProviderError::InvalidRequest { param, .. }) => {
            assert_eq!(param.as_deref(), Some("seed"))
        }
        other => panic!("{other:?}"),
    }
    let params = DeploymentParams {
        model: "anthropic/claude-3-5-sonnet-20241022".into(),
        api_base: Some(mock.url.clone()),
        drop_params: Some(true),
        ..DeploymentParams::default()
    };
    let dropping = AnthropicProvider::new(
        "my-claude",
        resolve(&params.model).unwrap(),
        &params,
        reqwest::Client::new(),
    )
    .unwrap();
    assert!(dropping.chat(req).await.is_ok());
}
