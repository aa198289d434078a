//! Anthropic's error shape and the one mapping between HTTP statuses and
//! Anthropic error types, used both ways: the ingress answers a route's
//! failure as `{"type":"error","error":{"type","message"}}` with the same
//! status (`crate::gateway_error::AnthropicError`), and the adapter turns a
//! stream's `error` event (which has a type but no status) back into a
//! status.

use super::types::{ErrorObject, ErrorResponse};
use axum::http::StatusCode;

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
}
