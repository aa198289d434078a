//! vLLM's tokenizer routes: `POST /tokenize`, `POST /detokenize`. Without
//! a `model` they use the first provider's first model.
//!
//! With a control plane they pass the same admission as inference (the
//! key's model list, budget and rpm limit), so a key cannot use them to
//! reach a model it may not call or to spend tokenizer time without limit;
//! they are settled at no cost.

use crate::control::gate::Gate;
use crate::control::Caller;
use crate::extract::OpenAiJson;
use crate::gateway_error::GatewayError;
use crate::openai::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};
use crate::state::AppState;
use axum::extract::State;
use axum::{Extension, Json};
use std::sync::Arc;

/// `POST /tokenize`.
pub async fn tokenize(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OpenAiJson(mut req): OpenAiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, GatewayError> {
    req.validate()?;
    let mut model = req.model.take().unwrap_or_default();
    let provider = state.route_model(&mut model)?;
    let gate = admit(&state, &caller, &model).await?;
    req.model = Some(model);
    let resp = provider.tokenize(req).await?;
    if let Some(gate) = gate {
        gate.finish(None, false);
    }
    Ok(Json(resp))
}

/// `POST /detokenize`.
pub async fn detokenize(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    OpenAiJson(mut req): OpenAiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, GatewayError> {
    let mut model = req.model.take().unwrap_or_default();
    let provider = state.route_model(&mut model)?;
    let gate = admit(&state, &caller, &model).await?;
    req.model = Some(model);
    let resp = provider.detokenize(req).await?;
    if let Some(gate) = gate {
        gate.finish(None, false);
    }
    Ok(Json(resp))
}

/// The admission of a tokenizer call, when a control plane is configured.
async fn admit(
    state: &AppState,
    caller: &Caller,
    model: &str,
) -> Result<Option<Gate>, GatewayError> {
    match state.control() {
        Some(control) => Ok(Some(Gate::new(
            Arc::clone(control),
            control.admit(caller, model).await?,
        ))),
        None => Ok(None),
    }
}
