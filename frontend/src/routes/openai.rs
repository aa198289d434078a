//! OpenAI-compatible inference routes: `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models`.
//!
//! Each validates the body, routes by `model` to a provider, and answers
//! one JSON body or an SSE stream (the `sse` module); the provider emits the
//! `include_usage` chunk and this layer adds `data: [DONE]`.

use crate::app::AppState;
use crate::error::GatewayError;
use crate::extract::OpenAiJson;
use crate::openai::{ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelList};
use crate::sse;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    OpenAiJson(mut req): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, GatewayError> {
    req.validate()?;
    let provider = state.route_model(&mut req.model)?;
    if req.is_stream() {
        Ok(sse::response(provider.chat_stream(req).await?))
    } else {
        Ok(Json(provider.chat(req).await?).into_response())
    }
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    OpenAiJson(mut req): OpenAiJson<CompletionRequest>,
) -> Result<Response, GatewayError> {
    req.validate()?;
    let provider = state.route_model(&mut req.model)?;
    if req.is_stream() {
        Ok(sse::response(provider.completion_stream(req).await?))
    } else {
        Ok(Json(provider.completion(req).await?).into_response())
    }
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    OpenAiJson(mut req): OpenAiJson<EmbeddingRequest>,
) -> Result<Response, GatewayError> {
    req.validate()?;
    let provider = state.route_model(&mut req.model)?;
    let base64 = req.wants_base64();
    let resp = provider.embeddings(req).await?;
    if base64 {
        Ok(Json(resp.into_base64()).into_response())
    } else {
        Ok(Json(resp).into_response())
    }
}

/// `GET /v1/models`: every provider's cards, in provider order.
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList::new(
        state.providers().iter().flat_map(|p| p.models()).collect(),
    ))
}
