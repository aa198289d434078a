//! The authentication layer: every route but the open ones (`/health`,
//! the admin UI's static files) needs the master key or a virtual key once
//! a master key is configured; the admin API needs the master key.
//! `/metrics` takes a key if one is presented (a wrong one is a 401) and
//! serves anyone: the master key sees every series, anyone else the
//! aggregates without key or team labels (`super::metrics`). The
//! [`Caller`] goes into the request's extensions for the handlers. Keys
//! are read from `Authorization: Bearer`, `x-api-key` (Anthropic SDKs) or
//! `x-litellm-api-key`; they are never logged.

use crate::access_log::AccessRecord;
use crate::control::{Caller, ControlError};
use crate::gateway_error::GatewayError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Paths anyone may call.
fn is_open(path: &str) -> bool {
    matches!(path, "/health" | "/ui" | "/ui/") || path.starts_with("/ui/")
}

/// Paths anyone may call, that serve more to a caller with a key.
fn is_key_optional(path: &str) -> bool {
    path == "/metrics"
}

/// Paths only the master key may call: LiteLLM's admin API.
pub(crate) fn is_admin(path: &str) -> bool {
    ["/key/", "/team/", "/user/", "/global/", "/spend/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The key a request presents, if any.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return Some(
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v),
        );
    }
    ["x-api-key", "x-litellm-api-key", "api-key"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
}

/// Middleware: authenticates, authorizes admin paths, stores the caller.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(control) = state.control() else {
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    };
    let path = req.uri().path().to_owned();
    if is_open(&path) {
        return next.run(req).await;
    }
    if is_key_optional(&path) && presented_key(req.headers()).is_none() {
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    }
    let caller = match control.authenticate(presented_key(req.headers())).await {
        Ok(caller) => caller,
        Err(e) => return refuse(&path, e),
    };
    if is_admin(&path) {
        let admin_check = if control.requires_keys() {
            control.require_master(&caller, &path)
        } else {
            Err(ControlError::InvalidRequest {
                message: "the admin API needs general_settings.master_key in the config".to_owned(),
                param: None,
            })
        };
        if let Err(e) = admin_check {
            return refuse(&path, e);
        }
    }
    if let Some(record) = req.extensions().get::<AccessRecord>() {
        record.set_key_label(caller.label());
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The error response, in Anthropic's shape on `/v1/messages`.
fn refuse(path: &str, e: ControlError) -> Response {
    let e = GatewayError::Control(e);
    if path == "/v1/messages" {
        crate::gateway_error::AnthropicError(e).into_response()
    } else {
        e.into_response()
    }
}
