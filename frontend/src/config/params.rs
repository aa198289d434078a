//! `litellm_params` of one deployment: where it is, how to authenticate,
//! and its limits, as LiteLLM's `config.yaml` spells them.
//!
//! `os.environ/NAME` references are resolved by the config loader before
//! these are built, so adapters see plain values.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::Duration;

/// LiteLLM's default request timeout (600 s) when neither the deployment
/// nor the router sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// One deployment's parameters. Adapters read what their wire format needs
/// (an Azure deployment reads `api_version`, Bedrock the `aws_*` fields)
/// and ignore the rest; the router reads the limits and weights.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeploymentParams {
    /// LiteLLM's model string: `anthropic/claude-3-5-sonnet-20240620`,
    /// `azure/<deployment>`, `gpt-4o`, ... (see [`crate::providers::resolve`]).
    pub model: String,
    /// Base URL; each provider has a default.
    #[serde(default)]
    pub api_base: Option<String>,
    /// The provider's API key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Azure's `api-version` query parameter.
    #[serde(default)]
    pub api_version: Option<String>,
    /// Seconds before a non-streaming call gives up.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Seconds a streaming call may wait for its first byte, and then for
    /// each next read of its body (an idle timeout: a long stream is never
    /// cut while it keeps sending). Default: `timeout`.
    #[serde(default)]
    pub stream_timeout: Option<f64>,
    /// Requests per minute this deployment may take (usage-based routing).
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute this deployment may take (usage-based routing).
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Relative share under simple-shuffle.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Priority: deployments with the lowest `order` are tried first.
    #[serde(default)]
    pub order: Option<u32>,
    /// Drop OpenAI parameters the provider does not take instead of
    /// answering 400 naming them; the config loader fills it from
    /// `litellm_settings.drop_params` when a deployment does not set it.
    #[serde(default)]
    pub drop_params: Option<bool>,
    /// Per-deployment retry count (overrides the router's).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Price per input token in USD, for cost-based routing.
    #[serde(default)]
    pub input_cost_per_token: Option<f64>,
    /// Price per output token in USD, for cost-based routing.
    #[serde(default)]
    pub output_cost_per_token: Option<f64>,
    /// AWS credentials and region for Bedrock (SigV4 signing).
    #[serde(default)]
    pub aws_access_key_id: Option<String>,
    /// See `aws_access_key_id`.
    #[serde(default)]
    pub aws_secret_access_key: Option<String>,
    /// See `aws_access_key_id`.
    #[serde(default)]
    pub aws_session_token: Option<String>,
    /// See `aws_access_key_id`.
    #[serde(default)]
    pub aws_region_name: Option<String>,
    /// Google Cloud project for Vertex AI.
    #[serde(default)]
    pub vertex_project: Option<String>,
    /// Google Cloud region for Vertex AI (`us-central1`).
    #[serde(default)]
    pub vertex_location: Option<String>,
    /// Every other key, kept so adapters can read provider-specific ones
    /// and the config loader can warn about the rest.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DeploymentParams {
    /// The deployment's request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .filter(|t| *t > 0.0)
            .and_then(super::config_duration)
            .unwrap_or(DEFAULT_TIMEOUT)
    }

    /// The deployment's stream timeout: to the first byte, and between
    /// reads after it (`stream_timeout`, else [`Self::timeout`]).
    pub fn stream_timeout(&self) -> Duration {
        self.stream_timeout
            .filter(|t| *t > 0.0)
            .and_then(super::config_duration)
            .unwrap_or_else(|| self.timeout())
    }

    /// `api_base` without a trailing slash, when set and not blank.
    pub fn api_base(&self) -> Option<&str> {
        self.api_base
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .map(|b| b.trim_end_matches('/'))
    }

    /// `api_key` when set and not empty (an empty one means "no key").
    pub fn api_key(&self) -> Option<String> {
        self.api_key.clone().filter(|k| !k.is_empty())
    }

    /// Whether unsupported parameters are dropped (see `drop_params`).
    pub fn drops_params(&self) -> bool {
        self.drop_params.unwrap_or(false)
    }
}
