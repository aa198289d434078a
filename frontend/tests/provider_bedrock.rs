//! The Bedrock Converse adapter (SigV4-signed) beyond the shared provider
//! suite (`provider_suite.rs`, which runs chat, streams, tools, errors and
//! completions on it through aimock): what aimock cannot express (an
//! exception frame mid-stream, a body cut mid-frame, Titan embeddings
//! through InvokeModel) is served by a one-route axum server here, and a
//! deployment without credentials is refused when it is built.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use frontend::config::params::DeploymentParams;
use frontend::openai::{ChatCompletionChunk, ChatCompletionRequest};
use frontend::providers::{build, http};
use frontend::{Provider, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;

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

async fn collect(
    p: &Arc<dyn Provider>,
    req: ChatCompletionRequest,
) -> Vec<Result<ChatCompletionChunk, ProviderError>> {
    p.chat_stream(req).await.unwrap().collect().await
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
