//! Wiring: [`AppState`] (providers, the shared metrics registry, limits),
//! [`router`] (routes plus tower layers) and [`serve`] (the accept loop,
//! with `TCP_NODELAY` on every socket).
//!
//! `serve` sets `TCP_NODELAY` because without it every back-to-back
//! keep-alive request stalls about 44 ms (Nagle against the client's delayed
//! ACK), capping a gateway near 370 req/s (DESIGN.md).

use crate::metrics;
use crate::routes;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::serve::ListenerExt;
use axum::Router;
use std::future::Future;
use tokio::net::{TcpListener, TcpStream};
use tower_http::cors::CorsLayer;

/// The application: all routes, OpenAI-shaped 404/405 fallbacks, and the
/// layers (auth, HTTP metrics, body limit, the access log, the request id
/// with its tracing span, permissive CORS). No `tower_http` trace layer:
/// its debug events said what the access log line says, at a cost on
/// every request.
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
