//! The local engine as a deployment: a `model_list` entry whose model is
//! `local/<name>` or `engine`. The engine serves its own model id, so
//! requests are renamed to it on the way in and responses back to the
//! client's model_name on the way out.

use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, DetokenizeRequest, DetokenizeResponse, EmbeddingRequest,
    EmbeddingResponse, ModelCard, TokenizeRequest, TokenizeResponse,
};
use crate::provider::{ChunkStream, Provider};
use futures::StreamExt;
use std::sync::Arc;

/// The local engine behind one model_name.
pub struct LocalDeployment {
    inner: Arc<dyn Provider>,
    served: String,
}

impl LocalDeployment {
    /// Wraps `inner`, which serves its first model card's id.
    pub fn new(inner: Arc<dyn Provider>) -> Self {
        let served = inner
            .models()
            .into_iter()
            .next()
            .map(|c| c.id)
            .unwrap_or_default();
        Self { inner, served }
    }

    fn rename(&self, model: &mut String) -> String {
        if self.served.is_empty() {
            return model.clone();
        }
        std::mem::replace(model, self.served.clone())
    }
}

#[async_trait::async_trait]
impl Provider for LocalDeployment {
    fn models(&self) -> Vec<ModelCard> {
        self.inner.models()
    }

    fn health(&self) -> Result<(), ProviderError> {
        self.inner.health()
    }

    async fn chat(
        &self,
        mut req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let name = self.rename(&mut req.model);
        let mut resp = self.inner.chat(req).await?;
        resp.model = name;
        Ok(resp)
    }

    async fn chat_stream(
        &self,
        mut req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let name = self.rename(&mut req.model);
        let s = self.inner.chat_stream(req).await?;
        Ok(s.map(move |c| {
            c.map(|mut c| {
                c.model.clone_from(&name);
                c
            })
        })
        .boxed())
    }

    async fn completion(
        &self,
        mut req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let name = self.rename(&mut req.model);
        let mut resp = self.inner.completion(req).await?;
        resp.model = name;
        Ok(resp)
    }

    async fn completion_stream(
        &self,
        mut req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        let name = self.rename(&mut req.model);
        let s = self.inner.completion_stream(req).await?;
        Ok(s.map(move |c| {
            c.map(|mut c| {
                c.model.clone_from(&name);
                c
            })
        })
        .boxed())
    }

    async fn embeddings(
        &self,
        mut req: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let name = self.rename(&mut req.model);
        let mut resp = self.inner.embeddings(req).await?;
        resp.model = name;
        Ok(resp)
    }

    async fn tokenize(&self, mut req: TokenizeRequest) -> Result<TokenizeResponse, ProviderError> {
        req.model = Some(self.served.clone()).filter(|s| !s.is_empty());
        self.inner.tokenize(req).await
    }

    async fn detokenize(
        &self,
        mut req: DetokenizeRequest,
    ) -> Result<DetokenizeResponse, ProviderError> {
        req.model = Some(self.served.clone()).filter(|s| !s.is_empty());
        self.inner.detokenize(req).await
    }
}
