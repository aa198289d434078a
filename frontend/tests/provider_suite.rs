//! One set of cases run against every adapter through
//! `@copilotkit/aimock` (TensorZero's way of testing providers): each
//! adapter is one [`Adapter`] value saying how to reach the mock and what
//! its fixture answers, and one line in `provider_suite!` at the bottom
//! runs every case on it. What an adapter cannot do is declared in its
//! value ([`Usage::Reported`] vs [`Usage::ChunkOnly`],
//! [`Completions::NotInMock`]) and checked as declared, never skipped.
//!
//! An adapter's fixture follows one of three scripted conversations
//! ([`Script`]): `tests/fixtures/aimock/make_openai_family.py` writes the
//! OpenAI, Azure, Cohere and Ollama files; `gemini.json` and
//! `bedrock.json` share the second; `anthropic.json` (which
//! `ingress_messages.rs` also reads) is the third. Each holds a greeting
//! with known usage, a tool call and its follow-up turn, an answer stopped
//! by `max_tokens`, one given only when the system prompt and the declared
//! tool reach the upstream, a stream cut mid-way, and error statuses.
//! Behaviour only one adapter has stays in its own test file
//! (`provider_bedrock.rs`, `provider_anthropic.rs`,
//! `provider_ollama_images.rs`, `provider_*_wire.rs`) or its unit tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;

use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest, FinishReason};
use frontend::{Provider, ProviderError};
use futures::StreamExt;
use provider_support::*;
use serde_json::json;
use std::sync::Arc;

/// What a family of fixtures answers.
struct Script {
    /// The prompt the greeting answers.
    hello: &'static str,
    /// The prompt and token counts of the greeting.
    usage: (u32, u32),
    /// The call the weather question gets.
    tool_call: ScriptedCall,
    /// The tool message of the follow-up turn, and the answer to it.
    tool_result: &'static str,
    tool_answer: &'static str,
    /// Prompts the upstream fails, with what it says.
    errors: &'static [UpstreamError],
    /// The prompt whose stream the mock cuts after three chunks.
    cut: &'static str,
    /// The prompt answered with a `length` stop.
    length: &'static str,
    /// The text embedded, and one whose embedding fails with a 500.
    embed: (&'static str, Option<&'static str>),
    /// The prompt sent with an image part, and the answer; `None`: the
    /// greeting's.
    image: Option<(&'static str, &'static str)>,
}

/// The tool call a script answers the weather question with.
struct ScriptedCall {
    /// The call id the fixture assigns (and matches the follow-up on);
    /// `None`: the adapter makes one, and the follow-up uses `call_weather_1`.
    id: Option<&'static str>,
    /// Its arguments, as JSON.
    arguments: &'static str,
    /// Its prompt and completion tokens.
    usage: (u32, u32),
}

const PARIS: ScriptedCall = ScriptedCall {
    id: None,
    arguments: r#"{"city":"Paris"}"#,
    usage: (20, 6),
};

/// One scripted upstream failure.
struct UpstreamError {
    prompt: &'static str,
    status: u16,
    message: &'static str,
    retry_after: Option<u64>,
}

const fn fails(prompt: &'static str, status: u16, message: &'static str) -> UpstreamError {
    UpstreamError {
        prompt,
        status,
        message,
        retry_after: None,
    }
}

/// `make_openai_family.py`'s conversation.
const OPENAI_FAMILY: Script = Script {
    hello: "hello",
    usage: (9, 12),
    tool_call: PARIS,
    tool_result: "sunny, 21C",
    tool_answer: "It is sunny in Paris.",
    errors: &[
        fails("trigger 401", 401, "Incorrect API key provided"),
        UpstreamError {
            retry_after: Some(7),
            ..fails("trigger 429", 429, "Rate limit reached for requests")
        },
        fails(
            "trigger 500",
            500,
            "The server had an error while processing your request",
        ),
    ],
    cut: "cut me",
    length: "run out of tokens",
    embed: ("embed me", Some("embed 500")),
    image: None,
};

/// The conversation of `gemini.json` and `bedrock.json`; the error
/// messages are each cloud's own, in its adapter's value.
const CLOUD_FAMILY: Script = Script {
    hello: "hello",
    usage: (9, 8),
    tool_call: PARIS,
    tool_result: "{\"temperature_c\": 22}",
    tool_answer: "It is 22 degrees in Paris.",
    errors: &[],
    cut: "trigger-cut",
    length: "trigger-length",
    embed: ("hello world", None),
    image: None,
};

/// The conversation of `anthropic.json` (which `ingress_messages.rs`
/// shares); the errors, with Anthropic's 529, are in its adapter's value.
const ANTHROPIC_SCRIPT: Script = Script {
    hello: "say hello",
    usage: (12, 8),
    tool_call: ScriptedCall {
        id: Some("toolu_weather_1"),
        arguments: r#"{"location":"Paris","unit":"celsius"}"#,
        usage: (30, 15),
    },
    tool_result: "{\"temp\": 20}",
    tool_answer: "It is 20 degrees in Paris.",
    errors: &[],
    cut: "cut the stream",
    length: "run out of tokens",
    embed: ("x", None),
    image: Some(("describe the image", "A small red square.")),
};

/// How one adapter meets the suite.
struct Adapter {
    /// The aimock fixture file.
    fixture: &'static str,
    /// The conversation it follows.
    script: &'static Script,
    /// The adapter's own error messages where the script leaves them to it.
    errors: &'static [UpstreamError],
    /// The deployment's `litellm_params` pointing at `base` (the mock's
    /// URL, or an address nothing listens on).
    params: fn(base: &str) -> DeploymentParams,
    /// The greeting the fixture answers to "hello".
    greeting: &'static str,
    /// What usage the adapter can report for the greeting.
    usage: Usage,
    /// How a `max_tokens` stop comes back.
    length_stop: LengthStop,
    /// How `/v1/completions` reaches the upstream.
    completions: Completions,
    /// Whether it has embeddings.
    embeddings: Embeddings,
    /// A chat parameter its API lacks (a 400 naming it, unless dropped).
    lacks: Option<&'static str>,
}

/// The greeting's token counts as the adapter reports them.
enum Usage {
    /// The fixture's counts (9 prompt, 12 completion), whole and streamed.
    Reported,
    /// A usage chunk ends the stream, but its counts are the mock's zeros
    /// (aimock 1.43 reports no eval counts for Ollama).
    ChunkOnly,
}

/// Whether an adapter embeds.
enum Embeddings {
    /// Through the script's embedding route.
    Scripted,
    /// Not for this model or endpoint: a 400 naming the model (Vertex AI;
    /// Bedrock outside Titan, whose signed call `provider_bedrock.rs`
    /// tests against a stand-in, since aimock has none).
    Unsupported,
}

/// The finish reason of the script's `max_tokens` stop, as the adapter
/// gets it from the mock.
enum LengthStop {
    /// `length`, as the fixture says.
    Reported,
    /// `stop`: aimock 1.43's Ollama route answers `done_reason: "stop"`
    /// whatever the fixture says (the adapter's mapping of `"length"` is
    /// unit-tested in `providers/ollama.rs`).
    MockSaysStop,
}

/// How an adapter serves text completions.
enum Completions {
    /// As one user message on its chat API (the `Provider` default).
    OverChat,
    /// Natively (`/v1/completions`), a route aimock does not have.
    NotInMock,
}

impl Adapter {
    fn errors(&self) -> impl Iterator<Item = &UpstreamError> {
        self.script.errors.iter().chain(self.errors)
    }

    fn start(&self, extra_args: &[&str]) -> (Aimock, Arc<dyn Provider>) {
        let mock = Aimock::start(&fixture(self.fixture), extra_args);
        let provider = build((self.params)(&mock.url));
        (mock, provider)
    }
}

fn ask(text: &str) -> ChatCompletionRequest {
    chat(json!({"messages": [{"role": "user", "content": text}]}))
}

async fn whole_chat(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let r = p
        .chat(chat(
            json!({"messages": [{"role": "user", "content": a.script.hello}],
                   "temperature": 0.1, "max_tokens": 30, "stop": ["\n\n"]}),
        ))
        .await
        .unwrap();
    assert_eq!(r.model, CLIENT_MODEL);
    assert_eq!(r.object, "chat.completion");
    assert_eq!(r.choices[0].message.content.as_deref(), Some(a.greeting));
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
    if let Usage::Reported = a.usage {
        let (prompt, completion) = a.script.usage;
        assert_eq!(
            (r.usage.prompt_tokens, r.usage.completion_tokens),
            (prompt, completion)
        );
        assert_eq!(r.usage.total_tokens, prompt + completion);
    }
}

async fn streamed_chat(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let chunks: Vec<_> = p
        .chat_stream(chat(
            json!({"messages": [{"role": "user", "content": a.script.hello}],
                   "stream": true, "stream_options": {"include_usage": true}}),
        ))
        .await
        .unwrap()
        .collect()
        .await;
    let first_id = chunks[0].as_ref().unwrap().id.clone();
    assert!(
        chunks.iter().flatten().all(|c| c.id == first_id),
        "every chunk of a stream has its id"
    );
    let finishes = chunks
        .iter()
        .flatten()
        .flat_map(|c| &c.choices)
        .filter(|c| c.finish_reason.is_some())
        .count();
    assert_eq!(finishes, 1, "one choice, one finish reason");
    let s = reassemble(futures::stream::iter(chunks).boxed()).await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert!(s.chunks > 3, "expected several chunks, got {}", s.chunks);
    assert_eq!(s.first_role.as_deref(), Some("assistant"));
    assert_eq!(s.content, a.greeting);
    assert_eq!(s.finish_reason, Some(FinishReason::Stop));
    let usage = s.usage.expect("a usage chunk");
    if let Usage::Reported = a.usage {
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            a.script.usage
        );
    }
}

async fn tool_call_then_tool_result(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let question = json!({"messages": [{"role": "user", "content": "What is the weather in Paris?"}],
                          "tools": weather_tool(), "tool_choice": "auto"});
    let r = p.chat(chat(question.clone())).await.unwrap();
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    let calls = r.choices[0].message.tool_calls.clone().unwrap();
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let expected = &a.script.tool_call;
    // Every wire's arguments (a string, an object) become OpenAI's JSON string.
    let arguments = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    assert_eq!(
        arguments(calls[0]["function"]["arguments"].as_str().unwrap()),
        arguments(expected.arguments)
    );
    if let Some(id) = expected.id {
        assert_eq!(calls[0]["id"], id);
    }
    if let Usage::Reported = a.usage {
        assert_eq!(
            (r.usage.prompt_tokens, r.usage.completion_tokens),
            expected.usage
        );
    }

    let mut streamed = question;
    streamed["stream"] = json!(true);
    let chunks: Vec<_> = p.chat_stream(chat(streamed)).await.unwrap().collect().await;
    // The first delta of a call names it as OpenAI's clients expect.
    let first_delta = chunks
        .iter()
        .flatten()
        .flat_map(|c| &c.choices)
        .find_map(|c| c.delta.tool_calls.clone())
        .expect("a tool-call delta");
    assert_eq!(first_delta[0]["type"], "function");
    assert_eq!(first_delta[0]["index"], 0);
    let s = reassemble(futures::stream::iter(chunks).boxed()).await;
    assert!(s.error.is_none(), "{:?}", s.error);
    assert_eq!(s.finish_reason, Some(FinishReason::ToolCalls));
    assert_eq!(s.tool_calls.len(), 1);
    assert_eq!(s.tool_calls[0].1, "get_weather");
    assert_eq!(arguments(&s.tool_calls[0].2), arguments(expected.arguments));
    assert!(!s.tool_calls[0].0.is_empty(), "a streamed call has an id");

    let id = expected.id.unwrap_or("call_weather_1");
    let follow_up = json!({"messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": expected.arguments}}]},
        {"role": "tool", "tool_call_id": id, "content": a.script.tool_result}],
        "tools": weather_tool()});
    let r = p.chat(chat(follow_up)).await.unwrap();
    assert_eq!(
        r.choices[0].message.content.as_deref(),
        Some(a.script.tool_answer)
    );
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
}

async fn system_prompt_and_tools_reach_the_upstream(a: &Adapter) {
    // The fixture answers only when aimock reads the system prompt and the
    // declared tool back out of the translated request.
    let (_mock, p) = a.start(&[]);
    let r = p
        .chat(chat(json!({
            "messages": [{"role": "system", "content": "You are a pirate."},
                         {"role": "user", "content": "greet me"}],
            "tools": weather_tool(), "temperature": 0.2, "max_tokens": 30, "stop": ["\n\n"]
        })))
        .await
        .unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("Arr, ahoy!"));
}

async fn length_stop(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let r = p.chat(ask(a.script.length)).await.unwrap();
    let expected = match a.length_stop {
        LengthStop::Reported => FinishReason::Length,
        LengthStop::MockSaysStop => FinishReason::Stop,
    };
    assert_eq!(r.choices[0].finish_reason, Some(expected));
}

async fn unsupported_params_and_images(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let mut req = ask(a.script.hello);
    req.logit_bias = Some([("50256".to_owned(), -100.0)].into_iter().collect());
    match a.lacks {
        Some(param) => {
            let e = p.chat(req.clone()).await.unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{e:?}");
            assert!(e.to_string().contains(param), "{e}");
            // With drop_params the parameter is left out and the call goes through.
            let dropping = build(DeploymentParams {
                drop_params: Some(true),
                ..(a.params)(&_mock.url)
            });
            let r = dropping.chat(req).await.unwrap();
            assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        }
        None => {
            let r = p.chat(req).await.unwrap();
            assert_eq!(r.choices[0].message.content.as_deref(), Some(a.greeting));
        }
    }
    let (prompt, answer) = a.script.image.unwrap_or((a.script.hello, a.greeting));
    let with_image = chat(json!({"messages": [{"role": "user", "content": [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}));
    let r = p.chat(with_image).await.unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some(answer));
}

async fn text_completion(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let req: CompletionRequest =
        serde_json::from_value(json!({"model": CLIENT_MODEL, "prompt": a.script.hello,
                                     "max_tokens": 20}))
        .unwrap();
    match a.completions {
        Completions::OverChat => {
            let r = p.completion(req.clone()).await.unwrap();
            assert_eq!(r.object, "text_completion");
            assert_eq!(r.model, CLIENT_MODEL);
            assert_eq!(r.choices[0].text, a.greeting);
            if let Usage::Reported = a.usage {
                let (prompt, completion) = a.script.usage;
                assert_eq!(r.usage.total_tokens, prompt + completion);
            }
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
    let (text, failing) = a.script.embed;
    let req: EmbeddingRequest = serde_json::from_value(
        json!({"model": CLIENT_MODEL, "input": [text], "encoding_format": "base64"}),
    )
    .unwrap();
    match a.embeddings {
        Embeddings::Scripted => {
            let r = p.embeddings(req).await.unwrap();
            assert_eq!(r.model, CLIENT_MODEL);
            assert_eq!(r.data.len(), 1);
            assert_eq!(r.data[0].embedding, vec![0.25, -0.5, 0.75]);
            if let Some(failing) = failing {
                let req: EmbeddingRequest =
                    serde_json::from_value(json!({"model": CLIENT_MODEL, "input": failing}))
                        .unwrap();
                assert_upstream(
                    &p.embeddings(req).await.unwrap_err(),
                    500,
                    "embedding backend down",
                );
            }
        }
        Embeddings::Unsupported => {
            let e = p.embeddings(req).await.unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{e:?}");
            assert!(e.to_string().contains(CLIENT_MODEL), "{e}");
        }
    }
}

async fn error_statuses(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    assert!(a.errors().count() >= 3, "401, 429 and 500 at least");
    for expected in a.errors() {
        let e = p.chat(ask(expected.prompt)).await.unwrap_err();
        assert_eq!(
            e,
            ProviderError::Upstream {
                status: expected.status,
                message: expected.message.to_owned(),
                retry_after: expected.retry_after,
            },
            "{}",
            expected.prompt
        );
        assert_eq!(e.status().as_u16(), expected.status);
        if expected.status == 401 {
            assert_eq!(e.body().error.kind, "authentication_error");
        }
        // A stream fails the same way, before its first chunk.
        let mut streamed = ask(expected.prompt);
        streamed.stream = Some(true);
        match p.chat_stream(streamed).await {
            Err(streamed) => assert_eq!(streamed, e, "{} (stream)", expected.prompt),
            Ok(_) => panic!("{}: expected an error before the stream", expected.prompt),
        }
    }
}

async fn cut_stream(a: &Adapter) {
    let (_mock, p) = a.start(&[]);
    let req =
        chat(json!({"messages": [{"role": "user", "content": a.script.cut}], "stream": true}));
    let items: Vec<_> = p.chat_stream(req).await.unwrap().collect().await;
    let (last, delivered) = items.split_last().unwrap();
    match last {
        Err(e) => assert_eq!(e.status().as_u16(), 502, "{e:?}"),
        Ok(c) => panic!("a cut stream must end with an error, got {c:?}"),
    }
    assert!(delivered.iter().all(Result::is_ok));
    assert!(delivered
        .iter()
        .flatten()
        .all(|c| c.choices.iter().all(|c| c.finish_reason.is_none())));
}

async fn malformed_json(a: &Adapter) {
    let (_mock, p) = a.start(&["--chaos-malformed", "1"]);
    let e = p.chat(ask(a.script.hello)).await.unwrap_err();
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
            #[tokio::test] async fn system_prompt_and_tools_reach_the_upstream() { super::system_prompt_and_tools_reach_the_upstream(&ADAPTER).await }
            #[tokio::test] async fn length_stop() { super::length_stop(&ADAPTER).await }
            #[tokio::test] async fn unsupported_params_and_images() { super::unsupported_params_and_images(&ADAPTER).await }
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

const GEMINI_ERRORS: &[UpstreamError] = &[
    fails(
        "trigger-401",
        401,
        "API key not valid. Please pass a valid API key.",
    ),
    UpstreamError {
        retry_after: Some(7),
        ..fails(
            "trigger-429",
            429,
            "Resource has been exhausted (e.g. check quota).",
        )
    },
    fails("trigger-500", 500, "An internal error has occurred."),
    fails("trigger-400", 400, "Invalid JSON payload received."),
    fails("trigger-403", 403, "Permission denied on resource project."),
    fails(
        "trigger-404",
        404,
        "models/nope is not found for API version v1beta.",
    ),
    fails("trigger-408", 408, "Request timed out."),
    fails("trigger-422", 422, "Unprocessable request."),
    fails(
        "trigger-503",
        503,
        "The model is overloaded. Please try again later.",
    ),
];

const BEDROCK_ERRORS: &[UpstreamError] = &[
    fails(
        "trigger-401",
        401,
        "The security token included in the request is invalid.",
    ),
    UpstreamError {
        retry_after: Some(7),
        ..fails(
            "trigger-429",
            429,
            "Too many requests, please wait before trying again.",
        )
    },
    fails(
        "trigger-500",
        500,
        "The server encountered an internal error.",
    ),
    fails(
        "trigger-400",
        400,
        "Malformed input request, please reformat your input and try again.",
    ),
    fails(
        "trigger-403",
        403,
        "You don't have access to the model with the specified model ID.",
    ),
    fails(
        "trigger-404",
        404,
        "The provided model identifier is invalid.",
    ),
    fails(
        "trigger-408",
        408,
        "Model has timed out in processing the request.",
    ),
    fails("trigger-422", 422, "Unprocessable request."),
    fails(
        "trigger-503",
        503,
        "Bedrock is unable to process your request.",
    ),
];

const ANTHROPIC_ERRORS: &[UpstreamError] = &[
    fails("fail 401", 401, "invalid x-api-key"),
    UpstreamError {
        retry_after: Some(7),
        ..fails(
            "fail 429",
            429,
            "Number of request tokens has exceeded your per-minute rate limit",
        )
    },
    fails("fail 500", 500, "Internal server error"),
    fails("fail 529", 529, "Overloaded"),
];

const CLOUD_GREETING: &str = "Hello! How can I help you today?";

provider_suite! {
    openai => Adapter {
        fixture: "openai.json",
        script: &OPENAI_FAMILY,
        errors: &[],
        params: |base| params("openai/gpt-4o-mini", format!("{base}/v1")),
        greeting: "Hello from OpenAI, streamed in several chunks!",
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::NotInMock,
        embeddings: Embeddings::Scripted,
        lacks: None,
    };
    groq => Adapter {
        fixture: "openai.json",
        script: &OPENAI_FAMILY,
        errors: &[],
        params: |base| params("groq/llama3-8b", format!("{base}/v1")),
        greeting: "Hello from OpenAI, streamed in several chunks!",
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::NotInMock,
        embeddings: Embeddings::Scripted,
        lacks: None,
    };
    hosted_vllm => Adapter {
        fixture: "openai.json",
        script: &OPENAI_FAMILY,
        errors: &[],
        params: |base| params("hosted_vllm/meta/llama", format!("{base}/v1")),
        greeting: "Hello from OpenAI, streamed in several chunks!",
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::NotInMock,
        embeddings: Embeddings::Scripted,
        lacks: None,
    };
    azure => Adapter {
        fixture: "azure.json",
        script: &OPENAI_FAMILY,
        errors: &[],
        params: |base| DeploymentParams {
            api_version: Some("2024-10-21".to_owned()),
            ..params("azure/my-gpt4o-deployment", base.to_owned())
        },
        greeting: "Hello from Azure, streamed in several chunks!",
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::NotInMock,
        embeddings: Embeddings::Scripted,
        lacks: None,
    };
    cohere => Adapter {
        fixture: "cohere.json",
        script: &OPENAI_FAMILY,
        errors: &[],
        params: |base| params("cohere/command-r-plus", base.to_owned()),
        greeting: "Hello from Cohere, streamed in several chunks!",
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::OverChat,
        embeddings: Embeddings::Scripted,
        lacks: Some("logit_bias"),
    };
    ollama => Adapter {
        fixture: "ollama.json",
        script: &OPENAI_FAMILY,
        errors: &[],
        params: |base| params("ollama/llama3.2", base.to_owned()),
        greeting: "Hello from Ollama, streamed in several chunks!",
        usage: Usage::ChunkOnly,
        length_stop: LengthStop::MockSaysStop,
        completions: Completions::OverChat,
        embeddings: Embeddings::Scripted,
        lacks: Some("logit_bias"),
    };
    gemini => Adapter {
        fixture: "gemini.json",
        script: &CLOUD_FAMILY,
        errors: GEMINI_ERRORS,
        params: |base| params("gemini/gemini-2.0-flash", base.to_owned()),
        greeting: CLOUD_GREETING,
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::OverChat,
        embeddings: Embeddings::Scripted,
        lacks: Some("logit_bias"),
    };
    vertex => Adapter {
        fixture: "gemini.json",
        script: &CLOUD_FAMILY,
        errors: GEMINI_ERRORS,
        params: |base| DeploymentParams {
            vertex_project: Some("my-project".to_owned()),
            vertex_location: Some("europe-west4".to_owned()),
            ..params("vertex_ai/gemini-1.5-pro", base.to_owned())
        },
        greeting: CLOUD_GREETING,
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::OverChat,
        embeddings: Embeddings::Unsupported,
        lacks: Some("logit_bias"),
    };
    bedrock => Adapter {
        fixture: "bedrock.json",
        script: &CLOUD_FAMILY,
        errors: BEDROCK_ERRORS,
        params: |base| DeploymentParams {
            aws_access_key_id: Some("AKIDEXAMPLE".to_owned()),
            aws_secret_access_key: Some("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned()),
            aws_region_name: Some("us-west-2".to_owned()),
            api_key: None,
            ..params("bedrock/anthropic.claude-3-haiku-20240307-v1:0", base.to_owned())
        },
        greeting: CLOUD_GREETING,
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::OverChat,
        embeddings: Embeddings::Unsupported,
        lacks: Some("logit_bias"),
    };
    anthropic => Adapter {
        fixture: "anthropic.json",
        script: &ANTHROPIC_SCRIPT,
        errors: ANTHROPIC_ERRORS,
        params: |base| params("anthropic/claude-3-5-sonnet-20241022", base.to_owned()),
        greeting: CLOUD_GREETING,
        usage: Usage::Reported,
        length_stop: LengthStop::Reported,
        completions: Completions::OverChat,
        embeddings: Embeddings::Unsupported,
        lacks: Some("logit_bias"),
    };
}
