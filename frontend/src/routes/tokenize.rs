//! vLLM's tokenizer routes: `POST /tokenize`, `POST /detokenize`. Without
//! a `model` they use the first provider's first model.

use crate::app::AppState;
use crate::error::GatewayError;
use crate::extract::OpenAiJson;
use crate::openai::{DetokenizeRequest, DetokenizeResponse, TokenizeRequest, TokenizeResponse};
use axum::extract::State;
use axum::Json;

/// `POST /tokenize`.
pub async fn tokenize(
    State(state): State<AppState>,
    OpenAiJson(mut req): OpenAiJson<TokenizeRequest>,
) -> Result<Json<TokenizeResponse>, GatewayError> {
    req.validate()?;
    let mut model = req.model.take().unwrap_or_default();
    let provider = state.route_model(&mut model)?;
    req.model = Some(model);
    Ok(Json(provider.tokenize(req).await?))
}

/// `POST /detokenize`.
pub async fn detokenize(
    State(state): State<AppState>,
    OpenAiJson(mut req): OpenAiJson<DetokenizeRequest>,
) -> Result<Json<DetokenizeResponse>, GatewayError> {
    let mut model = req.model.take().unwrap_or_default();
    let provider = state.route_model(&mut model)?;
    req.model = Some(model);
    Ok(Json(provider.detokenize(req).await?))
}
