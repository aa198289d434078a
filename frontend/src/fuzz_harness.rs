//! What the gateway's fuzz targets in `fuzz/` (cargo-fuzz,
//! `scripts/fuzz.sh`) feed arbitrary bytes to, and what CI replays the
//! committed corpus through (the tests below) on the stable toolchain, so a
//! crash the fuzzer once found stays fixed.
//!
//! Each function must return for every input (an `Err` is fine): a panic,
//! an abort, a hang or an unbounded allocation is a bug in the code under
//! test. They are plain public functions (not behind a cargo feature) so
//! clippy and the unit tests always build them.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::config::GatewayConfig;
use crate::control::demand::Demand;
use crate::error::ProviderError;
use crate::guardrails::{GuardrailSpec, Guardrails};
use crate::messages_api::types::MessagesRequest;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, CompletionChunk, CompletionRequest,
    DetokenizeRequest, EmbeddingRequest, TokenizeRequest,
};
use crate::provider::completion_over_chat;
use crate::provider::ChunkStream;
use crate::providers::stream_pump::{pump, ChunkBuilder};
use crate::providers::{anthropic, bedrock, cohere, gemini, http, ollama};
use crate::router::Router;

/// Idle limit for the fuzzed streams: every byte is there at once, so it
/// never fires; it only has to be a valid duration.
const IDLE: Duration = Duration::from_secs(60);

/// The client body of one OpenAI-format route, as the route handles it:
/// `data[0]` picks chat, completions, embeddings, tokenize or detokenize;
/// the rest is the JSON body. A body that parses is validated; a valid one
/// goes through what admission and the adapters do with it (the size
/// estimate, the translations into every provider's wire format).
pub fn openai_request(data: &[u8]) {
    let [route, body @ ..] = data else {
        return;
    };
    match route % 5 {
        0 => {
            let Ok(req) = serde_json::from_slice::<ChatCompletionRequest>(body) else {
                return;
            };
            if req.validate().is_ok() {
                chat_downstream(&req);
            }
        }
        1 => {
            let Ok(req) = serde_json::from_slice::<CompletionRequest>(body) else {
                return;
            };
            if req.validate().is_ok() {
                let demand = Demand::completion(&req);
                let _ = demand.output_tokens(u64::from(req.max_new_tokens()));
                let _ = (req.n(), req.is_stream(), req.include_usage());
                let _ = req.prompt.len();
            }
        }
        2 => {
            let Ok(req) = serde_json::from_slice::<EmbeddingRequest>(body) else {
                return;
            };
            if req.validate().is_ok() {
                let _ = Demand::embeddings(&req).output_tokens(0);
                let _ = (req.input.texts(), req.wants_base64());
            }
        }
        3 => {
            if let Ok(req) = serde_json::from_slice::<TokenizeRequest>(body) {
                let _ = req.input();
            }
        }
        _ => {
            let _ = serde_json::from_slice::<DetokenizeRequest>(body);
        }
    }
}

/// The body of Anthropic's `/v1/messages`: parsed, validated, translated
/// to the OpenAI request every provider takes, which is validated again
/// and translated onwards as [`openai_request`] does.
pub fn anthropic_request(data: &[u8]) {
    let Ok(req) = serde_json::from_slice::<MessagesRequest>(data) else {
        return;
    };
    if req.validate().is_err() {
        return;
    }
    let _ = req.is_stream();
    let Ok(chat) = req.to_openai() else {
        return;
    };
    if chat.validate().is_ok() {
        chat_downstream(&chat);
    }
}

/// What happens to a valid chat request after its route: the admission
/// estimate, then each adapter's own wire body.
fn chat_downstream(req: &ChatCompletionRequest) {
    let demand = Demand::chat(req);
    let _ = demand.output_tokens(u64::from(req.max_new_tokens().unwrap_or(16)));
    let _ = (req.n(), req.is_stream(), req.include_usage());
    let _ = anthropic::request::to_anthropic(req, "claude-x", true);
    let _ = gemini::request::generate_content_body(req);
    let _ = bedrock::request::converse_body(req);
}

/// An upstream's streamed answer as an adapter reads it: `data[0]` picks
/// the provider's decoder (OpenAI chat, OpenAI completions, Anthropic,
/// Gemini, Bedrock's event-stream frames, Cohere, Ollama's NDJSON, or a
/// non-streamed error response with its `Retry-After`), `data[1]` how the
/// body is cut into network reads, the rest is the body. Chat chunks then
/// go through the Anthropic event encoder of `/v1/messages` and the chat
/// to completion translation, as the routes would send them on.
pub fn provider_stream(data: &[u8]) {
    let [provider, cut, body @ ..] = data else {
        return;
    };
    let resp = || upstream_response(body, usize::from(*cut % 64) + 1);
    with_runtime(|rt| {
        rt.block_on(async {
            match provider % 8 {
                0 => {
                    let s = crate::providers::openai::chunks::<ChatCompletionChunk>(
                        http::sse_events(resp(), IDLE),
                        "m".to_owned(),
                    );
                    drain_chat(s).await;
                }
                1 => {
                    let s = crate::providers::openai::chunks::<CompletionChunk>(
                        http::sse_events(resp(), IDLE),
                        "m".to_owned(),
                    );
                    drain(s).await;
                }
                2 => {
                    let t = anthropic::stream::AnthropicStream::new(builder(*cut));
                    drain_chat(pump(http::sse_events(resp(), IDLE), t)).await;
                }
                3 => {
                    let t = gemini::stream::GeminiStream::new(builder(*cut));
                    drain_chat(pump(http::sse_events(resp(), IDLE), t)).await;
                }
                4 => {
                    let t = bedrock::stream::BedrockStream::new(builder(*cut));
                    drain_chat(pump(bedrock::stream::frames(resp(), IDLE), t)).await;
                }
                5 => {
                    let t = cohere::cohere_stream("m", *cut % 2 == 0);
                    drain_chat(pump(http::sse_events(resp(), IDLE), t)).await;
                }
                6 => {
                    let t = ollama::ollama_stream("m", *cut % 2 == 0);
                    drain_chat(pump(http::ndjson_values(resp(), IDLE), t)).await;
                }
                _ => {
                    // The first line is the Retry-After header's value.
                    let (retry_after, rest) = match body.iter().position(|b| *b == b'\n') {
                        Some(i) => (body.get(..i).unwrap_or_default(), body.get(i + 1..)),
                        None => (body, None),
                    };
                    let mut head = axum::http::Response::new(reqwest::Body::from(
                        rest.unwrap_or_default().to_vec(),
                    ));
                    *head.status_mut() = axum::http::StatusCode::from_u16(400 + u16::from(*cut))
                        .unwrap_or(axum::http::StatusCode::TOO_MANY_REQUESTS);
                    if let Ok(v) = axum::http::HeaderValue::from_bytes(retry_after) {
                        head.headers_mut().insert("retry-after", v);
                    }
                    let _ = http::error_from_response(
                        reqwest::Response::from(head),
                        http::error_from_parts,
                    )
                    .await;
                }
            }
        });
    });
}

/// A `config.yaml` as `engine serve --config` loads it: parsed and checked,
/// then every deployment built (providers, router, fallbacks) and the
/// guardrails compiled. Environment references resolve to nothing.
pub fn litellm_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = GatewayConfig::from_yaml(text, &|_| None) else {
        return;
    };
    let _ = config.model_names();
    let _ = crate::control::access::ModelCatalog::from_config(&config);
    let specs: Result<Vec<GuardrailSpec>, _> = config
        .guardrails
        .iter()
        .map(|v| serde_json::from_value(v.clone()))
        .collect();
    if let Ok(specs) = specs {
        let _ = Guardrails::from_specs(&specs);
    }
    with_runtime(|rt| {
        let _guard = rt.enter();
        let registry = prometheus::Registry::new();
        let _ = Router::from_config(&config, None, client().clone(), &registry);
    });
}

/// Runs `f` on this thread's current-thread runtime, built once (building
/// one per input would dominate the fuzzer's time).
fn with_runtime(f: impl FnOnce(&tokio::runtime::Runtime)) {
    thread_local! {
        static RT: Option<tokio::runtime::Runtime> = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
    }
    RT.with(|rt| {
        if let Some(rt) = rt {
            f(rt);
        }
    });
}

/// The shared HTTP client the providers are built with (never used to
/// send anything here).
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(reqwest::Client::new)
}

fn builder(flags: u8) -> ChunkBuilder {
    ChunkBuilder::new("m", flags % 2 == 0)
}

/// A 200 response whose body arrives in reads of `piece` bytes.
fn upstream_response(body: &[u8], piece: usize) -> reqwest::Response {
    let reads: Vec<Result<Bytes, std::io::Error>> = body
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(reads));
    reqwest::Response::from(axum::http::Response::new(body))
}

async fn drain<T>(mut s: ChunkStream<T>) {
    while let Some(item) = s.next().await {
        if item.is_err() {
            break;
        }
    }
}

/// Reads a chat chunk stream through `/v1/messages`' event encoder, and
/// (separately) through the chat-to-completion translation.
async fn drain_chat(s: ChunkStream<ChatCompletionChunk>) {
    let (a, b) = tee(s).await;
    let mut events = crate::messages_api::events::events(a, "m");
    while let Some(ev) = events.next().await {
        let _ = serde_json::to_string(&ev);
    }
    drain(completion_over_chat::stream_from_chat(b)).await;
}

/// Two chunk streams with the items of `s` (it is finite here).
async fn tee(
    mut s: ChunkStream<ChatCompletionChunk>,
) -> (
    ChunkStream<ChatCompletionChunk>,
    ChunkStream<ChatCompletionChunk>,
) {
    let mut items = Vec::new();
    while let Some(item) = s.next().await {
        let end = item.is_err();
        items.push(item);
        if end {
            break;
        }
    }
    let copy: Vec<Result<ChatCompletionChunk, ProviderError>> = items
        .iter()
        .map(|i| match i {
            Ok(c) => Ok(c.clone()),
            Err(e) => Err(ProviderError::Upstream {
                status: 502,
                message: e.to_string(),
                retry_after: None,
            }),
        })
        .collect();
    let one: BoxStream<'static, _> = futures::stream::iter(items).boxed();
    let two: BoxStream<'static, _> = futures::stream::iter(copy).boxed();
    (one, two)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::{Path, PathBuf};

    /// Every file of `fuzz/corpus/<target>/`: seeds, the minimized corpus
    /// of past runs and every crash input found so far.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    fn replay(target: &str, harness: fn(&[u8])) {
        for (path, bytes) in corpus(target) {
            eprintln!("{}", path.display());
            harness(&bytes);
        }
    }

    #[test]
    fn openai_request_corpus_replays_without_panics() {
        replay("openai_request", openai_request);
    }

    #[test]
    fn anthropic_request_corpus_replays_without_panics() {
        replay("anthropic_request", anthropic_request);
    }

    #[test]
    fn provider_stream_corpus_replays_without_panics() {
        replay("provider_stream", provider_stream);
    }

    #[test]
    fn litellm_config_corpus_replays_without_panics() {
        replay("litellm_config", litellm_config);
    }
}
