//! What every adapter holds for its deployment, read from `litellm_params`
//! in one place: the names on both sides, where it lives, its key, how
//! long to wait and whether unsupported parameters are dropped. Each
//! adapter adds only what its API needs besides (Anthropic's version
//! header, Bedrock's signing, Gemini's endpoint forms, Azure's deployment
//! URL), so adding a provider starts from this struct.

use super::{check_chat_params, http};
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::openai::ChatCompletionRequest;
use reqwest::{RequestBuilder, Response};
use std::time::Duration;

/// One deployment's upstream, shared by every adapter.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The gateway's pooled client.
    pub client: reqwest::Client,
    /// The name clients use; every response's `model` says this.
    pub model_name: String,
    /// The name sent upstream (the model string after its provider prefix).
    pub upstream_model: String,
    /// `api_base` without a trailing slash, else the provider's default.
    pub base: String,
    /// `api_key`, absent when unset or empty.
    pub api_key: Option<String>,
    /// A whole answer's timeout.
    pub timeout: Duration,
    /// A stream's time to its first byte and longest silence between reads.
    pub stream_timeout: Duration,
    /// LiteLLM's `drop_params`.
    pub drop_params: bool,
    /// How an error response becomes a [`ProviderError`]
    /// ([`http::error_from_parts`] unless the adapter knows better).
    pub error_map: http::ErrorMap,
}

impl Upstream {
    /// The upstream of the deployment `model_name` with these params;
    /// `default_base` serves when `api_base` is unset or blank.
    pub fn new(
        model_name: &str,
        upstream_model: String,
        params: &DeploymentParams,
        client: reqwest::Client,
        default_base: &str,
    ) -> Self {
        Self {
            client,
            model_name: model_name.to_owned(),
            upstream_model,
            base: params
                .api_base()
                .unwrap_or(default_base)
                .trim_end_matches('/')
                .to_owned(),
            api_key: params.api_key(),
            timeout: params.timeout(),
            stream_timeout: params.stream_timeout(),
            drop_params: params.drops_params(),
            error_map: http::error_from_parts,
        }
    }

    /// Sends a request built on [`Self::client`]: a whole answer within
    /// [`Self::timeout`], or for a `stream` its first byte within
    /// [`Self::stream_timeout`] (see [`http::send_stream`]); an error
    /// status becomes a [`ProviderError`] through [`Self::error_map`].
    pub async fn send(
        &self,
        builder: RequestBuilder,
        stream: bool,
    ) -> Result<Response, ProviderError> {
        if stream {
            http::send_stream(builder, self.stream_timeout, self.error_map).await
        } else {
            http::send(builder, self.timeout, self.error_map).await
        }
    }

    /// POSTs `body` as JSON to [`Self::base`] + `path` with
    /// [`Self::api_key`] as a Bearer token when there is one (the request
    /// most adapters make), sent as [`Self::send`] sends.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        stream: bool,
    ) -> Result<Response, ProviderError> {
        let mut builder = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        self.send(builder, stream).await
    }

    /// Names the parameters of `req` that `provider`'s API lacks (a 400),
    /// or drops them under `drop_params`.
    pub fn check_params(
        &self,
        req: &ChatCompletionRequest,
        provider: &str,
        supported: &[&str],
    ) -> Result<(), ProviderError> {
        check_chat_params(req, provider, supported, self.drop_params)
    }
}
