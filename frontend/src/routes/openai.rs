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
use crate::control::demand::OutputChunk;
use crate::control::gate::{meter, Gate};
use crate::control::{Caller, ControlPlane};
use crate::extract::OpenAiJson;
use crate::gateway_error::GatewayError;
use crate::guardrails::TextsMut;
use crate::openai::{
    ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModelCard, ModelList, StreamOptions,
};
use crate::provider::generation::Generation;
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
    OpenAiJson(req): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, GatewayError> {
    generate(state, caller, access, req).await
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Extension(access): Extension<AccessRecord>,
    OpenAiJson(req): OpenAiJson<CompletionRequest>,
) -> Result<Response, GatewayError> {
    generate(state, caller, access, req).await
}

/// What the control plane reads from a chat or text completion.
trait Governed: Generation {
    /// Its size before it runs, for budgets and limits.
    fn demand(&self) -> Demand;
    /// The texts guardrails check and may rewrite.
    fn texts_mut(&mut self) -> TextsMut<'_>;
}

impl Governed for ChatCompletionRequest {
    fn demand(&self) -> Demand {
        Demand::chat(self)
    }
    fn texts_mut(&mut self) -> TextsMut<'_> {
        TextsMut::from_chat(self)
    }
}

impl Governed for CompletionRequest {
    fn demand(&self) -> Demand {
        Demand::completion(self)
    }
    fn texts_mut(&mut self) -> TextsMut<'_> {
        TextsMut::from_completion(self)
    }
}

/// Chat and text completions: validate, route by model, and without a
/// control plane just answer; with one, admit (budgets, limits), apply
/// guardrails, answer from the response cache where it holds the answer,
/// and settle the cost when the answer (or the stream) ends.
async fn generate<R>(
    state: AppState,
    caller: Caller,
    access: AccessRecord,
    mut req: R,
) -> Result<Response, GatewayError>
where
    R: Governed,
    R::Chunk: OutputChunk,
{
    req.validate()?;
    let provider = state.route_model(req.model_mut())?;
    access.set_model(req.model());
    let Some(control) = state.control().cloned() else {
        return if req.is_stream() {
            let client_wants_usage = req.include_usage();
            ask_for_usage(req.stream_options_mut());
            let chunks = req.stream(provider.as_ref()).await?;
            Ok(sse::response(access_log::observe(
                chunks,
                access,
                client_wants_usage,
            )))
        } else {
            let resp = req.answer(provider.as_ref()).await?;
            access.set_usage(R::usage(&resp));
            Ok(Json(resp).into_response())
        };
    };
    let model = req.model().to_owned();
    let gate = Gate::new(
        Arc::clone(&control),
        control.admit_with(&caller, &model, &req.demand()).await?,
    );
    let lookup = control.cache_lookup(R::KIND, req.extra_mut())?;
    let guardrails = control.guardrails_for(&caller, &model, req.extra_mut())?;
    control
        .apply_guardrails(&guardrails, req.texts_mut())
        .await?;
    if req.is_stream() {
        let client_wants_usage = req.include_usage();
        ask_for_usage(req.stream_options_mut());
        let chunks = access_log::observe(req.stream(provider.as_ref()).await?, access, true);
        return Ok(sse::response(meter(chunks, gate, client_wants_usage)));
    }
    let lookup = lookup.map(|l| l.keyed(&req));
    if let Some(hit) = cached::<R::Response>(&control, lookup.as_ref(), &model).await {
        access.set_usage(R::usage(&hit));
        gate.finish(Some(R::usage(&hit)), true);
        return Ok(with_cost(Json(hit).into_response(), 0.0, true));
    }
    let resp = req.answer(provider.as_ref()).await?;
    access.set_usage(R::usage(&resp));
    let cost = gate.finish(Some(R::usage(&resp)), false);
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
