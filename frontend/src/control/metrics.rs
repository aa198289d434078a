//! The control plane's Prometheus series: per model and key alias (the
//! alias, never the key), so a platform team sees who spends what.
//! Deployment health, cooldowns and upstream errors by provider are the
//! router's (`crate::router::metrics`).

use prometheus::{CounterVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Registered once per gateway.
#[derive(Clone)]
pub struct ControlMetrics {
    /// `gateway_requests_total{model, key_alias, status}`.
    pub requests: IntCounterVec,
    /// `gateway_request_duration_seconds{model}`: whole request, cache hits
    /// included.
    pub latency: HistogramVec,
    /// `gateway_tokens_total{model, key_alias, kind}` (`prompt`,
    /// `completion`).
    pub tokens: IntCounterVec,
    /// `gateway_spend_usd_total{model, key_alias, team}`.
    pub spend: CounterVec,
    /// `gateway_cache_total{model, result}` (`hit`, `miss`).
    pub cache: IntCounterVec,
    /// `gateway_auth_failures_total{reason}`.
    pub auth_failures: IntCounterVec,
    /// `gateway_rejections_total{reason}` (`rate_limit`, `budget`,
    /// `model_access`, `guardrail`).
    pub rejections: IntCounterVec,
    /// `gateway_spend_log_batches_total{outcome}`.
    pub spend_batches: IntCounterVec,
}

impl ControlMetrics {
    /// Creates and registers the series in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Inference requests by model, key alias and status",
            ),
            &["model", "key_alias", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Inference request duration at the gateway",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["model"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "gateway_tokens_total",
                "Tokens by model, key alias and kind",
            ),
            &["model", "key_alias", "kind"],
        )?;
        let spend = CounterVec::new(
            Opts::new(
                "gateway_spend_usd_total",
                "Spend in USD by model, key alias and team",
            ),
            &["model", "key_alias", "team"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "gateway_cache_total",
                "Response cache lookups by model and result",
            ),
            &["model", "result"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "gateway_auth_failures_total",
                "Refused credentials by reason",
            ),
            &["reason"],
        )?;
        let rejections = IntCounterVec::new(
            Opts::new(
                "gateway_rejections_total",
                "Requests refused by the control plane",
            ),
            &["reason"],
        )?;
        let spend_batches = IntCounterVec::new(
            Opts::new(
                "gateway_spend_log_batches_total",
                "Spend-log batch writes by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(spend.clone()))?;
        registry.register(Box::new(cache.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(spend_batches.clone()))?;
        Ok(Self {
            requests,
            latency,
            tokens,
            spend,
            cache,
            auth_failures,
            rejections,
            spend_batches,
        })
    }
}
