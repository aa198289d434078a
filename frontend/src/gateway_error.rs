//! The one place a route's failure becomes an HTTP response: every error
//! a route can meet ([`GatewayError`]: a provider's, the control plane's,
//! a guardrail's, or the HTTP layer's own, such as a body that is not
//! JSON or an unknown route) mapped to a status, an OpenAI-style body and
//! `Retry-After`; on `/v1/messages` the same in Anthropic's shape
//! ([`AnthropicError`]). It sits above `error`, `control` and `guardrails`, which
//! know nothing of it.

use crate::control::ControlError;
use crate::error::{redacted, ErrorBody, ProviderError, INVALID_REQUEST, SERVER_ERROR};
use crate::guardrails::GuardrailError;
use crate::messages_api::error::error_body;
use crate::messages_api::types::ErrorResponse;
use axum::extract::rejection::JsonRejection;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Everything a route can fail with: a provider's error, or one the HTTP
/// layer found before any provider was asked.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The provider (or request validation) failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Keys, budgets, rate limits or the admin API refused.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// A guardrail refused the request or could not run.
    #[error(transparent)]
    Guardrail(#[from] GuardrailError),
    /// The body is not valid JSON, or not the shape the route expects
    /// (axum would answer 422; OpenAI and vLLM answer 400).
    #[error("{message}")]
    MalformedJson {
        /// serde's message, with the line and column or field path.
        message: String,
    },
    /// The request lacks `Content-Type: application/json`: `415`.
    #[error("{message}")]
    UnsupportedMediaType {
        /// What was expected.
        message: String,
    },
    /// The body is larger than the configured limit: `413`.
    #[error("{message}")]
    PayloadTooLarge {
        /// Says the limit was exceeded.
        message: String,
    },
    /// The body could not be read at all (the client broke off): `400`.
    #[error("{message}")]
    UnreadableBody {
        /// The transport's reason.
        message: String,
    },
    /// No route matches the path: `404`, as OpenAI's "Invalid URL".
    #[error("Invalid URL ({method} {path})")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The path exists but not for this method: `405`.
    #[error("Method {method} is not allowed for {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
}

impl GatewayError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Provider(e) => e.status(),
            Self::Control(e) => control_status(e),
            Self::Guardrail(e) => e.status(),
            Self::MalformedJson { .. } | Self::UnreadableBody { .. } => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The OpenAI-style body for this error.
    pub fn body(&self) -> ErrorBody {
        let code = match self {
            Self::Provider(e) => return e.body(),
            Self::Control(e) => return control_body(e),
            Self::Guardrail(e) => return e.body(),
            Self::MalformedJson { .. } => "invalid_json",
            Self::UnsupportedMediaType { .. } => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnreadableBody { .. } => "unreadable_body",
            Self::NotFound { .. } => "unknown_url",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
        };
        ErrorBody::new(self.to_string(), INVALID_REQUEST, None, Some(code))
    }
}

impl GatewayError {
    /// Seconds the client should wait before retrying, when known: an
    /// upstream's `Retry-After`, or the time to the next rate-limit window.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::Provider(
                ProviderError::Upstream { retry_after, .. }
                | ProviderError::RateLimited { retry_after, .. },
            ) => *retry_after,
            Self::Control(e) => e.retry_after().map(|d| d.as_secs().max(1)),
            _ => None,
        }
    }

    /// Adds `Retry-After` to `response` when [`Self::retry_after_secs`] is
    /// known (the OpenAI and Anthropic SDKs both honour it).
    pub fn set_retry_after(&self, response: &mut Response) {
        if let Some(secs) = self.retry_after_secs() {
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
        }
    }
}

/// A provider error on its own answers as the route would.
impl IntoResponse for ProviderError {
    fn into_response(self) -> Response {
        GatewayError::Provider(self).into_response()
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        self.set_retry_after(&mut response);
        response
    }
}

/// The status of each control-plane refusal (LiteLLM's where it has one:
/// 401 for keys, 400 `budget_exceeded`, 429 for limits).
fn control_status(e: &ControlError) -> StatusCode {
    match e {
        ControlError::MissingKey | ControlError::InvalidKey | ControlError::KeyExpired { .. } => {
            StatusCode::UNAUTHORIZED
        }
        ControlError::AdminOnly { .. } | ControlError::ModelNotAllowed { .. } => {
            StatusCode::FORBIDDEN
        }
        ControlError::BudgetExceeded { .. } | ControlError::InvalidRequest { .. } => {
            StatusCode::BAD_REQUEST
        }
        ControlError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ControlError::NotFound { .. } => StatusCode::NOT_FOUND,
        ControlError::Conflict { .. } => StatusCode::CONFLICT,
        ControlError::Backend { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The OpenAI-style body of a control-plane refusal: `type` and `code`
/// are stable (`authentication_error`/`invalid_api_key` as OpenAI's own
/// 401, `budget_exceeded` as LiteLLM's).
fn control_body(e: &ControlError) -> ErrorBody {
    let (kind, param, code) = match e {
        ControlError::MissingKey | ControlError::InvalidKey => {
            ("authentication_error", None, "invalid_api_key")
        }
        ControlError::KeyExpired { .. } => ("authentication_error", None, "expired_key"),
        ControlError::AdminOnly { .. } => ("permission_error", None, "admin_only"),
        ControlError::ModelNotAllowed { .. } => (
            "permission_error",
            Some("model".to_owned()),
            "model_not_allowed",
        ),
        ControlError::BudgetExceeded { .. } => ("budget_exceeded", None, "budget_exceeded"),
        ControlError::RateLimited { .. } => ("rate_limit_error", None, "rate_limit_exceeded"),
        ControlError::NotFound { .. } => ("not_found_error", None, "not_found"),
        ControlError::Conflict { .. } => (INVALID_REQUEST, None, "conflict"),
        ControlError::InvalidRequest { param, .. } => {
            (INVALID_REQUEST, param.clone(), "invalid_value")
        }
        ControlError::Backend { .. } => (SERVER_ERROR, None, "backend_unavailable"),
    };
    let message = match e {
        ControlError::Backend { .. } => redacted(
            e,
            "The gateway's key store or limits backend is unavailable; retry later.",
            false,
        ),
        _ => e.to_string(),
    };
    ErrorBody::new(message, kind, param, Some(code))
}

impl From<JsonRejection> for GatewayError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection {
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                Self::MalformedJson { message }
            }
            JsonRejection::MissingJsonContentType(_) => Self::UnsupportedMediaType { message },
            // Any other rejection is a failure to read the bytes; the body
            // limit shows up here as a 413 status.
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Self::PayloadTooLarge { message }
            }
            _ => Self::UnreadableBody { message },
        }
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

impl From<GuardrailError> for AnthropicError {
    fn from(e: GuardrailError) -> Self {
        Self(GatewayError::Guardrail(e))
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
    use crate::request_id::RequestId;
    use serde_json::json;

    fn body_json(e: &GatewayError) -> serde_json::Value {
        serde_json::to_value(e.body()).unwrap()
    }

    #[test]
    fn invalid_request_names_param() {
        let e: GatewayError = ProviderError::invalid("temperature", "bad temperature").into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(&e),
            json!({"error": {"message": "bad temperature", "type": "invalid_request_error",
                             "param": "temperature", "code": null}})
        );
    }

    #[test]
    fn context_length_is_openai_code() {
        let e: GatewayError = ProviderError::ContextLengthExceeded {
            message: "too long".into(),
        }
        .into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            body_json(&e),
            json!({"error": {"message": "too long", "type": "invalid_request_error",
                             "param": "messages", "code": "context_length_exceeded"}})
        );
    }

    #[test]
    fn model_not_found_is_404() {
        let e: GatewayError = ProviderError::ModelNotFound { model: "x".into() }.into();
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(&e),
            json!({"error": {"message": "The model `x` does not exist.",
                             "type": "invalid_request_error", "param": "model",
                             "code": "model_not_found"}})
        );
    }

    #[test]
    fn server_side_statuses() {
        let cases = [
            (
                ProviderError::Unavailable {
                    message: "down".into(),
                },
                503,
                "service_unavailable",
            ),
            (
                ProviderError::Internal {
                    message: "bug".into(),
                },
                500,
                "internal_error",
            ),
            (ProviderError::Timeout, 504, "timeout"),
            (
                ProviderError::RateLimited {
                    message: "slow down".into(),
                    retry_after: None,
                },
                429,
                "rate_limit_exceeded",
            ),
            (
                ProviderError::Upstream {
                    status: 418,
                    message: "teapot".into(),
                    retry_after: None,
                },
                418,
                "upstream_error",
            ),
            (
                ProviderError::Upstream {
                    status: 200,
                    message: "odd".into(),
                    retry_after: None,
                },
                400,
                "upstream_error",
            ),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.body().error.code.as_deref(), Some(code), "{e:?}");
        }
        assert_eq!(ProviderError::Timeout.body().error.kind, "server_error");
    }

    #[tokio::test]
    async fn internals_stay_in_the_log_and_the_body_quotes_the_request_id() {
        let leaky = [
            GatewayError::from(ProviderError::Unavailable {
                message: "cannot reach the upstream: error sending request for url \
                          (http://10.0.0.5:8000/v1/chat/completions)"
                    .into(),
            }),
            GatewayError::from(ProviderError::Internal {
                message: "worker crashed at http://10.0.0.5".into(),
            }),
            GatewayError::from(ControlError::Backend {
                message: "error returned from database: no such table: virtual_keys 10.0.0.5"
                    .into(),
            }),
        ];
        let id = RequestId::generate();
        for e in &leaky {
            let message = id.clone().scope(async { e.body().error.message }).await;
            assert!(!message.contains("10.0.0.5"), "{message}");
            assert!(!message.contains("database") && !message.contains("crashed"));
            assert!(message.contains(id.as_str()), "{message}");
            // Outside a request there is no id to quote.
            assert!(!e.body().error.message.contains("req-"));
        }
        // What the client must read to fix its request stays.
        let e = GatewayError::from(ControlError::InvalidKey);
        assert_eq!(e.body().error.message, "Invalid API key.");
        let e = GatewayError::from(ProviderError::Upstream {
            status: 503,
            message: "overloaded".into(),
            retry_after: None,
        });
        assert_eq!(e.body().error.message, "overloaded");
    }

    #[test]
    fn gateway_only_errors() {
        let e = GatewayError::NotFound {
            method: "GET".into(),
            path: "/nope".into(),
        };
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            body_json(&e),
            json!({"error": {"message": "Invalid URL (GET /nope)", "type": "invalid_request_error",
                             "param": null, "code": "unknown_url"}})
        );
        let e = GatewayError::MalformedJson {
            message: "x".into(),
        };
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = GatewayError::UnsupportedMediaType {
            message: "x".into(),
        };
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = GatewayError::MethodNotAllowed {
            method: "GET".into(),
            path: "/v1/chat/completions".into(),
        };
        assert_eq!(e.status(), StatusCode::METHOD_NOT_ALLOWED);
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
