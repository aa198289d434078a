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
use std::time::Duration;

/// Anthropic's API when a deployment gives no `api_base`.
pub const DEFAULT_API_BASE: &str = "https://api.anthropic.com";

/// One Anthropic deployment.
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    model_name: String,
    upstream_model: String,
    url: String,
    api_key: Option<String>,
    timeout: Duration,
    stream_timeout: Duration,
    drop_params: bool,
    client: reqwest::Client,
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
        let base = params
            .api_base
            .as_deref()
            .unwrap_or(DEFAULT_API_BASE)
            .trim_end_matches('/');
        let url = if base.ends_with("/v1/messages") {
            base.to_owned()
        } else if base.ends_with("/v1") {
            format!("{base}/messages")
        } else {
            format!("{base}/v1/messages")
        };
        Ok(Self {
            model_name: model_name.to_owned(),
            upstream_model: resolved.upstream_model,
            url,
            api_key: params.api_key.clone(),
            timeout: params.timeout(),
            stream_timeout: params.stream_timeout(),
            drop_params: params.drops_params(),
            client,
        })
    }

    async fn post(
        &self,
        req: &ChatCompletionRequest,
        stream: bool,
    ) -> Result<reqwest::Response, ProviderError> {
        crate::providers::check_chat_params(
            req,
            "anthropic",
            request::SUPPORTED,
            self.drop_params,
        )?;
        let body = request::to_anthropic(req, &self.upstream_model, stream)?;
        let mut builder = self
            .client
            .post(&self.url)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        if let Some(key) = &self.api_key {
            builder = builder.header("x-api-key", key);
        }
        if stream {
            http::send_stream(builder, self.stream_timeout).await
        } else {
            http::send(builder, self.timeout).await
        }
    }
}

#[async_trait::async_trait]
impl Provider for AnthropicProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(&self.model_name, "anthropic", None)]
    }

    fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let resp = self.post(&req, false).await?;
        let body: MessagesResponse = http::json_body(resp).await?;
        Ok(response::to_openai(body, &self.model_name))
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let resp = self.post(&req, true).await?;
        let translator =
            stream::AnthropicStream::new(ChunkBuilder::new(&self.model_name, req.include_usage()));
        Ok(pump(
            http::sse_events(resp, self.stream_timeout),
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
        assert_eq!(p.upstream_model, "claude-x");
        assert_eq!(p.models()[0].id, "mine");
    }
}
