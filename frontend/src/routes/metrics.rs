//! `GET /metrics`: the shared Prometheus registry in text format (the
//! frontend's HTTP metrics and the engine's `vllm:` metrics together).

use crate::app::AppState;
use crate::error::{GatewayError, ProviderError};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use prometheus::{Encoder, TextEncoder};

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, GatewayError> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    encoder
        .encode(&state.registry().gather(), &mut body)
        .map_err(|e| ProviderError::Internal {
            message: format!("could not encode metrics: {e}"),
        })?;
    Ok(([(CONTENT_TYPE, encoder.format_type().to_owned())], body).into_response())
}
