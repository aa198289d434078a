//! Anthropic's error shape and the one mapping between HTTP statuses and
//! Anthropic error types, used both ways: the ingress answers a
//! [`GatewayError`] as `{"type":"error","error":{"type","message"}}` with
//! the same status, and the adapter turns a stream's `error` event (which
//! has a type but no status) back into a status.

use super::types::{ErrorObject, ErrorResponse};
use crate::error::{GatewayError, ProviderError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Anthropic's error `type` for an HTTP status
/// (<https://docs.anthropic.com/en/api/errors>).
pub fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 | 503 => "overloaded_error",
        s if s < 500 => "invalid_request_error",
        _ => "api_error",
    }
}

/// The HTTP status an Anthropic error `type` stands for (the inverse of
/// [`error_type`]); an unknown type is a 500.
pub fn status_of(kind: &str) -> u16 {
    match kind {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

/// The Anthropic error body for `status` and `message`.
pub fn error_body(status: StatusCode, message: impl Into<String>) -> ErrorResponse {
    ErrorResponse {
        kind: "error".to_owned(),
        error: ErrorObject {
            kind: error_type(status).to_owned(),
            message: message.into(),
        },
    }
}

/// A failure on the `/v1/messages` route, answered in Anthropic's shape
/// with the status the same failure has on the OpenAI routes.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AnthropicError(#[from] pub GatewayError);

impl From<ProviderError> for AnthropicError {
    fn from(e: ProviderError) -> Self {
        Self(GatewayError::Provider(e))
    }
}

impl AnthropicError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status()
    }

    /// The Anthropic-shaped body.
    pub fn body(&self) -> ErrorResponse {
        error_body(self.status(), self.0.body().error.message)
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), Json(self.body())).into_response();
        // Anthropic SDKs honour Retry-After on 429/529 as the OpenAI ones do.
        self.0.set_retry_after(&mut resp);
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn statuses_map_to_anthropic_types_and_back() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (529, "overloaded_error"),
        ] {
            let s = StatusCode::from_u16(status).unwrap();
            assert_eq!(error_type(s), kind);
            assert_eq!(status_of(kind), status);
        }
        assert_eq!(
            error_type(StatusCode::UNPROCESSABLE_ENTITY),
            "invalid_request_error"
        );
        assert_eq!(
            error_type(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error"
        );
        assert_eq!(status_of("something_new"), 500);
    }

    #[test]
    fn gateway_errors_keep_status_and_message() {
        let e: AnthropicError = ProviderError::Upstream {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(7),
        }
        .into();
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            serde_json::to_value(e.body()).unwrap(),
            serde_json::json!({"type": "error",
                "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
        let resp = e.into_response();
        assert_eq!(resp.headers()["retry-after"], "7");
        let e: AnthropicError = ProviderError::ModelNotFound { model: "x".into() }.into();
        assert_eq!(e.body().error.kind, "not_found_error");
    }
}
