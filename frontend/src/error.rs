//! The errors every layer below the routes reports, and their
//! OpenAI-style bodies.
//!
//! [`ProviderError`] is what a model backend (the local engine, a remote
//! adapter, request validation) reports. Each variant maps, exhaustively
//! and in this file only, to a status and an OpenAI-style body `{"error":
//! {"message", "type", "param", "code"}}` ([`ErrorBody`]) with a stable
//! `type` and `code`, so clients (the OpenAI SDKs included) can branch on
//! them. Nothing here matches on error text. This module imports nothing
//! above it: the HTTP-level [`crate::gateway_error::GatewayError`] adds the
//! control plane's and the guardrails' refusals on top.
//!
//! Mid-stream, once the `200` and the SSE headers are out, a status can no
//! longer change: the streaming route then writes one `data: {"error": ...}`
//! event with the same body and ends the stream without `data: [DONE]` (see
//! [`crate::routes::openai`]).
//!
//! Errors whose text may carry internals (a reqwest error naming an
//! internal `api_base`, a worker's crash, a database's message) are
//! [`ProviderError::Internal`] and [`ProviderError::Unavailable`] (and the
//! control plane's `Backend`): their bodies carry a stable message and the
//! request id ([`crate::request_id`]); the text goes to the log, under the
//! same id.

use crate::request_id::RequestId;
use axum::http::StatusCode;
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
pub(crate) fn redacted(detail: &dyn std::fmt::Display, public: &str, bug: bool) -> String {
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

pub(crate) const INVALID_REQUEST: &str = "invalid_request_error";
pub(crate) const SERVER_ERROR: &str = "server_error";

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
