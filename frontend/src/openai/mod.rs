//! Serde types for the OpenAI wire format, as vLLM's OpenAI-compatible
//! server accepts it (its extra sampling fields included).
//!
//! These are plain data shared by the HTTP routes and every [`crate::Provider`]:
//! the local engine reads a [`ChatCompletionRequest`] and answers a
//! [`ChatCompletionResponse`] or a stream of [`ChatCompletionChunk`]s. Each
//! request type has a `validate` method that checks ranges the way OpenAI
//! and vLLM do and names the offending `param`; the routes call it before a
//! provider sees the request, so providers may assume valid ranges. Context
//! length is not checked here (only the provider knows token counts and
//! `max_model_len`).
//!
//! Integer fields a client could send negative (`max_tokens`, `n`, ...) are
//! `i64` on the wire so that `-1` is a clean 400 naming the field rather
//! than a serde error; accessors such as
//! [`ChatCompletionRequest::max_new_tokens`] give the validated value.
//! Unknown request fields are kept in `extra` and otherwise ignored, as vLLM
//! does.

mod chat;
mod common;
mod completion;
mod embeddings;
mod models;
mod tokenize;
mod validate;

pub use chat::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
    ChatCompletionResponse, ChatDelta, ChatLogprobToken, ChatLogprobs, ChatMessage,
    ChatResponseMessage, ContentPart, MessageContent, TopLogprob,
};
pub use common::{
    new_call_id, new_id, unix_now, FinishReason, PromptTokensDetails, StopSequences, StreamOptions,
    Usage,
};
pub use completion::{
    CompletionChoice, CompletionChunk, CompletionLogprobs, CompletionRequest, CompletionResponse,
    Prompt, COMPLETION_DEFAULT_MAX_TOKENS,
};
pub use embeddings::{
    Embedding, EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage,
};
pub use models::{ModelCard, ModelList};
pub use tokenize::{
    DetokenizeRequest, DetokenizeResponse, TokenizeInput, TokenizeRequest, TokenizeResponse,
};
pub use validate::{MAX_SEQUENCES_PER_REQUEST, MAX_STOP_BYTES};
