//! The router's Prometheus metrics, registered in the registry the HTTP
//! layer and the engine share, so `/metrics` shows cooldowns, retries and
//! fallbacks next to request counts. Labels use the deployment id
//! (`model_info.id` or `{model_name}-{index}`), never an api_base or key.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Handles to the router's metrics; cheap to clone.
#[derive(Clone)]
pub struct RouterMetrics {
    /// Cooldowns started, per deployment.
    pub cooldowns: IntCounterVec,
    /// 1 while a deployment is cooling down.
    pub in_cooldown: IntGaugeVec,
    /// Retries, per model_name.
    pub retries: IntCounterVec,
    /// Fallbacks taken, from one model_name to another.
    pub fallbacks: IntCounterVec,
    /// Failed upstream attempts by status.
    pub upstream_errors: IntCounterVec,
    /// Latency of successful attempts (time to first chunk for streams).
    pub upstream_latency: HistogramVec,
}

impl RouterMetrics {
    /// Registers every metric in `registry`; fails if they already are.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let dep = &["model_name", "deployment"];
        let m = Self {
            cooldowns: IntCounterVec::new(
                Opts::new(
                    "gateway_deployment_cooldowns_total",
                    "Times a deployment was put in cooldown",
                ),
                dep,
            )?,
            in_cooldown: IntGaugeVec::new(
                Opts::new(
                    "gateway_deployment_in_cooldown",
                    "1 while the deployment is cooling down",
                ),
                dep,
            )?,
            retries: IntCounterVec::new(
                Opts::new("gateway_retries_total", "Retries of upstream calls"),
                &["model_name"],
            )?,
            fallbacks: IntCounterVec::new(
                Opts::new("gateway_fallbacks_total", "Fallbacks to another model_name"),
                &["from", "to"],
            )?,
            upstream_errors: IntCounterVec::new(
                Opts::new(
                    "gateway_upstream_errors_total",
                    "Failed upstream attempts by HTTP status",
                ),
                &["model_name", "deployment", "status"],
            )?,
            upstream_latency: HistogramVec::new(
                HistogramOpts::new(
                    "gateway_upstream_latency_seconds",
                    "Latency of successful upstream attempts (streams: to first chunk)",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                dep,
            )?,
        };
        registry.register(Box::new(m.cooldowns.clone()))?;
        registry.register(Box::new(m.in_cooldown.clone()))?;
        registry.register(Box::new(m.retries.clone()))?;
        registry.register(Box::new(m.fallbacks.clone()))?;
        registry.register(Box::new(m.upstream_errors.clone()))?;
        registry.register(Box::new(m.upstream_latency.clone()))?;
        Ok(m)
    }
}
