//! Gemini, in both of its forms: the Generative Language API
//! (`gemini/...`, key in `x-goog-api-key`) and Vertex AI
//! (`vertex_ai/...`, project/location URL, `Authorization: Bearer`).
//! One translation ([`request`], [`response`], [`stream`]); the two forms
//! differ only in [`Endpoint`] (URL and auth).
//!
//! Embeddings: `:embedContent` for one input, `:batchEmbedContents` for
//! several (Generative Language API only; Vertex serves embeddings through
//! `:predict`, which this adapter does not speak).

pub mod request;
pub mod response;
pub mod stream;

use super::http;
use super::resolve::{ProviderKind, Resolved};
use super::stream_pump::{pump, ChunkBuilder};
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, EmbeddingRequest,
    EmbeddingResponse, ModelCard,
};
use crate::provider::{unsupported, ChunkStream, Provider};
use crate::providers::upstream::Upstream;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

/// Google's public endpoint of the Generative Language API.
pub const GEMINI_BASE: &str = "https://generativelanguage.googleapis.com";
/// Vertex AI's default region, as LiteLLM defaults it.
pub const DEFAULT_VERTEX_LOCATION: &str = "us-central1";

/// Where a deployment's requests go and how they authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `{base}/v1beta/models/{model}:{method}`, `x-goog-api-key: {key}`.
    Gemini {
        /// `api_base` or [`GEMINI_BASE`], without a trailing slash.
        base: String,
        /// `api_key`, else `GEMINI_API_KEY` from the environment (as
        /// LiteLLM reads it); a request without one is sent
        /// unauthenticated and gets Google's 401/403.
        api_key: Option<String>,
    },
    /// `{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}`,
    /// `Authorization: Bearer {token}`.
    ///
    /// The token is `api_key` taken as an OAuth access token (e.g. from
    /// `gcloud auth print-access-token`); minting one from a service-account
    /// JSON (`vertex_credentials`) is not done here.
    Vertex {
        /// `api_base` or `https://{location}-aiplatform.googleapis.com`.
        base: String,
        /// `vertex_project`.
        project: String,
        /// `vertex_location`, default [`DEFAULT_VERTEX_LOCATION`].
        location: String,
        /// The access token.
        token: Option<String>,
    },
}

impl Endpoint {
    /// The endpoint of `kind` (Gemini or VertexAi) from a deployment's
    /// params; Vertex without `vertex_project` is a 400.
    pub fn from_params(
        kind: ProviderKind,
        params: &DeploymentParams,
    ) -> Result<Self, ProviderError> {
        let base = params
            .api_base
            .as_deref()
            .map(|b| b.trim_end_matches('/').to_owned());
        match kind {
            ProviderKind::VertexAi => {
                let project = params.vertex_project.clone().ok_or_else(|| {
                    ProviderError::invalid(
                        "vertex_project",
                        "a vertex_ai/ deployment needs `vertex_project` in its litellm_params",
                    )
                })?;
                let location = params
                    .vertex_location
                    .clone()
                    .unwrap_or_else(|| DEFAULT_VERTEX_LOCATION.to_owned());
                Ok(Self::Vertex {
                    base: base
                        .unwrap_or_else(|| format!("https://{location}-aiplatform.googleapis.com")),
                    project,
                    location,
                    token: params.api_key.clone(),
                })
            }
            _ => Ok(Self::Gemini {
                base: base.unwrap_or_else(|| GEMINI_BASE.to_owned()),
                api_key: params.api_key.clone().or_else(|| {
                    std::env::var("GEMINI_API_KEY")
                        .ok()
                        .filter(|k| !k.is_empty())
                }),
            }),
        }
    }

    /// `api_base`, else the default of the endpoint's kind.
    pub fn base(&self) -> &str {
        match self {
            Self::Gemini { base, .. } | Self::Vertex { base, .. } => base,
        }
    }

    /// The URL of `method` (`generateContent`, `streamGenerateContent`,
    /// `embedContent`, ...) for `model`; the model is percent-encoded as
    /// one path segment.
    pub fn url(&self, model: &str, method: &str) -> String {
        let model = percent_encoding::utf8_percent_encode(model, SEGMENT);
        match self {
            Self::Gemini { base, .. } => format!("{base}/v1beta/models/{model}:{method}"),
            Self::Vertex {
                base,
                project,
                location,
                ..
            } => format!(
                "{base}/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:{method}"
            ),
        }
    }

    /// Adds this endpoint's credentials to `req`.
    pub fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Gemini {
                api_key: Some(key), ..
            } => req.header("x-goog-api-key", key),
            Self::Vertex {
                token: Some(token), ..
            } => req.bearer_auth(token),
            _ => req,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Gemini { .. } => "gemini",
            Self::Vertex { .. } => "vertex_ai",
        }
    }
}

/// Characters escaped in a path segment (everything but RFC 3986
/// unreserved characters).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The shared error mapping, plus Google's way of saying when to retry: a
/// 429 carries `RetryInfo.retryDelay` in its body rather than a
/// `Retry-After` header, and the router needs it to back off.
fn gemini_error(status: StatusCode, header: Option<u64>, body: &[u8]) -> ProviderError {
    let mut err = http::error_from_parts(status, header, body);
    if let ProviderError::Upstream { retry_after, .. } = &mut err {
        if retry_after.is_none() {
            *retry_after = response::retry_delay(body);
        }
    }
    err
}

/// One Gemini or Vertex AI deployment.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    /// The shared fields; requests go to the URLs of `endpoint`, whose
    /// base `upstream.base` repeats.
    upstream: Upstream,
    endpoint: Endpoint,
}

impl GeminiProvider {
    /// The adapter serving `model_name` from `resolved` (kind Gemini or
    /// VertexAi).
    pub fn new(
        model_name: &str,
        resolved: Resolved,
        params: &DeploymentParams,
        client: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let endpoint = Endpoint::from_params(resolved.kind, params)?;
        let mut upstream = Upstream::new(
            model_name,
            resolved.upstream_model,
            params,
            client,
            endpoint.base(),
        );
        upstream.error_map = gemini_error;
        Ok(Self { upstream, endpoint })
    }

    fn post(&self, url: &str, body: &Value) -> reqwest::RequestBuilder {
        self.endpoint
            .authorize(self.upstream.client.post(url))
            .json(body)
    }

    fn body(&self, req: &ChatCompletionRequest) -> Result<Value, ProviderError> {
        self.upstream
            .check_params(req, self.endpoint.name(), request::SUPPORTED)?;
        request::generate_content_body(req)
    }
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(
            &self.upstream.model_name,
            self.endpoint.name(),
            None,
        )]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let body = self.body(&req)?;
        let url = self
            .endpoint
            .url(&self.upstream.upstream_model, "generateContent");
        let resp = self.upstream.send(self.post(&url, &body), false).await?;
        let parsed: response::GenerateContentResponse = http::json_body(resp).await?;
        response::chat_response(parsed, &self.upstream.model_name)
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let body = self.body(&req)?;
        let url = format!(
            "{}?alt=sse",
            self.endpoint
                .url(&self.upstream.upstream_model, "streamGenerateContent")
        );
        let resp = self.upstream.send(self.post(&url, &body), true).await?;
        let translator = stream::GeminiStream::new(ChunkBuilder::new(
            &self.upstream.model_name,
            req.include_usage(),
        ));
        Ok(pump(
            http::sse_events(resp, self.upstream.stream_timeout),
            translator,
        ))
    }

    async fn embeddings(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        if matches!(self.endpoint, Endpoint::Vertex { .. }) {
            return Err(unsupported(&req.model, "embeddings on Vertex AI"));
        }
        let texts = req.input.texts()?;
        let dims = req.dimensions;
        let model_path = format!("models/{}", self.upstream.upstream_model);
        let content = |t: &str| {
            let mut c = json!({"model": model_path, "content": {"parts": [{"text": t}]}});
            if let Some(d) = dims {
                c["outputDimensionality"] = json!(d);
            }
            c
        };
        let vectors = if let [one] = texts.as_slice() {
            let url = self
                .endpoint
                .url(&self.upstream.upstream_model, "embedContent");
            let resp = self
                .upstream
                .send(self.post(&url, &content(one)), false)
                .await?;
            let parsed: EmbedContentResponse = http::json_body(resp).await?;
            vec![parsed.embedding.values]
        } else {
            let url = self
                .endpoint
                .url(&self.upstream.upstream_model, "batchEmbedContents");
            let requests: Vec<Value> = texts.iter().map(|t| content(t)).collect();
            let body = json!({ "requests": requests });
            let resp = self.upstream.send(self.post(&url, &body), false).await?;
            let parsed: BatchEmbedContentsResponse = http::json_body(resp).await?;
            parsed.embeddings.into_iter().map(|e| e.values).collect()
        };
        // Gemini reports no token counts for embeddings.
        Ok(EmbeddingResponse::new(
            self.upstream.model_name.clone(),
            vectors,
            0,
        ))
    }
}

/// `:embedContent`'s answer.
#[derive(Debug, Deserialize)]
struct EmbedContentResponse {
    embedding: ContentEmbedding,
}

/// `:batchEmbedContents`' answer, one embedding per request in order.
#[derive(Debug, Deserialize)]
struct BatchEmbedContentsResponse {
    embeddings: Vec<ContentEmbedding>,
}

#[derive(Debug, Deserialize)]
struct ContentEmbedding {
    values: Vec<f32>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn params(v: Value) -> DeploymentParams {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn gemini_and_vertex_urls() {
        let g = Endpoint::from_params(ProviderKind::Gemini, &params(json!({"model": "gemini/x"})))
            .unwrap();
        assert_eq!(
            g.url("gemini-2.0-flash", "generateContent"),
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
        );
        let v = Endpoint::from_params(
            ProviderKind::VertexAi,
            &params(json!({"model": "vertex_ai/x", "vertex_project": "p1"})),
        )
        .unwrap();
        assert_eq!(
            v.url("gemini-1.5-pro", "streamGenerateContent"),
            "https://us-central1-aiplatform.googleapis.com/v1/projects/p1/locations/us-central1/\
             publishers/google/models/gemini-1.5-pro:streamGenerateContent"
        );
        let v = Endpoint::from_params(
            ProviderKind::VertexAi,
            &params(json!({"model": "vertex_ai/x", "vertex_project": "p1",
                           "vertex_location": "europe-west4", "api_base": "http://mock/"})),
        )
        .unwrap();
        assert_eq!(
            v.url("m", "generateContent"),
            "http://mock/v1/projects/p1/locations/europe-west4/publishers/google/models/m:generateContent"
        );
    }

    #[test]
    fn vertex_needs_a_project() {
        let err = Endpoint::from_params(
            ProviderKind::VertexAi,
            &params(json!({"model": "vertex_ai/x"})),
        )
        .unwrap_err();
        assert_eq!(err.status(), 400);
        assert_eq!(err.body().error.param.as_deref(), Some("vertex_project"));
    }

    #[test]
    fn auth_headers() {
        let client = reqwest::Client::new();
        let g = Endpoint::Gemini {
            base: "http://x".into(),
            api_key: Some("k".into()),
        };
        let r = g.authorize(client.post("http://x")).build().unwrap();
        assert_eq!(r.headers()["x-goog-api-key"], "k");
        let v = Endpoint::Vertex {
            base: "http://x".into(),
            project: "p".into(),
            location: "l".into(),
            token: Some("t".into()),
        };
        let r = v.authorize(client.post("http://x")).build().unwrap();
        assert_eq!(r.headers()["authorization"], "Bearer t");
    }
}
