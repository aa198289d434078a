//! `GET /health`: 200 with an empty body while every provider can serve
//! (as vLLM answers), else the first provider's error (503 for
//! `Unavailable`) so a load balancer takes the replica out.

use crate::error::ProviderError;
use crate::gateway_error::GatewayError;
use crate::state::AppState;
use axum::extract::State;

/// `GET /health`.
pub async fn health(State(state): State<AppState>) -> Result<(), GatewayError> {
    if state.providers().is_empty() {
        return Err(ProviderError::Unavailable {
            message: "no model providers are configured".to_owned(),
        }
        .into());
    }
    for provider in state.providers() {
        provider.health()?;
    }
    Ok(())
}
