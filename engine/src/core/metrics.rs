//! The engine's Prometheus metrics, named as vLLM names them so existing
//! dashboards work: `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`,
//! `vllm:time_to_first_token_seconds`, ...

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry};

/// Handles to every engine metric, registered in the server's registry.
#[derive(Clone)]
pub struct EngineMetrics {
    pub num_requests_running: IntGauge,
    pub num_requests_waiting: IntGauge,
    /// Fraction in [0, 1], as vLLM reports it (despite the name).
    pub kv_cache_usage_perc: prometheus::Gauge,
    pub prefix_cache_queries: IntCounter,
    pub prefix_cache_hits: IntCounter,
    pub num_preemptions: IntCounter,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub time_to_first_token: Histogram,
    pub time_per_output_token: Histogram,
    pub e2e_request_latency: Histogram,
    pub request_success: IntCounter,
}

fn buckets(v: &[f64]) -> Vec<f64> {
    v.to_vec()
}

impl EngineMetrics {
    /// Creates the metrics (labelled with `model_name`) and registers them.
    pub fn register(registry: &Registry, model_name: &str) -> prometheus::Result<Self> {
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_label("model_name", model_name);
        let hist = |name: &str, help: &str, b: &[f64]| {
            HistogramOpts::new(name, help)
                .const_label("model_name", model_name)
                .buckets(buckets(b))
        };
        let latency = [
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0,
        ];
        let m = Self {
            num_requests_running: IntGauge::with_opts(opts(
                "vllm:num_requests_running",
                "Requests in the running batch.",
            ))?,
            num_requests_waiting: IntGauge::with_opts(opts(
                "vllm:num_requests_waiting",
                "Requests waiting to be scheduled.",
            ))?,
            kv_cache_usage_perc: prometheus::Gauge::with_opts(opts(
                "vllm:kv_cache_usage_perc",
                "KV cache usage; 1 means 100 percent.",
            ))?,
            prefix_cache_queries: IntCounter::with_opts(opts(
                "vllm:prefix_cache_queries_total",
                "Prompt tokens looked up in the prefix cache.",
            ))?,
            prefix_cache_hits: IntCounter::with_opts(opts(
                "vllm:prefix_cache_hits_total",
                "Prompt tokens found in the prefix cache.",
            ))?,
            num_preemptions: IntCounter::with_opts(opts(
                "vllm:num_preemptions_total",
                "Preemptions since start.",
            ))?,
            prompt_tokens: IntCounter::with_opts(opts(
                "vllm:prompt_tokens_total",
                "Prefill tokens processed.",
            ))?,
            generation_tokens: IntCounter::with_opts(opts(
                "vllm:generation_tokens_total",
                "Generation tokens produced.",
            ))?,
            time_to_first_token: Histogram::with_opts(hist(
                "vllm:time_to_first_token_seconds",
                "Time to first token.",
                &latency,
            ))?,
            time_per_output_token: Histogram::with_opts(hist(
                "vllm:time_per_output_token_seconds",
                "Time per output token after the first.",
                &latency,
            ))?,
            e2e_request_latency: Histogram::with_opts(hist(
                "vllm:e2e_request_latency_seconds",
                "End-to-end request latency.",
                &latency,
            ))?,
            request_success: IntCounter::with_opts(opts(
                "vllm:request_success_total",
                "Requests finished normally.",
            ))?,
        };
        registry.register(Box::new(m.num_requests_running.clone()))?;
        registry.register(Box::new(m.num_requests_waiting.clone()))?;
        registry.register(Box::new(m.kv_cache_usage_perc.clone()))?;
        registry.register(Box::new(m.prefix_cache_queries.clone()))?;
        registry.register(Box::new(m.prefix_cache_hits.clone()))?;
        registry.register(Box::new(m.num_preemptions.clone()))?;
        registry.register(Box::new(m.prompt_tokens.clone()))?;
        registry.register(Box::new(m.generation_tokens.clone()))?;
        registry.register(Box::new(m.time_to_first_token.clone()))?;
        registry.register(Box::new(m.time_per_output_token.clone()))?;
        registry.register(Box::new(m.e2e_request_latency.clone()))?;
        registry.register(Box::new(m.request_success.clone()))?;
        Ok(m)
    }
}
