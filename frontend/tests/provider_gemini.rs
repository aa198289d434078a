//! The Gemini adapter, in its Generative Language API and Vertex AI forms,
//! against `@copilotkit/aimock` speaking Gemini's wire format
//! (`tests/fixtures/aimock/gemini.json`): plain and streamed chat, tool
//! calls and the follow-up turn with the tool result, usage, finish
//! reasons, text completions, embeddings, upstream error statuses and a
//! stream cut mid-way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{
    ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, EmbeddingRequest, FinishReason,
};
use frontend::providers::{build, http};
use frontend::{Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

fn mock() -> Aimock {
    Aimock::start(&fixture("gemini.json"), &[])
}

fn gemini(mock: &Aimock) -> Arc<dyn Provider> {
    provider(
        json!({"model": "gemini/gemini-2.0-flash", "api_base": mock.url, "api_key": "test-key"}),
    )
}

fn vertex(mock: &Aimock) -> Arc<dyn Provider> {
    provider(
        json!({"model": "vertex_ai/gemini-1.5-pro", "api_base": mock.url,
                    "api_key": "ya29.token", "vertex_project": "my-project",
                    "vertex_location": "europe-west4"}),
    )
}

fn provider(params: Value) -> Arc<dyn Provider> {
    let params: DeploymentParams = serde_json::from_value(params).unwrap();
    build("my-model", &params, &http::client().unwrap()).unwrap()
}

fn chat(v: Value) -> ChatCompletionRequest {
    let mut v = v;
    v["model"] = json!("my-model");
    serde_json::from_value(v).unwrap()
}

fn user(text: &str) -> ChatCompletionRequest {
    chat(json!({"messages": [{"role": "user", "content": text}]}))
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}])
}

async fn collect(
    p: &Arc<dyn Provider>,
    req: ChatCompletionRequest,
) -> Vec<Result<ChatCompletionChunk, ProviderError>> {
    p.chat_stream(req).await.unwrap().collect().await
}

async fn plain_chat(p: Arc<dyn Provider>) {
    let r = p.chat(user("hello")).await.unwrap();
    assert_eq!(r.model, "my-model");
    assert_eq!(r.object, "chat.completion");
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Hello! How can I help you today?")
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        (
            r.usage.prompt_tokens,
            r.usage.completion_tokens,
            r.usage.total_tokens
        ),
        (9, 8, 17)
    );
}

async fn streamed_chat(p: Arc<dyn Provider>) {
    let mut req = user("hello");
    req.stream = Some(true);
    req.stream_options = serde_json::from_value(json!({"include_usage": true})).unwrap();
    let chunks: Vec<ChatCompletionChunk> = collect(&p, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(chunks.len() > 3, "several content chunks: {chunks:?}");
    assert_eq!(
        chunks[0].choices[0].delta.role.as_deref(),
        Some("assistant")
    );
    assert!(chunks
        .iter()
        .all(|c| c.model == "my-model" && c.id == chunks[0].id));
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.content.clone())
        .collect();
    assert_eq!(text, "Hello! How can I help you today?");
    let n = chunks.len();
    assert_eq!(
        chunks[n - 2].choices[0].finish_reason,
        Some(FinishReason::Stop)
    );
    assert!(chunks[n - 1].choices.is_empty());
    let usage = chunks[n - 1].usage.clone().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 8));
}

async fn tool_call_round_trip(p: Arc<dyn Provider>) {
    let first = chat(json!({
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": weather_tools(), "tool_choice": "auto"
    }));
    let r = p.chat(first).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let id = calls[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(r.usage.prompt_tokens, 20);

    let follow_up = chat(json!({
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": calls},
            {"role": "tool", "tool_call_id": id, "content": "{\"temperature_c\": 22}"}
        ],
        "tools": weather_tools()
    }));
    let r = p.chat(follow_up).await.unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("It is 22 degrees in Paris.")
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
}

async fn streamed_tool_call(p: Arc<dyn Provider>) {
    let mut req = chat(json!({
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": weather_tools()
    }));
    req.stream = Some(true);
    let chunks: Vec<ChatCompletionChunk> = collect(&p, req)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let deltas: Vec<Value> = chunks
        .iter()
        .flat_map(|c| &c.choices)
        .filter_map(|c| c.delta.tool_calls.clone())
        .flat_map(|v| v.as_array().cloned().unwrap())
        .collect();
    // Reassembled as an OpenAI client does: the first delta of an index
    // carries id and name, later ones append to the arguments.
    assert!(deltas.iter().all(|d| d["index"] == 0), "{deltas:?}");
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert_eq!(deltas[0]["type"], "function");
    assert!(!deltas[0]["id"].as_str().unwrap().is_empty());
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    let args: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(args, json!({"city": "Paris"}));
    let last = chunks.last().unwrap();
    assert_eq!(last.choices[0].finish_reason, Some(FinishReason::ToolCalls));
}

async fn error_statuses(p: Arc<dyn Provider>) {
    for (trigger, status, message, retry) in [
        (
            "trigger-401",
            401,
            "API key not valid. Please pass a valid API key.",
            None,
        ),
        (
            "trigger-429",
            429,
            "Resource has been exhausted (e.g. check quota).",
            Some(7),
        ),
        ("trigger-500", 500, "An internal error has occurred.", None),
        ("trigger-400", 400, "Invalid JSON payload received.", None),
        (
            "trigger-403",
            403,
            "Permission denied on resource project.",
            None,
        ),
        (
            "trigger-404",
            404,
            "models/nope is not found for API version v1beta.",
            None,
        ),
        ("trigger-408", 408, "Request timed out.", None),
        ("trigger-422", 422, "Unprocessable request.", None),
        (
            "trigger-503",
            503,
            "The model is overloaded. Please try again later.",
            None,
        ),
    ] {
        let err = p.chat(user(trigger)).await.unwrap_err();
        assert_eq!(
            err,
            ProviderError::Upstream {
                status,
                message: message.to_owned(),
                retry_after: retry
            },
            "{trigger}"
        );
        assert_eq!(err.status().as_u16(), status);
        // A streaming request fails the same way, before any chunk.
        let mut req = user(trigger);
        req.stream = Some(true);
        match p.chat_stream(req).await {
            Err(e) => assert_eq!(e.status().as_u16(), status),
            Ok(_) => panic!("{trigger}: expected an error before the stream"),
        }
    }
}

async fn length_and_cut_stream(p: Arc<dyn Provider>) {
    let r = p.chat(user("trigger-length")).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Length));

    let mut req = user("trigger-cut");
    req.stream = Some(true);
    let items = collect(&p, req).await;
    let last = items.last().unwrap();
    match last {
        Err(e) => assert_eq!(e.status().as_u16(), 502, "{e}"),
        Ok(c) => panic!("a cut stream must end with an error, got {c:?}"),
    }
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
}

#[tokio::test]
async fn gemini_chat() {
    let m = mock();
    plain_chat(gemini(&m)).await;
    streamed_chat(gemini(&m)).await;
}

#[tokio::test]
async fn gemini_tool_calls() {
    let m = mock();
    tool_call_round_trip(gemini(&m)).await;
    streamed_tool_call(gemini(&m)).await;
}

#[tokio::test]
async fn gemini_errors_length_and_cut_stream() {
    let m = mock();
    error_statuses(gemini(&m)).await;
    length_and_cut_stream(gemini(&m)).await;
}

#[tokio::test]
async fn gemini_completions() {
    let m = mock();
    let p = gemini(&m);
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": "my-model", "prompt": "hello", "max_tokens": 50}))
            .unwrap();
    let r = p.completion(req.clone()).await.unwrap();
    assert_eq!(r.object, "text_completion");
    assert_eq!(r.choices[0].text, "Hello! How can I help you today?");
    assert_eq!(r.usage.total_tokens, 17);
    let mut req = req;
    req.stream = Some(true);
    let chunks: Vec<_> = p.completion_stream(req).await.unwrap().collect().await;
    let text: String = chunks
        .into_iter()
        .map(Result::unwrap)
        .flat_map(|c| c.choices)
        .map(|c| c.text)
        .collect();
    assert_eq!(text, "Hello! How can I help you today?");
}

#[tokio::test]
async fn gemini_embeddings() {
    let m = mock();
    let p =
        provider(json!({"model": "gemini/text-embedding-004", "api_base": m.url, "api_key": "k"}));
    let req: EmbeddingRequest =
        serde_json::from_value(json!({"model": "my-model", "input": "hello world"})).unwrap();
    let r = p.embeddings(req).await.unwrap();
    assert_eq!(r.model, "my-model");
    assert_eq!(r.data.len(), 1);
    assert_eq!(r.data[0].embedding, vec![0.25, -0.5, 0.75]);
}

#[tokio::test]
async fn vertex_chat_tools_and_errors() {
    let m = mock();
    plain_chat(vertex(&m)).await;
    streamed_chat(vertex(&m)).await;
    tool_call_round_trip(vertex(&m)).await;
    error_statuses(vertex(&m)).await;
}

#[test]
fn vertex_without_project_is_a_400_at_build_time() {
    let params: DeploymentParams =
        serde_json::from_value(json!({"model": "vertex_ai/gemini-1.5-pro"})).unwrap();
    let err = build("v", &params, &http::client().unwrap()).err().unwrap();
    assert_eq!(err.status().as_u16(), 400);
    assert!(err.to_string().contains("vertex_project"));
}

#[tokio::test]
async fn gemini_unsupported_params_and_images() {
    let m = mock();
    let mut req = user("hello");
    req.logit_bias = Some([("50256".to_owned(), -100.0)].into_iter().collect());
    let err = gemini(&m).chat(req.clone()).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
    assert!(err.to_string().contains("logit_bias"), "{err}");
    // With drop_params the parameter is left out and the call goes through.
    let dropping = provider(
        json!({"model": "gemini/gemini-2.0-flash", "api_base": m.url, "api_key": "k", "drop_params": true}),
    );
    let r = dropping.chat(req).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));

    let with_image = chat(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}));
    let r = gemini(&m).chat(with_image).await.unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Hello! How can I help you today?")
    );
}

#[tokio::test]
async fn gemini_system_prompt_and_tool_declarations_reach_the_upstream() {
    // The fixture answers only when aimock reads the system prompt and the
    // declared tool back out of our translated request.
    let m = mock();
    let req = chat(json!({
        "messages": [{"role": "system", "content": "You are a pirate."},
                     {"role": "user", "content": "greet me"}],
        "tools": weather_tools(), "temperature": 0.2, "max_tokens": 30, "stop": ["\n\n"]
    }));
    let r = gemini(&m).chat(req).await.unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("Arr, ahoy!"));
}
