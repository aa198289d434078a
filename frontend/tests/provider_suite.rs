//! One set of cases run against every adapter through
//! `@copilotkit/aimock` (TensorZero's way of testing providers): each
//! adapter is one [`Adapter`] value saying how to reach the mock and what
//! its fixture answers, and one line in `provider_suite!` at the bottom
//! runs every case on it. What an adapter cannot do is declared in its
//! value ([`Usage::Reported`] vs [`Usage::ChunkOnly`],
//! [`Completions::NotInMock`]) and checked as declared, never skipped.
//!
//! The adapters here share one scripted conversation
//! (`tests/fixtures/aimock/make_openai_family.py`): a greeting with known
//! usage, a tool call and its follow-up turn, a stream cut after three
//! chunks, embeddings, and 401/429 (Retry-After 7)/500 answers.
//! Behaviour only one adapter has stays in its own test file
//! (`provider_ollama_images.rs`, `provider_*_wire.rs`) or its unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{CompletionRequest, EmbeddingRequest, FinishReason};
use frontend::{Provider, ProviderError};
use futures::StreamExt;
use provider_support::*;
use serde_json::json;
use std::sync::Arc;

/// How one adapter meets the suite.
struct Adapter {
    /// The aimock fixture file.
    fixture: &'static str,
    /// The deployment's `litellm_params` pointing at `base` (the mock's
    /// URL, or an address nothing listens on).
    params: fn(base: &str) -> DeploymentParams,
    /// The greeting the fixture answers to "hello".
    greeting: &'static str,
    /// What usage the adapter can report for the greeting.
    usage: Usage,
    /// How `/v1/completions` reaches the upstream.
    completions: Completions,
}

/// The greeting's token counts as the adapter reports them.
enum Usage {
    /// The fixture's counts (9 prompt, 12 completion), whole and streamed.
    Reported,
    /// A usage chunk ends the stream, but its counts are the mock's zeros
    /// (aimock 1.43 reports no eval counts for Ollama).
    ChunkOnly,
}

/// How an adapter serves text completions.
enum Completions {
    /// As one user message on its chat API (the `Provider` default).
    OverChat,
    /// Natively (`/v1/completions`), a route aimock does not have.
    NotInMock,
}

impl Adapter {
    fn start(&self, extra_args: &[&str]) -> (Aimock, Arc<dyn Provider>) {
        let mock = Aimock::start(&fixture(self.fixture), extra_args);
        let provider = build((self.params)(&mock.url));
        (mock, provider)
    }
}

fn ask(text: &str) -> frontend::openai::ChatCompletionRequest {
    chat(json!({"messages": [{"role": "user", "content": text}]}))
}

async fn whole_chat(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let r = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": "hello"}],
                   "temperature": 0.1, "max_tokens": 30, "seed": 4, "stop": ["\n\n"]}),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.choices[0].message.content.as_deref(), Some(a.greeting));
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    if let Usage::Reported = a.usage {
        assert_eq!((r.usage.prompt_tokens, r.usage.completion_tokens), (9, 12));
        assert_eq!(r.usage.total_tokens, 21);
    }
}

async fn streamed_chat(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
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
    assert!(s.chunks > 3, "expected several chunks, got {}", s.chunks);
    assert_eq!(s.first_role.as_deref(), Some("assistant"));
    assert_eq!(s.content, a.greeting);
    assert_eq!(s.finish_reason, Some(FinishReason::Stop));
    let usage = s.usage.expect("a usage chunk");
    if let Usage::Reported = a.usage {
        assert_eq!((usage.prompt_tokens, usage.completion_tokens), (9, 12));
        assert_eq!(usage.total_tokens, 21);
    }
}

async fn tool_call_then_tool_result(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let question = json!({"messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                          "tools": weather_tool(), "tool_choice": "auto"});
    let r = p.chat(chat(question.clone())).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    // Every wire's arguments (a string, an object) become OpenAI's JSON string.
    assert_eq!(calls[0]["function"]["arguments"], "{\"city\":\"Paris\"}");

    let mut streamed = question;
    streamed["stream"] = json!(true);
    let s = reassemble(p.chat_stream(chat(streamed)).await.unwrap()).await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(s.tool_calls.len(), 1);
    assert_eq!(s.tool_calls[0].1, "get_weather");
    assert_eq!(s.tool_calls[0].2, "{\"city\":\"Paris\"}");
    assert!(!s.tool_calls[0].0.is_empty(), "a streamed call has an id");

    let follow_up = json!({"messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_weather_1",
            "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny, 21C"}],
        "tools": weather_tool()});
    let r = p.chat(chat(follow_up)).await.unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some("It is sunny in Paris.")
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
}

async fn text_completion(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": CLIENT_MODEL, "prompt": "hello", "max_tokens": 20}))
            .unwrap();
    match a.completions {
        Completions::OverChat => {
            let r = p.completion(req.clone()).await.unwrap();
            assert_eq!(r.choices[0].text, a.greeting);
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
            assert_eq!(text, a.greeting);
            // What a chat answer cannot honour is a 400, never ignored.
            let echo: CompletionRequest = serde_json::from_value(
                json!({"model": CLIENT_MODEL, "prompt": "hello", "echo": true}),
            )
            .unwrap();
            let e = p.completion(echo).await.unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{e:?}");
        }
        // aimock has no `/v1/completions` route (its 404): the request went
        // to the native endpoint, not over chat (which would greet).
        Completions::NotInMock => {
            assert_upstream(&p.completion(req).await.unwrap_err(), 404, "Not found");
        }
    }
}

async fn embeddings(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let req: EmbeddingRequest =
        serde_json::from_value(json!({"model": CLIENT_MODEL, "input": ["embed me"],
                                     "encoding_format": "base64"}))
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

async fn error_statuses(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
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
    assert_upstream(
        &p.chat(ask("trigger 500")).await.unwrap_err(),
        500,
        "server had an error",
    );
    // A stream fails the same way, before its first chunk.
    let mut streamed = ask("trigger 429");
    streamed.stream = Some(true);
    let e = p.chat_stream(streamed).await.err().unwrap();
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
}

async fn cut_stream(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    assert_cut_stream_is_an_error(&p).await;
}

async fn malformed_json(a: &Adapter) {
    let (_mock, p) = a.start(&["--chaos-malformed", "1"]);
    let e = p.chat(ask("hello")).await.unwrap_err();
    assert_eq!(e.status().as_u16(), 502, "{e:?}");
    assert!(e.to_string().contains("malformed"), "{e}");
}

async fn refused_connection(a: &Adapter) {
    let p = build((a.params)("http://127.0.0.1:9"));
    let e = p.chat(ask("hello")).await.unwrap_err();
    assert_eq!(e.status().as_u16(), 503, "{e:?}");
}

/// Runs every case on each adapter, one test per case and adapter.
macro_rules! provider_suite {
    ($($name:ident => $adapter:expr;)+) => {$(
        mod $name {
            use super::*;
            const ADAPTER: Adapter = $adapter;
            #[tokio::test] async fn whole_chat() { super::whole_chat(&ADAPTER).await }
            #[tokio::test] async fn streamed_chat() { super::streamed_chat(&ADAPTER).await }
            #[tokio::test] async fn tool_call_then_tool_result() { super::tool_call_then_tool_result(&ADAPTER).await }
            #[tokio::test] async fn text_completion() { super::text_completion(&ADAPTER).await }
            #[tokio::test] async fn embeddings() { super::embeddings(&ADAPTER).await }
            #[tokio::test] async fn error_statuses() { super::error_statuses(&ADAPTER).await }
            #[tokio::test] async fn cut_stream() { super::cut_stream(&ADAPTER).await }
            #[tokio::test] async fn malformed_json() { super::malformed_json(&ADAPTER).await }
            #[tokio::test] async fn refused_connection() { super::refused_connection(&ADAPTER).await }
        }
    )+};
}

fn params(model: &str, api_base: String) -> DeploymentParams {
    DeploymentParams {
        model: model.to_owned(),
        api_base: Some(api_base),
        api_key: Some("sk-test".to_owned()),
        ..DeploymentParams::default()
    }
}

provider_suite! {
    openai => Adapter {
        fixture: "openai.json",
        params: |base| params("openai/gpt-4o-mini", format!("{base}/v1")),
        greeting: "Hello from OpenAI, streamed in several chunks!",
        usage: Usage::Reported,
        completions: Completions::NotInMock,
    };
    groq => Adapter {
        fixture: "openai.json",
        params: |base| params("groq/llama3-8b", format!("{base}/v1")),
        greeting: "Hello from OpenAI, streamed in several chunks!",
        usage: Usage::Reported,
        completions: Completions::NotInMock,
    };
    hosted_vllm => Adapter {
        fixture: "openai.json",
        params: |base| params("hosted_vllm/meta/llama", format!("{base}/v1")),
        greeting: "Hello from OpenAI, streamed in several chunks!",
        usage: Usage::Reported,
        completions: Completions::NotInMock,
    };
    azure => Adapter {
        fixture: "azure.json",
        params: |base| DeploymentParams {
            api_version: Some("2024-10-21".to_owned()),
            ..params("azure/my-gpt4o-deployment", base.to_owned())
        },
        greeting: "Hello from Azure, streamed in several chunks!",
        usage: Usage::Reported,
        completions: Completions::NotInMock,
    };
    cohere => Adapter {
        fixture: "cohere.json",
        params: |base| params("cohere/command-r-plus", base.to_owned()),
        greeting: "Hello from Cohere, streamed in several chunks!",
        usage: Usage::Reported,
        completions: Completions::OverChat,
    };
    ollama => Adapter {
        fixture: "ollama.json",
        params: |base| params("ollama/llama3.2", base.to_owned()),
        greeting: "Hello from Ollama, streamed in several chunks!",
        usage: Usage::ChunkOnly,
        completions: Completions::OverChat,
    };
}
