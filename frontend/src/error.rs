//! Errors of the HTTP layer and the one place they become HTTP responses.
//!
//! Two enums, one per layer (STYLE.md, "Errors that users can read"):
//! [`ProviderError`] is what a model backend (the local engine, later the
//! remote adapters) reports; [`GatewayError`] adds what only the HTTP layer
//! can go wrong with (a body that is not JSON, an unknown route). Each
//! variant maps, exhaustively and in this file only, to a status and an
//! OpenAI-style body `{"error": {"message", "type", "param", "code"}}` with a
//! stable `type` and `code`, so clients (the OpenAI SDKs included) can branch
//! on them. Nothing here matches on error text.
//!
//! Mid-stream, once the `200` and the SSE headers are out, a status can no
//! longer change: the streaming route then writes one `data: {"error": ...}`
//! event with the same body and ends the stream without `data: [DONE]` (see
//! [`crate::routes::openai`]).
//!
//! Errors whose text may carry internals (a reqwest error naming an
//! internal `api_base`, a worker's crash, a database's message) are
//! [`ProviderError::Internal`], [`ProviderError::Unavailable`] and
//! [`ControlError::Backend`]: their bodies carry a stable message and the
//! request id ([`crate::request_id`]); the text goes to the log, under the
//! same id.

use crate::control::ControlError;
use crate::guardrails::GuardrailError;
use crate::request_id::RequestId;
use axum::extract::rejection::JsonRejection;
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

/// What a [`crate::Provider`] can fail with; each variant has a fixed HTTP
/// status and OpenAI error `type`/`code`, so backends never pick statuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The request is well-formed JSON but asks for something invalid (a
    /// parameter out of range, an empty message list): `400`, naming the
    /// offending parameter in `param` when there is one.
    #[error("{message}")]
    InvalidRequest {
        /// Human-readable reason, shown to the client as is.
        message: String,
        /// The request field at fault (`"temperature"`, `"max_tokens"`).
        param: Option<String>,
    },
    /// Prompt plus requested output does not fit the model's context:
    /// `400` with OpenAI's code `context_length_exceeded`, which SDKs and
    /// gateways (LiteLLM's fallbacks) recognize.
    #[error("{message}")]
    ContextLengthExceeded {
        /// Says the prompt length and `max_model_len`.
        message: String,
    },
    /// No provider serves this model name: `404`, code `model_not_found`.
    #[error("The model `{model}` does not exist.")]
    ModelNotFound {
        /// The name the client asked for.
        model: String,
    },
    /// Too many requests right now (queue full, upstream rate limit): `429`.
    #[error("{message}")]
    RateLimited {
        /// Why, and when to retry if known.
        message: String,
        /// Seconds after which a retry may succeed, sent as `Retry-After`
        /// (the local engine's full queue says 1).
        retry_after: Option<u64>,
    },
    /// The model refused the input or output on content-policy grounds
    /// (Azure's `content_filter`, Anthropic's refusals): `400` with code
    /// `content_policy_violation`, which LiteLLM's
    /// `content_policy_fallbacks` key on.
    #[error("{message}")]
    ContentPolicy {
        /// The upstream's explanation.
        message: String,
    },
    /// The backend cannot serve at all (its workers died, it is shutting
    /// down, the upstream cannot be reached): `503`; `/health` answers 503
    /// with it too. The message is logged, not shown to the client.
    #[error("{message}")]
    Unavailable {
        /// What is down.
        message: String,
    },
    /// The model_name is in the config, but none of its `model_list`
    /// entries could be built (the provider cannot be inferred, a required
    /// parameter is missing): `503`, code `model_not_servable`, while the
    /// config's other models serve. Why is in the startup log, not in the
    /// answer (it describes the server's configuration).
    #[error(
        "The model `{model}` is configured but cannot be served: its model_list entry is \
         invalid (the server logged why at startup)."
    )]
    Unservable {
        /// The name the client asked for.
        model: String,
    },
    /// A bug or unexpected failure inside the backend: `500`. The message
    /// is logged, not shown to the client.
    #[error("{message}")]
    Internal {
        /// What failed; must not leak secrets.
        message: String,
    },
    /// The backend did not answer in time: `504`.
    #[error("the request timed out")]
    Timeout,
    /// A remote provider answered with an error status that none of the
    /// variants above captures; the status is passed through (clamped to
    /// 400..=599) so the client sees what the upstream said.
    #[error("{message}")]
    Upstream {
        /// The upstream HTTP status.
        status: u16,
        /// The upstream error message.
        message: String,
        /// The upstream's `Retry-After`, in seconds, when it sent one (429
        /// and 503); the router waits at least this long before retrying.
        retry_after: Option<u64>,
    },
}

impl ProviderError {
    /// A `400 invalid_request_error` naming `param`; the common validation
    /// failure, so it gets a short constructor.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } | Self::ContextLengthExceeded { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::ModelNotFound { .. } => StatusCode::NOT_FOUND,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ContentPolicy { .. } => StatusCode::BAD_REQUEST,
            Self::Unavailable { .. } | Self::Unservable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { status, .. } => {
                StatusCode::from_u16((*status).clamp(400, 599)).unwrap_or(StatusCode::BAD_GATEWAY)
            }
        }
    }

    /// The OpenAI-style body for this error (also the payload of a
    /// mid-stream SSE error event).
    pub fn body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            Self::InvalidRequest { param, .. } => (INVALID_REQUEST, param.clone(), None),
            Self::ContextLengthExceeded { .. } => (
                INVALID_REQUEST,
                Some("messages".to_owned()),
                Some("context_length_exceeded"),
            ),
            Self::ModelNotFound { .. } => (
                INVALID_REQUEST,
                Some("model".to_owned()),
                Some("model_not_found"),
            ),
            Self::RateLimited { .. } => ("rate_limit_error", None, Some("rate_limit_exceeded")),
            Self::Unavailable { .. } => (SERVER_ERROR, None, Some("service_unavailable")),
            Self::Unservable { .. } => (
                SERVER_ERROR,
                Some("model".to_owned()),
                Some("model_not_servable"),
            ),
            Self::Internal { .. } => (SERVER_ERROR, None, Some("internal_error")),
            Self::Timeout => (SERVER_ERROR, None, Some("timeout")),
            Self::ContentPolicy { .. } => (INVALID_REQUEST, None, Some("content_policy_violation")),
            Self::Upstream { status: 401, .. } => {
                ("authentication_error", None, Some("invalid_api_key"))
            }
            Self::Upstream { status: 403, .. } => {
                ("permission_error", None, Some("permission_denied"))
            }
            Self::Upstream { status: 404, .. } => ("not_found_error", None, Some("not_found")),
            Self::Upstream { status: 429, .. } => {
                ("rate_limit_error", None, Some("rate_limit_exceeded"))
            }
            Self::Upstream { status, .. } if *status < 500 => {
                (INVALID_REQUEST, None, Some("upstream_error"))
            }
            Self::Upstream { .. } => (SERVER_ERROR, None, Some("upstream_error")),
        };
        let message = match self {
            Self::Internal { .. } => redacted(self, "The server had an internal error.", true),
            Self::Unavailable { .. } => redacted(
                self,
                "The model backend is unavailable; retry later.",
                false,
            ),
            _ => self.to_string(),
        };
        ErrorBody::new(message, kind, param, code)
    }
}

/// The client's message for an error whose own text stays in the log:
/// `public` and the request id. Logs `detail` under that id (`error` level
/// for bugs, `warn` for an unavailable backend).
fn redacted(detail: &dyn std::fmt::Display, public: &str, bug: bool) -> String {
    let id = RequestId::current();
    let request_id = id.as_ref().map_or("", RequestId::as_str);
    if bug {
        tracing::error!(request_id, error = %detail, "{public}");
    } else {
        tracing::warn!(request_id, error = %detail, "{public}");
    }
    match id {
        Some(id) => format!("{public} Request id: {id}."),
        None => public.to_owned(),
    }
}

const INVALID_REQUEST: &str = "invalid_request_error";
const SERVER_ERROR: &str = "server_error";

impl IntoResponse for ProviderError {
    fn into_response(self) -> Response {
        GatewayError::Provider(self).into_response()
    }
}

/// The OpenAI error envelope `{"error": {...}}`; public so the remote
/// adapters can parse upstream errors and tests can assert on bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`], field for field OpenAI's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Human-readable reason.
    pub message: String,
    /// Stable class: `invalid_request_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, or `null`.
    pub param: Option<String>,
    /// Stable machine code (`model_not_found`, ...), or `null`.
    pub code: Option<String>,
}

impl ErrorBody {
    /// Builds a body; `kind` is the OpenAI `type`.
    pub fn new(
        message: impl Into<String>,
        kind: &str,
        param: Option<String>,
        code: Option<&str>,
    ) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param,
                code: code.map(str::to_owned),
            },
        }
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
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
}
