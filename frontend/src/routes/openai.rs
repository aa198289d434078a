//! OpenAI-compatible inference routes: `POST /v1/chat/completions`,
//! `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models`,
//! `GET /v1/models/{id}`.
//!
//! Each validates the body, routes by `model` to a provider, and answers
//! one JSON body or an SSE stream (the `sse` module); the provider emits the
//! `include_usage` chunk and this layer adds `data: [DONE]`. With a control
//! plane, the request is admitted first (model access, budgets, limits),
//! guarded, looked up in the response cache, and charged after; the cost
//! goes back in `x-litellm-response-cost`.

use crate::access_log::{self, AccessRecord};
use crate::control::demand::Demand;
use crate::control::gate::{meter, Gate};
use crate::control::{Caller, ControlPlane};
use crate::extract::OpenAiJson;
use crate::gateway_error::GatewayError;
use crate::guardrails::TextsMut;
use crate::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelCard, ModelList, StreamOptions,
};
use crate::sse;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::sync::Arc;

/// The response header LiteLLM puts each request's cost in (USD).
pub const COST_HEADER: &str = "x-litellm-response-cost";
/// The response header marking a cache hit.
pub const CACHE_HIT_HEADER: &str = "x-litellm-cache-hit";

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(access): Extension<AccessRecord>,
    OpenAiJson(mut req): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, GatewayError> {
    req.validate()?;
    let provider = state.route_model(&mut req.model)?;
    access.set_model(&req.model);
    let Some(control) = state.control().cloned() else {
        return if req.is_stream() {
            let client_wants_usage = req.include_usage();
            ask_for_usage(&mut req.stream_options);
            let chunks = provider.chat_stream(req).await?;
            Ok(sse::response(access_log::observe(
                chunks,
                access,
                client_wants_usage,
            )))
        } else {
            let resp = provider.chat(req).await?;
            access.set_usage(&resp.usage);
            Ok(Json(resp).into_response())
        };
    };
    let gate = Gate::new(
        Arc::clone(&control),
        control
            .admit_with(&caller, &req.model, &Demand::chat(&req))
            .await?,
    );
    let lookup = control.cache_lookup("chat", &mut req.extra)?;
    let guardrails = control.guardrails_for(&caller, &req.model, &mut req.extra)?;
    control
        .apply_guardrails(&guardrails, TextsMut::from_chat(&mut req))
        .await?;
    if req.is_stream() {
        let client_wants_usage = req.include_usage();
        ask_for_usage(&mut req.stream_options);
        let chunks = access_log::observe(provider.chat_stream(req).await?, access, true);
        return Ok(sse::response(meter(chunks, gate, client_wants_usage)));
    }
    let lookup = lookup.map(|l| l.keyed(&req));
    if let Some(hit) = cached(&control, lookup.as_ref(), &req.model).await {
        let resp: crate::openai::ChatCompletionResponse = hit;
        access.set_usage(&resp.usage);
        gate.finish(Some(&resp.usage), true);
        return Ok(with_cost(Json(resp).into_response(), 0.0, true));
    }
    let resp = provider.chat(req).await?;
    access.set_usage(&resp.usage);
    let cost = gate.finish(Some(&resp.usage), false);
    if let Some(lookup) = &lookup {
        control.store_cached(lookup, &resp).await;
    }
    Ok(with_cost(Json(resp).into_response(), cost, false))
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(access): Extension<AccessRecord>,
    OpenAiJson(mut req): OpenAiJson<CompletionRequest>,
) -> Result<Response, GatewayError> {
    req.validate()?;
    let provider = state.route_model(&mut req.model)?;
    access.set_model(&req.model);
    let Some(control) = state.control().cloned() else {
        return if req.is_stream() {
            let client_wants_usage = req.include_usage();
            ask_for_usage(&mut req.stream_options);
            let chunks = provider.completion_stream(req).await?;
            Ok(sse::response(access_log::observe(
                chunks,
                access,
                client_wants_usage,
            )))
        } else {
            let resp = provider.completion(req).await?;
            access.set_usage(&resp.usage);
            Ok(Json(resp).into_response())
        };
    };
    let gate = Gate::new(
        Arc::clone(&control),
        control
            .admit_with(&caller, &req.model, &Demand::completion(&req))
            .await?,
    );
    let lookup = control.cache_lookup("completion", &mut req.extra)?;
    let guardrails = control.guardrails_for(&caller, &req.model, &mut req.extra)?;
    control
        .apply_guardrails(&guardrails, TextsMut::from_completion(&mut req))
        .await?;
    if req.is_stream() {
        let client_wants_usage = req.include_usage();
        ask_for_usage(&mut req.stream_options);
        let chunks = access_log::observe(provider.completion_stream(req).await?, access, true);
        return Ok(sse::response(meter(chunks, gate, client_wants_usage)));
    }
    let lookup = lookup.map(|l| l.keyed(&req));
    if let Some(hit) = cached(&control, lookup.as_ref(), &req.model).await {
        let resp: crate::openai::CompletionResponse = hit;
        access.set_usage(&resp.usage);
        gate.finish(Some(&resp.usage), true);
        return Ok(with_cost(Json(resp).into_response(), 0.0, true));
    }
    let resp = provider.completion(req).await?;
    access.set_usage(&resp.usage);
    let cost = gate.finish(Some(&resp.usage), false);
    if let Some(lookup) = &lookup {
        control.store_cached(lookup, &resp).await;
    }
    Ok(with_cost(Json(resp).into_response(), cost, false))
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(access): Extension<AccessRecord>,
    OpenAiJson(mut req): OpenAiJson<EmbeddingRequest>,
) -> Result<Response, GatewayError> {
    req.validate()?;
    let provider = state.route_model(&mut req.model)?;
    access.set_model(&req.model);
    let gate = match state.control() {
        Some(control) => Some(Gate::new(
            Arc::clone(control),
            control
                .admit_with(&caller, &req.model, &Demand::embeddings(&req))
                .await?,
        )),
        None => None,
    };
    let base64 = req.wants_base64();
    let resp = provider.embeddings(req).await?;
    access.set_usage(&crate::openai::Usage::new(resp.usage.prompt_tokens, 0));
    let cost = gate.map(|g| {
        let usage = crate::openai::Usage::new(resp.usage.prompt_tokens, 0);
        g.finish(Some(&usage), false)
    });
    let response = if base64 {
        Json(resp.into_base64()).into_response()
    } else {
        Json(resp).into_response()
    };
    Ok(match cost {
        Some(cost) => with_cost(response, cost, false),
        None => response,
    })
}

/// `GET /v1/models`: every provider's cards, in provider order.
pub async fn models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList::new(
        state.providers().iter().flat_map(|p| p.models()).collect(),
    ))
}

/// `GET /v1/models/{id}`: one model's card (ids may hold `/`, as
/// `openai/gpt-4o` does), or 404 in OpenAI's shape (`model_not_found`).
pub async fn model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, GatewayError> {
    state
        .providers()
        .iter()
        .flat_map(|p| p.models())
        .find(|card| card.id == id)
        .map(Json)
        .ok_or_else(|| crate::error::ProviderError::ModelNotFound { model: id }.into())
}

/// Asks the provider for the final usage chunk (the spend needs it).
fn ask_for_usage(options: &mut Option<StreamOptions>) {
    options
        .get_or_insert_with(StreamOptions::default)
        .include_usage = Some(true);
}

/// The cached answer for `lookup`, counted as a hit or a miss.
async fn cached<T: serde::de::DeserializeOwned>(
    control: &ControlPlane,
    lookup: Option<&crate::control::response_cache::CacheLookup>,
    model: &str,
) -> Option<T> {
    let lookup = lookup?;
    let hit = control.cached(lookup).await;
    let result = if hit.is_some() { "hit" } else { "miss" };
    control
        .metrics()
        .cache
        .with_label_values(&[model, result])
        .inc();
    hit.and_then(|v| serde_json::from_value(v).ok())
}

/// Adds the cost and cache headers.
fn with_cost(mut response: Response, cost: f64, cache_hit: bool) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("{cost}")) {
        response.headers_mut().insert(COST_HEADER, v);
    }
    if cache_hit {
        response
            .headers_mut()
            .insert(CACHE_HIT_HEADER, HeaderValue::from_static("True"));
    }
    response
}
