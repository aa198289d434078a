//! Amazon Bedrock through the Converse API (`/model/{id}/converse`, and
//! `/converse-stream` in AWS event-stream framing), SigV4-signed
//! ([`sign`]); one translation for every model family Bedrock hosts.
//!
//! Credentials: `aws_access_key_id` / `aws_secret_access_key` /
//! `aws_session_token` from the deployment, else the `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` environment variables;
//! an `api_key` instead is a Bedrock API key sent as a bearer token (no
//! signing). Region: `aws_region_name`, else `AWS_REGION` /
//! `AWS_DEFAULT_REGION`, else `us-east-1`.
//!
//! Embeddings: Titan text embedding models (`amazon.titan-embed-*`)
//! through InvokeModel, one call per input.

pub mod request;
pub mod response;
pub mod sign;
pub mod stream;

use super::http;
use super::resolve::Resolved;
use super::stream_pump::{pump, ChunkBuilder};
use super::upstream::Upstream;
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, EmbeddingRequest,
    EmbeddingResponse, ModelCard,
};
use crate::provider::{unsupported, ChunkStream, Provider};
use serde::Deserialize;
use serde_json::{json, Value};
use sign::AwsCredentials;
use std::time::SystemTime;

/// The region when neither the deployment nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq)]
enum Auth {
    /// SigV4 with static credentials.
    SigV4(AwsCredentials),
    /// A Bedrock API key (`Authorization: Bearer`).
    ApiKey(String),
}

/// One Bedrock deployment.
#[derive(Debug, Clone)]
pub struct BedrockProvider {
    /// The model id (`upstream_model`) and the runtime endpoint (`base`).
    upstream: Upstream,
    region: String,
    auth: Auth,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl BedrockProvider {
    /// The adapter serving `model_name` from the Bedrock model id in
    /// `resolved`; missing credentials are a 400 naming the parameter.
    pub fn new(
        model_name: &str,
        resolved: Resolved,
        params: &DeploymentParams,
        client: reqwest::Client,
    ) -> Result<Self, ProviderError> {
        let region = params
            .aws_region_name
            .clone()
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let auth = match (&params.api_key, &params.aws_access_key_id) {
            (Some(key), None) => Auth::ApiKey(key.clone()),
            _ => {
                let access_key_id = params
                    .aws_access_key_id
                    .clone()
                    .or_else(|| env("AWS_ACCESS_KEY_ID"));
                let secret_access_key = params
                    .aws_secret_access_key
                    .clone()
                    .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
                match (access_key_id, secret_access_key) {
                    (Some(access_key_id), Some(secret_access_key)) => Auth::SigV4(AwsCredentials {
                        access_key_id,
                        secret_access_key,
                        session_token: params
                            .aws_session_token
                            .clone()
                            .or_else(|| env("AWS_SESSION_TOKEN")),
                    }),
                    _ => {
                        return Err(ProviderError::invalid(
                            "aws_access_key_id",
                            "a bedrock/ deployment needs aws_access_key_id and \
                             aws_secret_access_key (or AWS_ACCESS_KEY_ID and \
                             AWS_SECRET_ACCESS_KEY in the environment), or an api_key",
                        ))
                    }
                }
            }
        };
        let default_base = format!("https://bedrock-runtime.{region}.amazonaws.com");
        Ok(Self {
            upstream: Upstream::new(
                model_name,
                resolved.upstream_model,
                params,
                client,
                &default_base,
            ),
            region,
            auth,
        })
    }

    /// `{base}/model/{id}/{action}`, the model id percent-encoded as one
    /// path segment (ids contain `:`, ARNs `/`).
    pub fn url(&self, action: &str) -> String {
        let id = percent_encoding::utf8_percent_encode(&self.upstream.upstream_model, SEGMENT);
        format!("{}/model/{id}/{action}", self.upstream.base)
    }

    /// A signed (or API-key) POST of `body` to `url`.
    fn post(&self, url: &str, body: &Value) -> Result<reqwest::RequestBuilder, ProviderError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ProviderError::Internal {
            message: format!("cannot encode the Bedrock request: {e}"),
        })?;
        let mut req = self
            .upstream
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        match &self.auth {
            Auth::ApiKey(key) => req = req.bearer_auth(key),
            Auth::SigV4(creds) => {
                let signed = sign::sign_post(
                    creds,
                    &self.region,
                    url,
                    &[("content-type", "application/json")],
                    &bytes,
                    SystemTime::now(),
                )?;
                for (name, value) in signed {
                    req = req.header(name, value);
                }
            }
        }
        Ok(req.body(bytes))
    }

    fn body(&self, req: &ChatCompletionRequest) -> Result<Value, ProviderError> {
        self.upstream
            .check_params(req, "bedrock", request::SUPPORTED)?;
        request::converse_body(req)
    }
}

/// Characters escaped in a path segment (everything but RFC 3986
/// unreserved characters).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[async_trait::async_trait]
impl Provider for BedrockProvider {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new(&self.upstream.model_name, "bedrock", None)]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let body = self.body(&req)?;
        let resp = self
            .upstream
            .send(self.post(&self.url("converse"), &body)?, false)
            .await?;
        let parsed: response::ConverseResponse = http::json_body(resp).await?;
        response::chat_response(parsed, &self.upstream.model_name)
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let body = self.body(&req)?;
        let builder = self.post(&self.url("converse-stream"), &body)?.header(
            reqwest::header::ACCEPT,
            "application/vnd.amazon.eventstream",
        );
        let resp = self.upstream.send(builder, true).await?;
        let translator = stream::BedrockStream::new(ChunkBuilder::new(
            &self.upstream.model_name,
            req.include_usage(),
        ));
        Ok(pump(
            stream::frames(resp, self.upstream.stream_timeout),
            translator,
        ))
    }

    async fn embeddings(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, ProviderError> {
        if !self
            .upstream
            .upstream_model
            .starts_with("amazon.titan-embed")
        {
            return Err(unsupported(
                &req.model,
                "embeddings (only amazon.titan-embed-* models)",
            ));
        }
        let texts = req.input.texts()?;
        let url = self.url("invoke");
        let calls = texts.iter().map(|text| {
            let body = titan_body(text, req.dimensions);
            let url = url.clone();
            async move {
                let resp = self.upstream.send(self.post(&url, &body)?, false).await?;
                http::json_body::<TitanEmbedding>(resp).await
            }
        });
        let answers = futures::future::try_join_all(calls).await?;
        let tokens = answers.iter().map(|a| a.input_text_token_count).sum();
        let vectors = answers.into_iter().map(|a| a.embedding).collect();
        Ok(EmbeddingResponse::new(
            self.upstream.model_name.clone(),
            vectors,
            tokens,
        ))
    }
}

/// A Titan InvokeModel body (`dimensions` is Titan v2's).
fn titan_body(text: &str, dimensions: Option<i64>) -> Value {
    let mut body = json!({ "inputText": text });
    if let Some(d) = dimensions {
        body["dimensions"] = json!(d);
    }
    body
}

/// A Titan embedding answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanEmbedding {
    embedding: Vec<f32>,
    #[serde(default)]
    input_text_token_count: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::providers::resolve::resolve;

    fn provider(v: Value) -> Result<BedrockProvider, ProviderError> {
        let params: DeploymentParams = serde_json::from_value(v).unwrap();
        BedrockProvider::new(
            "b",
            resolve(&params.model).unwrap(),
            &params,
            reqwest::Client::new(),
        )
    }

    #[test]
    fn url_encodes_the_model_id_and_defaults_the_region() {
        let p = provider(
            json!({"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
            "aws_access_key_id": "AK", "aws_secret_access_key": "SK",
            "aws_region_name": "eu-west-3"}),
        )
        .unwrap();
        assert_eq!(
            p.url("converse"),
            "https://bedrock-runtime.eu-west-3.amazonaws.com/model/\
             anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        let p = provider(
            json!({"model": "bedrock/arn:aws:bedrock:x/y", "api_key": "k",
            "api_base": "http://mock/"}),
        )
        .unwrap();
        assert_eq!(
            p.url("converse-stream"),
            "http://mock/model/arn%3Aaws%3Abedrock%3Ax%2Fy/converse-stream"
        );
        assert_eq!(p.auth, Auth::ApiKey("k".into()));
    }

    #[test]
    fn signed_request_carries_sigv4_headers() {
        let p = provider(json!({"model": "bedrock/m", "aws_access_key_id": "AK",
            "aws_secret_access_key": "SK", "aws_session_token": "ST"}))
        .unwrap();
        let r = p
            .post(&p.url("converse"), &json!({"messages": []}))
            .unwrap()
            .build()
            .unwrap();
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AK/"),
            "{auth}"
        );
        assert!(auth.contains("/bedrock/aws4_request"));
        assert_eq!(r.headers()["x-amz-security-token"], "ST");
        assert!(r.headers().contains_key("x-amz-date"));
    }

    #[test]
    fn titan_shapes() {
        assert_eq!(
            titan_body("hi", Some(256)),
            json!({"inputText": "hi", "dimensions": 256})
        );
        let e: TitanEmbedding =
            serde_json::from_value(json!({"embedding": [0.5, -1.0], "inputTextTokenCount": 3}))
                .unwrap();
        assert_eq!(
            (e.embedding, e.input_text_token_count),
            (vec![0.5, -1.0], 3)
        );
    }
}
