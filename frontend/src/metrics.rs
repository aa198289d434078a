//! HTTP-level metrics: requests by route, method and status, and a latency
//! histogram, recorded by a middleware into the Prometheus registry that
//! the caller shares with the engine (which registers its own `vllm:`
//! metrics there: running/waiting requests, KV cache usage, prefix cache
//! hits, TTFT, time per output token, e2e latency, token counters).
//!
//! Names follow vLLM's HTTP instrumentation (`http_requests_total`,
//! `http_request_duration_seconds` with `handler`, `method`, `status`), so
//! existing dashboards work. Latency here ends when the response headers
//! are ready: for streams that is time to the first byte, and the engine's
//! `vllm:e2e_request_latency_seconds` covers the whole generation.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::time::Instant;

/// The frontend's own metrics; cheap to clone (handles into the registry).
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `registry`; fails if they
    /// are already registered there (one frontend per registry).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by handler, method and status.",
            ),
            &["handler", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response headers, by handler and method.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ]),
            &["handler", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    /// Records one finished request.
    pub fn observe(&self, handler: &str, method: &Method, status: u16, seconds: f64) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[handler, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[handler, method])
            .observe(seconds);
    }
}

/// Middleware recording every request, unknown routes included (as handler
/// `"other"`, so random paths cannot blow up label cardinality).
pub(crate) async fn track(
    State(metrics): State<HttpMetrics>,
    req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let handler = crate::route_paths::handler_label(req.uri().path());
    let response = next.run(req).await;
    metrics.observe(
        handler,
        &method,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

/// Standard methods by name, anything else as `"other"` (bounded labels).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn registers_and_encodes_with_vllm_metrics_alongside() {
        let registry = Registry::new();
        let m = HttpMetrics::register(&registry).unwrap();
        // The engine's metrics live in the same registry; `:` is valid.
        let running = prometheus::IntGauge::new("vllm:num_requests_running", "running").unwrap();
        registry.register(Box::new(running.clone())).unwrap();
        running.set(3);
        m.observe("/v1/models", &Method::GET, 200, 0.01);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text
            .contains(r#"http_requests_total{handler="/v1/models",method="GET",status="200"} 1"#));
        assert!(text.contains("vllm:num_requests_running 3"));
        assert!(HttpMetrics::register(&registry).is_err());
    }
}
