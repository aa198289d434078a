//! The trait every model backend implements: the local engine now, the
//! OpenAI/Anthropic/... adapters later (TensorZero's one-trait design).
//!
//! The routes validate a request (`validate()`), pick the provider whose
//! [`Provider::models`] lists the request's `model`, call one method and
//! serialize what comes back; they never look inside a provider. A provider
//! owns everything model-specific: templates, tokenization, context-length
//! checks ([`ProviderError::ContextLengthExceeded`]), usage accounting and
//! the `include_usage` final chunk.
//!
//! # Cancellation contract
//!
//! Dropping is cancelling. When a client disconnects, axum drops the
//! handler future (non-streaming) or the response body that owns the
//! [`ChunkStream`] (streaming); a provider must treat that drop as "abort
//! this request now" (the engine aborts it in the scheduler and frees its
//! KV blocks), typically with a guard inside the future or stream whose
//! `Drop` sends the abort. There is no separate cancel method.

pub mod completion_over_chat;
pub mod generation;

use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, DetokenizeRequest, DetokenizeResponse, EmbeddingRequest,
    EmbeddingResponse, ModelCard, TokenizeRequest, TokenizeResponse,
};

/// A stream of response chunks. `'static` and owned so the HTTP response
/// body can hold it: when the client goes away the body, and with it this
/// stream, is dropped, which is how the provider learns to abort.
///
/// An `Err` item is a mid-stream failure: the route sends it as an SSE
/// `error` event and stops polling (and drops) the stream.
pub type ChunkStream<T> = futures::stream::BoxStream<'static, Result<T, ProviderError>>;

/// A model backend.
///
/// Requests arrive validated (ranges checked, `model` filled in and one of
/// [`Provider::models`]). Streams end after the last chunk; the provider
/// emits the `stream_options.include_usage` usage chunk itself (it alone
/// knows the counts), and the route appends `data: [DONE]`.
///
/// Dropping a returned future or stream must abort the request and free
/// its resources (see the module docs).
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Model cards this provider serves (for /v1/models and routing by `model`).
    fn models(&self) -> Vec<ModelCard>;
    /// Whether a request naming `model` is this provider's to answer:
    /// one of [`Provider::models`], or more for a provider that serves
    /// names it cannot list (the router's wildcard entries, `openai/*`).
    fn serves(&self, model: &str) -> bool {
        self.models().iter().any(|card| card.id == model)
    }
    /// Ok while it can serve; Err(Unavailable) once its workers died
    /// (health answers 503). A remote API is reached per request, and
    /// its failures are the router's cooldowns, hence the default.
    fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }
    /// A whole chat completion (`stream` is false or absent).
    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError>;
    /// A streamed chat completion. Errors known before the first chunk
    /// (context too long) are returned here, so they get a real status.
    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError>;
    /// A whole text completion. Most remote APIs have only chat, hence the
    /// default: the prompt as one user message ([`completion_over_chat`]).
    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let chat = completion_over_chat::to_chat(&req)?;
        Ok(completion_over_chat::from_chat(self.chat(chat).await?))
    }
    /// A streamed text completion; errors before the first chunk as in
    /// [`Provider::chat_stream`]. The default streams the chat answer as
    /// text, as [`Provider::completion`] does.
    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        let chat = completion_over_chat::to_chat(&req)?;
        Ok(completion_over_chat::stream_from_chat(
            self.chat_stream(chat).await?,
        ))
    }
    /// Embeddings of the request's inputs. Most chat backends have none,
    /// hence the default: a 400 saying so.
    async fn embeddings(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        Err(unsupported(&req.model, "embeddings"))
    }
    /// Tokenize text or a templated conversation (vLLM's `/tokenize`); only
    /// backends that own a tokenizer (the local engine) can.
    async fn tokenize(&self, req: TokenizeRequest) -> Result<TokenizeResponse, ProviderError> {
        Err(unsupported(req.model.as_deref().unwrap_or(""), "tokenize"))
    }
    /// Turn token ids back into text (vLLM's `/detokenize`).
    async fn detokenize(
        &self,
        req: DetokenizeRequest,
    ) -> Result<DetokenizeResponse, ProviderError> {
        Err(unsupported(
            req.model.as_deref().unwrap_or(""),
            "detokenize",
        ))
    }
}

/// The 400 a provider answers for an endpoint its backend does not have.
pub fn unsupported(model: &str, what: &str) -> ProviderError {
    ProviderError::InvalidRequest {
        message: format!("model `{model}` does not support {what}"),
        param: Some("model".to_owned()),
    }
}
