//! The Bedrock Converse adapter (SigV4-signed) against
//! `@copilotkit/aimock` speaking Converse and ConverseStream (AWS
//! event-stream frames), `tests/fixtures/aimock/bedrock.json`: plain and
//! streamed chat, tool calls and the follow-up turn with the tool result,
//! usage, finish reasons, text completions, upstream error statuses and a
//! stream cut mid-way. What aimock cannot express (an exception frame
//! mid-stream, a body cut mid-frame, Titan embeddings through InvokeModel)
//! is served by a one-route axum server in the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{
    ChatCompletionChunk, ChatCompletionRequest, CompletionRequest, FinishReason,
};
use frontend::providers::{build, http};
use frontend::{Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

fn mock() -> Aimock {
    Aimock::start(&fixture("bedrock.json"), &[])
}

fn bedrock(mock: &Aimock) -> Arc<dyn Provider> {
    provider(
        json!({"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "api_base": mock.url,
                    "aws_access_key_id": "AKIDEXAMPLE",
                    "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    "aws_region_name": "us-west-2"}),
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
            "The security token included in the request is invalid.",
            None,
        ),
        (
            "trigger-429",
            429,
            "Too many requests, please wait before trying again.",
            Some(7),
        ),
        (
            "trigger-500",
            500,
            "The server encountered an internal error.",
            None,
        ),
        (
            "trigger-400",
            400,
            "Malformed input request, please reformat your input and try again.",
            None,
        ),
        (
            "trigger-403",
            403,
            "You don't have access to the model with the specified model ID.",
            None,
        ),
        (
            "trigger-404",
            404,
            "The provided model identifier is invalid.",
            None,
        ),
        (
            "trigger-408",
            408,
            "Model has timed out in processing the request.",
            None,
        ),
        ("trigger-422", 422, "Unprocessable request.", None),
        (
            "trigger-503",
            503,
            "Bedrock is unable to process your request.",
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
async fn bedrock_chat() {
    let m = mock();
    plain_chat(bedrock(&m)).await;
    streamed_chat(bedrock(&m)).await;
}

#[tokio::test]
async fn bedrock_tool_calls() {
    let m = mock();
    tool_call_round_trip(bedrock(&m)).await;
    streamed_tool_call(bedrock(&m)).await;
}

#[tokio::test]
async fn bedrock_errors_length_and_cut_stream() {
    let m = mock();
    error_statuses(bedrock(&m)).await;
    length_and_cut_stream(bedrock(&m)).await;
}

#[tokio::test]
async fn bedrock_completions() {
    let m = mock();
    let p = bedrock(&m);
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": "my-model", "prompt": "hello", "max_tokens": 50}))
            .unwrap();
    let r = p.completion(req.clone()).await.unwrap();
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

#[test]
fn bedrock_without_credentials_is_a_400_at_build_time() {
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_some() {
        return; // the environment supplies credentials on this machine
    }
    let params: DeploymentParams =
        serde_json::from_value(json!({"model": "bedrock/amazon.nova-micro-v1:0"})).unwrap();
    let err = build("b", &params, &http::client().unwrap()).err().unwrap();
    assert_eq!(err.status().as_u16(), 400);
    assert!(err.to_string().contains("aws_access_key_id"));
}

#[tokio::test]
async fn bedrock_unsupported_params_and_images() {
    let m = mock();
    let mut req = user("hello");
    req.logit_bias = Some([("50256".to_owned(), -100.0)].into_iter().collect());
    let err = bedrock(&m).chat(req.clone()).await.unwrap_err();
    assert_eq!(err.status().as_u16(), 400);
    assert!(err.to_string().contains("logit_bias"), "{err}");
    // With drop_params the parameter is left out and the call goes through.
    let dropping = provider(
        json!({"model": "bedrock/amazon.nova-micro-v1:0", "api_base": m.url, "aws_access_key_id": "AK", "aws_secret_access_key": "SK", "drop_params": true}),
    );
    let r = dropping.chat(req).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));

    let with_image = chat(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "hello"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}));
    let r = bedrock(&m).chat(with_image).await.unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("Hello! How can I help you today?")
    );
}

#[tokio::test]
async fn bedrock_system_prompt_and_tool_declarations_reach_the_upstream() {
    // The fixture answers only when aimock reads the system prompt and the
    // declared tool back out of our translated request.
    let m = mock();
    let req = chat(json!({
        "messages": [{"role": "system", "content": "You are a pirate."},
                     {"role": "user", "content": "greet me"}],
        "tools": weather_tools(), "temperature": 0.2, "max_tokens": 30, "stop": ["\n\n"]
    }));
    let r = bedrock(&m).chat(req).await.unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("Arr, ahoy!"));
}

/// AWS event-stream frames, encoded by the AWS SDK's own encoder.
fn frames(events: &[(&str, &str, Value)]) -> Vec<u8> {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let mut wire = Vec::new();
    for (message_type, kind, payload) in events {
        let type_header = if *message_type == "exception" {
            ":exception-type"
        } else {
            ":event-type"
        };
        let m = Message::new(payload.to_string().into_bytes())
            .add_header(Header::new(
                ":message-type",
                HeaderValue::String(message_type.to_string().into()),
            ))
            .add_header(Header::new(
                type_header,
                HeaderValue::String(kind.to_string().into()),
            ));
        write_message_to(&m, &mut wire).unwrap();
    }
    wire
}

/// A one-route server answering ConverseStream with `body` (aimock has no
/// fixture for an exception frame mid-stream or a body cut mid-frame).
async fn converse_stream_server(body: Vec<u8>) -> String {
    let app = axum::Router::new().route(
        "/model/{id}/converse-stream",
        axum::routing::post(move || {
            let body = body.clone();
            async move {
                (
                    [("content-type", "application/vnd.amazon.eventstream")],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn bedrock_exception_mid_stream_and_cut_frame_are_errors() {
    let start = [
        ("event", "messageStart", json!({"role": "assistant"})),
        (
            "event",
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": "Hel"}}),
        ),
    ];
    let mut with_exception = start.to_vec();
    with_exception.push((
        "exception",
        "throttlingException",
        json!({"message": "Too many tokens, please wait before trying again."}),
    ));
    let url = converse_stream_server(frames(&with_exception)).await;
    let p = provider(
        json!({"model": "bedrock/amazon.nova-micro-v1:0", "api_base": url,
                            "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}),
    );
    let mut req = user("hello");
    req.stream = Some(true);
    let items = collect(&p, req.clone()).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(
        items[1].as_ref().unwrap().choices[0]
            .delta
            .content
            .as_deref(),
        Some("Hel")
    );
    assert_eq!(
        items[2].as_ref().unwrap_err(),
        &ProviderError::Upstream {
            status: 429,
            message: "Too many tokens, please wait before trying again.".into(),
            retry_after: None
        }
    );

    // The body ends in the middle of a frame: a 502 item, never a normal end.
    let mut cut = frames(&start);
    let last = frames(&[("event", "messageStop", json!({"stopReason": "end_turn"}))]);
    cut.extend_from_slice(&last[..last.len() / 2]);
    let url = converse_stream_server(cut).await;
    let p = provider(
        json!({"model": "bedrock/amazon.nova-micro-v1:0", "api_base": url,
                            "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}),
    );
    let items = collect(&p, req).await;
    assert_eq!(
        items
            .last()
            .unwrap()
            .as_ref()
            .unwrap_err()
            .status()
            .as_u16(),
        502
    );
    assert!(items[..items.len() - 1].iter().all(Result::is_ok));
}

#[tokio::test]
async fn bedrock_titan_embeddings_signed() {
    // A stand-in for InvokeModel on a Titan embedding model (aimock serves
    // none): it refuses unsigned calls and embeds each text as
    // [length, 1.0], counting one token per word.
    let app = axum::Router::new().route(
        "/model/{id}/invoke",
        axum::routing::post(
            |axum::extract::Path(id): axum::extract::Path<String>,
             headers: axum::http::HeaderMap,
             axum::Json(body): axum::Json<Value>| async move {
                let signed = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 Credential=AK/"));
                if !signed || id != "amazon.titan-embed-text-v2:0" {
                    return (
                        axum::http::StatusCode::FORBIDDEN,
                        axum::Json(json!({"message": format!("bad request for {id}")})),
                    );
                }
                let text = body["inputText"].as_str().unwrap_or_default();
                (
                    axum::http::StatusCode::OK,
                    axum::Json(json!({
                        "embedding": [text.len() as f32, 1.0],
                        "inputTextTokenCount": text.split_whitespace().count()
                    })),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let p = provider(json!({"model": "bedrock/amazon.titan-embed-text-v2:0",
                            "api_base": format!("http://{addr}"),
                            "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}));
    let req: frontend::openai::EmbeddingRequest =
        serde_json::from_value(json!({"model": "my-model", "input": ["hello world", "a b c"]}))
            .unwrap();
    let r = p.embeddings(req).await.unwrap();
    assert_eq!(r.model, "my-model");
    assert_eq!(r.data[0].embedding, vec![11.0, 1.0]);
    assert_eq!(r.data[1].embedding, vec![5.0, 1.0]);
    assert_eq!(r.data[1].index, 1);
    assert_eq!(r.usage.prompt_tokens, 5);

    // A chat model has no embeddings: a clear 400.
    let chat_model = provider(json!({"model": "bedrock/amazon.nova-micro-v1:0",
        "api_base": format!("http://{addr}"), "aws_access_key_id": "AK", "aws_secret_access_key": "SK"}));
    let req: frontend::openai::EmbeddingRequest =
        serde_json::from_value(json!({"model": "my-model", "input": "x"})).unwrap();
    assert_eq!(
        chat_model
            .embeddings(req)
            .await
            .unwrap_err()
            .status()
            .as_u16(),
        400
    );
}
