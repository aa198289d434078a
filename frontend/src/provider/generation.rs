//! Chat and text completions as one kind of request: both name a model,
//! stream or not, carry LiteLLM's extra fields and come back with usage.
//! What differs (the provider method, the body's prompt) is behind this
//! trait, so the route (`routes::openai::generate`) and the router
//! (`router::Router`) each have one path for both.

use super::{ChunkStream, Provider};
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, StreamOptions, Usage,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// A request that generates text: [`ChatCompletionRequest`] or
/// [`CompletionRequest`].
#[async_trait::async_trait]
pub trait Generation: Clone + Serialize + Send + Sync + 'static {
    /// The whole answer.
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// One chunk of a streamed answer.
    type Chunk: UsageChunk + Serialize;
    /// The name of this kind of request where the control plane keeps
    /// them apart (the response cache's namespace).
    const KIND: &'static str;

    /// Checks ranges and shapes: a 400 naming the field.
    fn validate(&self) -> Result<(), ProviderError>;
    /// The model asked for.
    fn model(&self) -> &str;
    /// The model, which routing rewrites.
    fn model_mut(&mut self) -> &mut String;
    /// Fields the gateway reads and removes before a provider sees them
    /// (`timeout`, `cache`, `guardrails`, `metadata`).
    fn extra_mut(&mut self) -> &mut Map<String, Value>;
    /// Whether the client asked for a stream.
    fn is_stream(&self) -> bool;
    /// The stream options, where the gateway asks for the usage chunk.
    fn stream_options_mut(&mut self) -> &mut Option<StreamOptions>;
    /// Whether the client asked for the usage chunk.
    fn include_usage(&self) -> bool;
    /// The prompt's size in bytes of JSON, the router's token estimate
    /// before any upstream has counted.
    fn prompt_bytes(&self) -> usize;
    /// The whole answer's usage.
    fn usage(response: &Self::Response) -> &Usage;

    /// Asks `provider` for the whole answer.
    async fn answer(self, provider: &dyn Provider) -> Result<Self::Response, ProviderError>;
    /// Asks `provider` for a stream.
    async fn stream(
        self,
        provider: &dyn Provider,
    ) -> Result<ChunkStream<Self::Chunk>, ProviderError>;
}

/// A streamed chunk that may carry the stream's usage (the
/// `include_usage` chunk), which the router counts, the control plane
/// charges and the access log records.
pub trait UsageChunk: Send + 'static {
    /// The usage, on the `include_usage` chunk.
    fn usage(&self) -> Option<&Usage>;
    /// Whether this is the usage-only chunk (no choices), which is dropped
    /// when the client did not ask for it.
    fn is_usage_only(&self) -> bool;
}

impl UsageChunk for ChatCompletionChunk {
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
    fn is_usage_only(&self) -> bool {
        self.usage.is_some() && self.choices.is_empty()
    }
}

impl UsageChunk for CompletionChunk {
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
    fn is_usage_only(&self) -> bool {
        self.usage.is_some() && self.choices.is_empty()
    }
}

fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |b| b.len())
}

#[async_trait::async_trait]
impl Generation for ChatCompletionRequest {
    type Response = ChatCompletionResponse;
    type Chunk = ChatCompletionChunk;
    const KIND: &'static str = "chat";

    fn validate(&self) -> Result<(), ProviderError> {
        ChatCompletionRequest::validate(self)
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn model_mut(&mut self) -> &mut String {
        &mut self.model
    }
    fn extra_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
    fn is_stream(&self) -> bool {
        ChatCompletionRequest::is_stream(self)
    }
    fn stream_options_mut(&mut self) -> &mut Option<StreamOptions> {
        &mut self.stream_options
    }
    fn include_usage(&self) -> bool {
        ChatCompletionRequest::include_usage(self)
    }
    fn prompt_bytes(&self) -> usize {
        json_len(&self.messages)
    }
    fn usage(response: &Self::Response) -> &Usage {
        &response.usage
    }
    async fn answer(self, provider: &dyn Provider) -> Result<Self::Response, ProviderError> {
        provider.chat(self).await
    }
    async fn stream(
        self,
        provider: &dyn Provider,
    ) -> Result<ChunkStream<Self::Chunk>, ProviderError> {
        provider.chat_stream(self).await
    }
}

#[async_trait::async_trait]
impl Generation for CompletionRequest {
    type Response = CompletionResponse;
    type Chunk = CompletionChunk;
    const KIND: &'static str = "completion";

    fn validate(&self) -> Result<(), ProviderError> {
        CompletionRequest::validate(self)
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn model_mut(&mut self) -> &mut String {
        &mut self.model
    }
    fn extra_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.extra
    }
    fn is_stream(&self) -> bool {
        CompletionRequest::is_stream(self)
    }
    fn stream_options_mut(&mut self) -> &mut Option<StreamOptions> {
        &mut self.stream_options
    }
    fn include_usage(&self) -> bool {
        CompletionRequest::include_usage(self)
    }
    fn prompt_bytes(&self) -> usize {
        json_len(&self.prompt)
    }
    fn usage(response: &Self::Response) -> &Usage {
        &response.usage
    }
    async fn answer(self, provider: &dyn Provider) -> Result<Self::Response, ProviderError> {
        provider.completion(self).await
    }
    async fn stream(
        self,
        provider: &dyn Provider,
    ) -> Result<ChunkStream<Self::Chunk>, ProviderError> {
        provider.completion_stream(self).await
    }
}
