//! The Anthropic Messages adapter: `POST {api_base}/v1/messages` with
//! `x-api-key` and `anthropic-version: 2023-06-01`, streaming as SSE.
//!
//! [`request`] translates the OpenAI chat request (system prompt, content
//! blocks, images, tools), [`response`] the answer back (stop reasons,
//! usage), [`stream`] the SSE events into chunks. Text completions are sent
//! as one user message (Anthropic has no completions endpoint); there are
//! no embeddings (Anthropic has none), so the trait default answers 400.
//! The wire types are shared with the `/v1/messages` ingress
//! ([`crate::messages_api::types`]).

pub mod request;
pub mod response;
pub mod stream;

use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::messages_api::types::{MessagesResponse, ANTHROPIC_VERSION};
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ModelCard,
};
use crate::provider::{ChunkStream, Provider};
use crate::providers::http;
use crate::providers::resolve::Resolved;
use crate::providers::stream_pump::{pump, ChunkBuilder};
use crate::providers::upstream::Upstream;

/// Anthropic's API when a deployment gives no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";

/// One Anthropic deployment.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    upstream: Upstream,
    /// The Messages endpoint: `api_base` ending in `/v1/messages`, `/v1`
    /// or neither.
    url: String,
}

impl AnthropicProvider {
    /// The adapter serving `model_name` from `resolved.upstream_model` at
    /// `params.api_base` (default [`DEFAULT_API_BASE`]; a base that already
    /// ends in `/v1` is accepted too, as LiteLLM accepts it).
    pub fn new(
        model_name: &str,
        resolved: Resolved,
        params: &DeploymentParams,
        client: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let upstream = Upstream::new(
            model_name,
            resolved.upstream_model,
            params,
            client,
            DEFAULT_API_BASE,
        );
        let base = upstream.base.as_str();
        let url = if base.ends_with("/v1/messages") {
            base.to_owned()
        } else if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        Ok(Self { upstream, url })
    }

    async fn post(
        &self,
        req: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        self.upstream
            .check_params(req, "anthropic", request::SUPPORTED)?;
        let body = request::to_anthropic(req, &self.upstream.upstream_model, stream)?;
        let mut builder = self
            .upstream
            .client
            .post(&self.url)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        if let Some(key) = &self.upstream.api_key {
            builder = builder.header("x-api-key", key);
        }
        self.upstream.send(builder, stream).await
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(&self.upstream.model_name, "anthropic", None)]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let resp = self.post(&req, false).await?;
        let body: MessagesResponse = http::json_body(resp).await?;
        Ok(response::to_openai(body, &self.upstream.model_name))
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let resp = self.post(&req, true).await?;
        let translator = stream::AnthropicStream::new(ChunkBuilder::new(
            &self.upstream.model_name,
            req.include_usage(),
        ));
        Ok(pump(
            http::sse_events(resp, self.upstream.stream_timeout),
            translator,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::providers::resolve::resolve;

    fn provider(base: Option<&str>) -> AnthropicProvider {
        let params = DeploymentParams {
            model: "anthropic/claude-x".into(),
            api_base: base.map(str::to_owned),
            ..DeploymentParams::default()
        };
        AnthropicProvider::new(
            "mine",
            resolve(&params.model).unwrap(),
            &params,
            reqwest::Client::new(),
        )
        .unwrap()
    }

    #[test]
    fn urls_and_model_card() {
        assert_eq!(provider(None).url, "https://api.anthropic.com/v1/messages");
        assert_eq!(provider(Some("http://h:1/")).url, "http://h:1/v1/messages");
        assert_eq!(
            provider(Some("http://h:1/v1")).url,
            "http://h:1/v1/messages"
        );
        let p = provider(None);
        assert_eq!(p.upstream.upstream_model, "claude-x");
        assert_eq!(p.models()[0].id, "mine");
    }
}
