//! Wiring: [`AppState`] (providers, the shared metrics registry, limits),
//! [`router`] (routes plus tower layers) and [`serve`] (the accept loop,
//! with `TCP_NODELAY` on every socket).
//!
//! `serve` sets `TCP_NODELAY` because without it every back-to-back
//! keep-alive request stalls about 44 ms (Nagle against the client's delayed
//! ACK), capping a gateway near 370 req/s (DESIGN.md).

use crate::control::ControlPlane;
use crate::error::ProviderError;
use crate::metrics::{self, HttpMetrics};
use crate::provider::Provider;
use crate::routes;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use axum::Router;
use prometheus::Registry;
use std::future::Future;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

/// Default request body limit: long prompts (128k tokens of text are about
/// 0.5 MiB) with room for inline images.
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    providers: Arc<[Arc<dyn Provider>]>,
    registry: Registry,
    http_metrics: HttpMetrics,
    body_limit: usize,
    control: Option<Arc<ControlPlane>>,
    access_log: bool,
}

impl AppState {
    /// State over `providers` (earlier ones win when two serve the same
    /// model name; the first one serves requests that name no model) and
    /// `registry`, which the caller shares with the engine so `/metrics`
    /// shows both. Fails if the HTTP metrics are already in `registry`.
    pub fn new(
        providers: Vec<Arc<dyn Provider>>,
        registry: Registry,
    ) -> Result<Self, prometheus::Error> {
        let http_metrics = HttpMetrics::register(&registry)?;
        Ok(Self {
            providers: providers.into(),
            registry,
            http_metrics,
            body_limit: DEFAULT_BODY_LIMIT,
            control: None,
            access_log: true,
        })
    }

    /// Puts the routes behind `control`: keys, budgets, limits, spend,
    /// cache, guardrails and the admin API. Without it the gateway serves
    /// everyone (`engine serve --model`).
    pub fn with_control(mut self, control: Arc<ControlPlane>) -> Self {
        self.control = Some(control);
        self
    }

    /// The control plane, when configured.
    pub fn control(&self) -> Option<&Arc<ControlPlane>> {
        self.control.as_ref()
    }

    /// Turns the per-request access log line ([`crate::access_log`]) on or
    /// off (`--disable-log-requests`); on by default.
    pub fn with_access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }

    /// Sets the largest accepted request body (413 above it).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The providers, in routing order.
    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// The shared Prometheus registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The provider serving `model`; an empty `model` means the first
    /// provider's first model and is filled in, so providers always see a
    /// name they serve.
    pub fn route_model(&self, model: &mut String) -> Result<Arc<dyn Provider>, ProviderError> {
        if model.is_empty() {
            let first = self
                .providers
                .iter()
                .find_map(|p| p.models().into_iter().next().map(|card| (p, card.id)));
            return match first {
                Some((provider, id)) => {
                    *model = id;
                    Ok(Arc::clone(provider))
                }
                None => Err(ProviderError::Unavailable {
                    message: "no models are being served".to_owned(),
                }),
            };
        }
        self.providers
            .iter()
            .find(|p| p.serves(model))
            .cloned()
            .ok_or_else(|| ProviderError::ModelNotFound {
                model: model.clone(),
            })
    }
}

/// The application: all routes, OpenAI-shaped 404/405 fallbacks, and the
/// layers (auth, HTTP metrics, body limit, tracing, the access log, the request id,
/// permissive CORS).
pub fn router(state: AppState) -> Router {
    routes::routes()
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.http_metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::from_fn_with_state(
            state.access_log,
            crate::access_log::track,
        ))
        .layer(axum::middleware::from_fn(crate::request_id::assign))
        .layer(CorsLayer::permissive())
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains
/// open connections. Sets `TCP_NODELAY` on every accepted socket.
pub async fn serve<F>(listener: TcpListener, router: Router, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let listener = listener.tap_io(tune_socket);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Options for every accepted socket: `TCP_NODELAY` (see the module docs).
fn tune_socket(tcp: &mut TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::warn!(error = %e, "could not set TCP_NODELAY");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn accepted_sockets_get_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (mut accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
        tune_socket(&mut accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
