//! The settings sections of LiteLLM's `config.yaml` as typed values:
//! `router_settings`, `litellm_settings`, `general_settings`, and the
//! shared shapes (routing strategy, fallbacks, retry policy).
//!
//! Field names and spellings are LiteLLM's (docs.litellm.ai, "Proxy Config"
//! and "Router - Load Balancing"), so a LiteLLM file loads unchanged. Keys
//! we do not know are reported as warnings by the loader, never errors.

use serde::Deserialize;
use std::collections::BTreeMap;

/// How the router picks among a model_name's deployments
/// (`router_settings.routing_strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum RoutingStrategy {
    /// Random, weighted by `weight` (else `rpm`, else `tpm`); LiteLLM's
    /// default and the cheapest.
    #[default]
    #[serde(rename = "simple-shuffle")]
    SimpleShuffle,
    /// Fewest requests in flight.
    #[serde(rename = "least-busy")]
    LeastBusy,
    /// Lowest moving-average latency (time to first token for streams).
    #[serde(rename = "latency-based-routing")]
    LatencyBased,
    /// Below its rpm/tpm limits this minute, least used first.
    #[serde(rename = "usage-based-routing", alias = "usage-based-routing-v2")]
    UsageBased,
    /// Lowest `input_cost_per_token + output_cost_per_token`.
    #[serde(rename = "cost-based-routing")]
    CostBased,
}

/// `routing_strategy_args`: knobs of the strategies.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RoutingStrategyArgs {
    /// latency-based-routing: deployments within this fraction of the
    /// fastest count as tied and are picked at random among (LiteLLM's
    /// `lowest_latency_buffer`, default 0).
    #[serde(default)]
    pub lowest_latency_buffer: Option<f64>,
    /// LiteLLM's latency-cache TTL; accepted for compatibility (our moving
    /// average needs no TTL).
    #[serde(default)]
    pub ttl: Option<f64>,
}

/// LiteLLM's fallback lists: `[{"gpt-4o": ["claude-3", "gemini"]}, ...]`,
/// a list of maps from a model_name to the model_names tried after it, in
/// order.
pub type FallbackList = Vec<BTreeMap<String, OneOrMany>>;

/// A fallback target list; a lone string is accepted as a one-element list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `gpt-4o: claude-3`.
    One(String),
    /// `gpt-4o: [claude-3, gemini]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The names, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Per-error-kind retry counts (`router_settings.retry_policy`); a kind
/// left out uses `num_retries`. Setting a count for a kind that is not
/// retried by default (`BadRequestErrorRetries`) makes it retried.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[allow(non_snake_case)]
pub struct RetryPolicy {
    /// 400s (not context-length or content-policy).
    #[serde(default, rename = "BadRequestErrorRetries")]
    pub bad_request: Option<u32>,
    /// 401 / 403.
    #[serde(default, rename = "AuthenticationErrorRetries")]
    pub authentication: Option<u32>,
    /// 408 and timeouts.
    #[serde(default, rename = "TimeoutErrorRetries")]
    pub timeout: Option<u32>,
    /// 429.
    #[serde(default, rename = "RateLimitErrorRetries")]
    pub rate_limit: Option<u32>,
    /// Content-policy refusals.
    #[serde(default, rename = "ContentPolicyViolationErrorRetries")]
    pub content_policy: Option<u32>,
    /// 5xx.
    #[serde(default, rename = "InternalServerErrorRetries")]
    pub internal_server: Option<u32>,
}

/// `router_settings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RouterSettings {
    /// See [`RoutingStrategy`].
    #[serde(default)]
    pub routing_strategy: Option<RoutingStrategy>,
    /// See [`RoutingStrategyArgs`].
    #[serde(default)]
    pub routing_strategy_args: Option<RoutingStrategyArgs>,
    /// Retries per model group after the first attempt.
    #[serde(default)]
    pub num_retries: Option<u32>,
    /// Seconds a whole request (all retries and fallbacks) may take.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Generic fallbacks, tried after retries are exhausted.
    #[serde(default)]
    pub fallbacks: Option<FallbackList>,
    /// Fallbacks on context-length errors.
    #[serde(default)]
    pub context_window_fallbacks: Option<FallbackList>,
    /// Fallbacks on content-policy refusals.
    #[serde(default)]
    pub content_policy_fallbacks: Option<FallbackList>,
    /// Failures per minute a deployment may have before it cools down.
    #[serde(default)]
    pub allowed_fails: Option<u32>,
    /// Seconds a deployment is skipped once cooled down.
    #[serde(default)]
    pub cooldown_time: Option<f64>,
    /// See [`RetryPolicy`].
    #[serde(default)]
    pub retry_policy: Option<RetryPolicy>,
    /// Redis shared by several gateway replicas for rpm/tpm counters
    /// (LiteLLM's `redis_host`); without it limits are per replica.
    #[serde(default)]
    pub redis_host: Option<String>,
    /// See `redis_host` (default 6379).
    #[serde(default)]
    pub redis_port: Option<u16>,
    /// See `redis_host`.
    #[serde(default)]
    pub redis_password: Option<String>,
    /// A whole `redis://` URL instead of host, port and password.
    #[serde(default)]
    pub redis_url: Option<String>,
}

impl RouterSettings {
    /// The Redis URL for shared rate limits, when one is configured.
    pub fn redis_url(&self) -> Option<String> {
        redis_url(
            self.redis_url.as_deref(),
            self.redis_host.as_deref(),
            self.redis_port,
            self.redis_password.as_deref(),
        )
    }
}

/// `redis://[:password@]host:port` from LiteLLM's split settings; a full
/// URL wins.
fn redis_url(
    url: Option<&str>,
    host: Option<&str>,
    port: Option<u16>,
    password: Option<&str>,
) -> Option<String> {
    if let Some(url) = url.filter(|u| !u.is_empty()) {
        return Some(url.to_owned());
    }
    let host = host.filter(|h| !h.is_empty())?;
    let port = port.unwrap_or(6379);
    Some(match password.filter(|p| !p.is_empty()) {
        Some(p) => format!("redis://:{p}@{host}:{port}"),
        None => format!("redis://{host}:{port}"),
    })
}

/// Where cached responses live (`litellm_settings.cache_params.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheType {
    /// In this process (LiteLLM's `local`).
    #[default]
    #[serde(alias = "in-memory", alias = "memory")]
    Local,
    /// In Redis, shared by replicas.
    Redis,
}

/// `litellm_settings.cache_params`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CacheParams {
    /// Local or Redis; when the file leaves it out, the loader decides
    /// (Redis when `REDIS_HOST`/`REDIS_URL` is set, as LiteLLM's proxy
    /// defaults to Redis; see [`super::redis_env`]).
    #[serde(default, rename = "type")]
    pub kind: Option<CacheType>,
    /// Redis host.
    #[serde(default)]
    pub host: Option<String>,
    /// Redis port (default 6379).
    #[serde(default)]
    pub port: Option<u16>,
    /// Redis password.
    #[serde(default)]
    pub password: Option<String>,
    /// A whole `redis://` URL.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Seconds a response is kept unless the request says otherwise
    /// (default 600).
    #[serde(default)]
    pub ttl: Option<f64>,
    /// Prefix of the Redis keys, to share one Redis between gateways.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl CacheParams {
    /// The Redis URL, for `type: redis`.
    pub fn redis_url(&self) -> Option<String> {
        redis_url(
            self.redis_url.as_deref(),
            self.host.as_deref(),
            self.port,
            self.password.as_deref(),
        )
    }
}

/// `litellm_settings`: module-level defaults in LiteLLM; here defaults
/// under `router_settings` and the deployments.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LitellmSettings {
    /// Default `drop_params` of every deployment that does not set it.
    #[serde(default)]
    pub drop_params: Option<bool>,
    /// Default of `router_settings.num_retries`.
    #[serde(default)]
    pub num_retries: Option<u32>,
    /// Default of `router_settings.timeout` (seconds).
    #[serde(default)]
    pub request_timeout: Option<f64>,
    /// Appended to `router_settings.fallbacks`.
    #[serde(default)]
    pub fallbacks: Option<FallbackList>,
    /// Appended to `router_settings.context_window_fallbacks`.
    #[serde(default)]
    pub context_window_fallbacks: Option<FallbackList>,
    /// Appended to `router_settings.content_policy_fallbacks`.
    #[serde(default)]
    pub content_policy_fallbacks: Option<FallbackList>,
    /// Turns the response cache on.
    #[serde(default)]
    pub cache: Option<bool>,
    /// See [`CacheParams`].
    #[serde(default)]
    pub cache_params: Option<CacheParams>,
}

/// `general_settings`: proxy-wide settings of the control plane.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GeneralSettings {
    /// The proxy's admin key (`sk-...`), usually
    /// `os.environ/LITELLM_MASTER_KEY`. Without it the gateway is open (no
    /// keys, no admin API), as LiteLLM without one.
    #[serde(default)]
    pub master_key: Option<String>,
    /// Where keys, teams, users and spend live: `sqlite://path` (created
    /// if missing) or `postgres://...`. Default: `gateway.db` beside the
    /// config file.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Seconds between spend-log batch writes (LiteLLM's
    /// `proxy_batch_write_at`; default 1). A crash loses at most this much
    /// spend.
    #[serde(default)]
    pub proxy_batch_write_at: Option<f64>,
    /// Seconds between budget-reset sweeps (default 10).
    #[serde(default)]
    pub budget_reset_interval: Option<f64>,
    /// `max_tokens` a budget reservation assumes for a request that sets
    /// none (default 4096).
    #[serde(default)]
    pub budget_reserve_max_tokens: Option<u64>,
    /// Folder of the spend journal, relative to the config file's folder
    /// (default `spend-journal`).
    #[serde(default)]
    pub spend_journal_dir: Option<String>,
    /// Spend logs held in memory, unwritten and unjournaled (store and
    /// journal both failing), before paid requests are refused with 503
    /// (default 100,000).
    #[serde(default)]
    pub max_unwritten_spend_logs: Option<usize>,
    /// Whether and how the gateway fetches `http(s)` image URLs a request
    /// names (the Ollama adapter must inline them): off unless
    /// `enabled: true`, and then only public addresses unless
    /// `allow_networks` lists more (see [`crate::fetch`]).
    #[serde(default)]
    pub image_url_fetch: Option<crate::fetch::FetchSettings>,
}
