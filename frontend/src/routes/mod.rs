//! The routes, one file per API family, and the two fallbacks (unknown
//! path, wrong method) that keep every error OpenAI-shaped. Handlers are
//! short: extract, validate, pick a provider, call it, serialize;
//! cross-cutting work (tracing, limits, metrics) is in tower layers
//! ([`crate::app::router`]). The paths themselves are in
//! [`crate::route_paths`], which the HTTP metrics also label by.

pub mod admin;
pub mod anthropic;
pub(crate) mod auth;
pub mod health;
pub mod metrics;
pub mod openai;
pub mod tokenize;
pub mod ui;

use crate::gateway_error::GatewayError;
use crate::route_paths::PATHS;
use crate::state::AppState;
use axum::http::{Method, Uri};
use axum::routing::{get, post};
use axum::Router;

/// All API routes (state not yet applied).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(PATHS[0], post(openai::chat_completions))
        .route(PATHS[1], post(openai::completions))
        .route(PATHS[2], get(openai::models))
        .route(PATHS[3], get(health::health))
        .route(PATHS[4], get(metrics::metrics))
        .route(PATHS[5], post(tokenize::tokenize))
        .route(PATHS[6], post(tokenize::detokenize))
        .route(PATHS[7], post(openai::embeddings))
        .route(PATHS[8], post(anthropic::messages))
        .route(PATHS[9], post(admin::key_generate))
        .route(PATHS[10], get(admin::key_info))
        .route(PATHS[11], post(admin::key_update))
        .route(PATHS[12], post(admin::key_delete))
        .route(PATHS[13], get(admin::key_list))
        .route(PATHS[14], post(admin::team_new))
        .route(PATHS[15], get(admin::team_info))
        .route(PATHS[16], get(admin::team_list))
        .route(PATHS[17], post(admin::team_delete))
        .route(PATHS[18], post(admin::user_new))
        .route(PATHS[19], get(admin::user_info))
        .route(PATHS[20], get(admin::global_spend))
        .route(PATHS[21], get(admin::global_spend_report))
        .route(PATHS[22], get(admin::spend_logs))
        .route(PATHS[23], get(openai::model))
        .merge(ui::routes())
}

/// Unknown path: 404 in OpenAI's shape ("Invalid URL (GET /x)").
pub(crate) async fn not_found(method: Method, uri: Uri) -> GatewayError {
    GatewayError::NotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Known path, wrong method: 405 in OpenAI's shape.
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> GatewayError {
    GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}
