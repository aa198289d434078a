//! Azure OpenAI: OpenAI's wire format behind a deployment URL,
//! `{api_base}/openai/deployments/{deployment}/{chat/completions,
//! completions, embeddings}?api-version={api_version}`, authenticated by an
//! `api-key` header. Request and response handling is
//! `OpenAiWire`'s; what is Azure's own is the URL and its
//! content filter: an error with code `content_filter`, or a whole answer
//! the filter emptied (`finish_reason: content_filter` and no content),
//! becomes [`ProviderError::ContentPolicy`] so LiteLLM's
//! `content_policy_fallbacks` can act on it.

use super::http;
use super::openai::{Endpoints, KeyHeader, OpenAiWire};
use super::resolve::Resolved;
use super::upstream::Upstream;
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, EmbeddingRequest, EmbeddingResponse, FinishReason,
    ModelCard,
};
use crate::provider::{ChunkStream, Provider};
use reqwest::StatusCode;
use serde_json::Value;

/// The adapter for one Azure OpenAI deployment (`azure/<deployment>`).
pub struct AzureProvider {
    /// The wire, its endpoints under
    /// `{api_base}/openai/deployments/{deployment}` with `?api-version=`.
    wire: OpenAiWire,
}

impl AzureProvider {
    /// Builds the adapter. `api_base` (the resource endpoint) and
    /// `api_version` are required, as Azure has neither a default host nor
    /// a default version: a 400 naming the missing one.
    pub fn new(
        model_name: &str,
        resolved: Resolved,
        params: &DeploymentParams,
        client: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let required = |value: &Option<String>, key: &str| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    ProviderError::invalid(
                        key,
                        format!(
                            "model `{model_name}` (azure/{}) needs `{key}` in its litellm_params",
                            resolved.upstream_model
                        ),
                    )
                })
        };
        let api_base = required(&params.api_base, "api_base")?;
        let api_version = required(&params.api_version, "api_version")?;
        let deployment_url = format!(
            "{}/openai/deployments/{}",
            api_base.trim_end_matches('/'),
            resolved.upstream_model
        );
        let endpoints =
            Endpoints::new(|path| format!("{deployment_url}/{path}?api-version={api_version}"))?;
        let mut upstream = Upstream::new(
            model_name,
            resolved.upstream_model,
            params,
            client,
            &api_base,
        );
        upstream.error_map = azure_error;
        Ok(Self {
            wire: OpenAiWire {
                upstream,
                key_header: KeyHeader::ApiKey,
                provider: "azure",
                vllm_extras: false,
                endpoints,
            },
        })
    }
}

/// Azure's error mapping: `error.code == "content_filter"` (or
/// `ResponsibleAIPolicyViolation` in `innererror`) is a content-policy
/// error whatever the message says; the rest is the shared mapping.
fn azure_error(status: StatusCode, retry_after: Option<u64>, body: &[u8]) -> ProviderError {
    let filtered = serde_json::from_slice::<Value>(body).ok().is_some_and(|v| {
        v.pointer("/error/code").and_then(Value::as_str) == Some("content_filter")
            || v.pointer("/error/innererror/code").and_then(Value::as_str)
                == Some("ResponsibleAIPolicyViolation")
    });
    match http::error_from_parts(status, retry_after, body) {
        ProviderError::Upstream { message, .. } if filtered => {
            ProviderError::ContentPolicy { message }
        }
        other => other,
    }
}

/// A whole answer whose every choice the filter emptied is a content-policy
/// error (there is nothing to return); a partly filtered one is returned
/// with its `content_filter` finish reason.
fn check_filtered(resp: ChatCompletionResponse) -> Result<ChatCompletionResponse, ProviderError> {
    let emptied = |c: &crate::openai::ChatChoice| {
        c.finish_reason == Some(FinishReason::ContentFilter)
            && c.message.content.as_deref().is_none_or(str::is_empty)
            && c.message.tool_calls.is_none()
    };
    if !resp.choices.is_empty() && resp.choices.iter().all(emptied) {
        return Err(ProviderError::ContentPolicy {
            message: "Azure OpenAI's content filter blocked the response".to_owned(),
        });
    }
    Ok(resp)
}

#[async_trait::async_trait]
impl Provider for AzureProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(
            &self.wire.upstream.model_name,
            "azure",
            None,
        )]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        check_filtered(self.wire.chat(&req).await?)
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        self.wire.chat_stream(&req).await
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        self.wire.completion(&req).await
    }

    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        self.wire.completion_stream(&req).await
    }

    async fn embeddings(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        self.wire.embeddings(&req).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::{ChatChoice, ChatResponseMessage, Usage};

    fn params(api_version: Option<&str>) -> DeploymentParams {
        DeploymentParams {
            model: "azure/my-gpt4o".to_owned(),
            api_base: Some("https://res.openai.azure.com/".to_owned()),
            api_key: Some("k".to_owned()),
            api_version: api_version.map(str::to_owned),
            ..DeploymentParams::default()
        }
    }

    fn build(p: &DeploymentParams) -> Result<AzureProvider, ProviderError> {
        let resolved = super::super::resolve::resolve(&p.model).unwrap();
        AzureProvider::new("gpt4o", resolved, p, reqwest::Client::new())
    }

    #[test]
    fn urls_carry_deployment_and_api_version() {
        let a = build(&params(Some("2024-10-21"))).unwrap();
        assert_eq!(
            a.wire.endpoints.chat.as_str(),
            "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        let err = build(&params(None)).err().unwrap();
        assert_eq!(err.status(), 400);
        assert_eq!(err.body().error.param.as_deref(), Some("api_version"));
    }

    #[test]
    fn content_filter_code_is_a_content_policy_error() {
        let body = br#"{"error":{"code":"content_filter","message":"The response was filtered","status":400}}"#;
        let e = azure_error(StatusCode::BAD_REQUEST, None, body);
        assert!(matches!(e, ProviderError::ContentPolicy { .. }), "{e:?}");
        assert_eq!(
            e.body().error.code.as_deref(),
            Some("content_policy_violation")
        );
        let other = azure_error(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":{"message":"bad"}}"#,
        );
        assert!(matches!(other, ProviderError::Upstream { status: 400, .. }));
    }

    #[test]
    fn an_emptied_answer_is_a_content_policy_error() {
        let choice = |content: Option<&str>| ChatChoice {
            index: 0,
            message: ChatResponseMessage {
                role: "assistant".to_owned(),
                content: content.map(str::to_owned),
                tool_calls: None,
                reasoning_content: None,
            },
            logprobs: None,
            finish_reason: Some(FinishReason::ContentFilter),
        };
        let resp =
            |c| ChatCompletionResponse::new("id".into(), "m".into(), vec![c], Usage::new(1, 0));
        assert!(matches!(
            check_filtered(resp(choice(None))),
            Err(ProviderError::ContentPolicy { .. })
        ));
        assert!(check_filtered(resp(choice(Some("partial")))).is_ok());
    }
}
