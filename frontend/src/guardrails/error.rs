//! What a guardrail can refuse a request with, and what a `guardrails:`
//! list can be wrong with. Each request-time error has a fixed status and
//! an OpenAI-style body here, so the HTTP layer maps it with one `From`.

use crate::error::ErrorBody;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The error `type` of a request a guardrail refused; stable so clients
/// can tell a policy refusal from a malformed request.
pub const GUARDRAIL_VIOLATION: &str = "guardrail_violation";

/// Why a request did not pass its guardrails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardrailError {
    /// A guardrail refused the request (a banned keyword, a PII entity set
    /// to `BLOCK`, a webhook answering `BLOCKED`): `400`, type
    /// `guardrail_violation`, code `guardrail_blocked`, as LiteLLM answers
    /// 400 with the guardrail's message. The message names the guardrail
    /// and never echoes the prompt.
    #[error("Request blocked by guardrail `{guardrail}`: {reason}")]
    Blocked {
        /// The `guardrail_name` that refused.
        guardrail: String,
        /// Why, in words safe to show the client.
        reason: String,
    },
    /// The request (or its key or model) names a guardrail that is not
    /// configured: `400`, param `guardrails`.
    #[error("unknown guardrail `{name}`; configured guardrails: {known}")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The configured names, comma-separated.
        known: String,
    },
    /// The request has text the guardrails cannot read (a prompt of token
    /// ids): `400`, since passing it unchecked would bypass them.
    #[error("guardrail `{guardrail}` cannot inspect {what}; send text instead")]
    Uninspectable {
        /// The first guardrail that would have run.
        guardrail: String,
        /// What could not be read (`a prompt of token ids`).
        what: String,
    },
    /// A webhook guardrail could not give a verdict (error status, timeout,
    /// unreadable answer) and fails closed: `500`, type `server_error`,
    /// code `guardrail_unavailable`. LiteLLM's `fail_closed` default raises
    /// here and its proxy answers 500; `unreachable_fallback: fail_open` or
    /// `fail_on_error: false` let the request through instead.
    #[error("guardrail `{guardrail}` failed: {message}")]
    Unavailable {
        /// The `guardrail_name`.
        guardrail: String,
        /// What went wrong (status, timeout); no secrets.
        message: String,
    },
}

impl GuardrailError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Blocked { .. } | Self::Unknown { .. } | Self::Uninspectable { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::Unavailable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI-style body for this error.
    pub fn body(&self) -> ErrorBody {
        let (kind, param, code) = match self {
            Self::Blocked { .. } => (GUARDRAIL_VIOLATION, None, "guardrail_blocked"),
            Self::Unknown { .. } => (
                "invalid_request_error",
                Some("guardrails".to_owned()),
                "unknown_guardrail",
            ),
            Self::Uninspectable { .. } => (
                "invalid_request_error",
                Some("prompt".to_owned()),
                "guardrail_uninspectable",
            ),
            Self::Unavailable { .. } => ("server_error", None, "guardrail_unavailable"),
        };
        ErrorBody::new(self.to_string(), kind, param, Some(code))
    }
}

impl IntoResponse for GuardrailError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

/// Why a `guardrails:` list was refused at startup; every variant names the
/// guardrail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardrailConfigError {
    /// `litellm_params.guardrail` names a kind we do not implement.
    #[error(
        "guardrail `{name}`: unknown guardrail kind `{kind}`; supported: presidio, \
         banned_keywords, litellm_content_filter, generic_guardrail_api"
    )]
    UnknownKind {
        /// The `guardrail_name`.
        name: String,
        /// The kind asked for.
        kind: String,
    },
    /// `mode` is not `pre_call`: only pre-call guardrails are implemented.
    #[error(
        "guardrail `{name}`: mode `{mode}` is not supported; only pre_call is implemented \
         (post_call, during_call and logging_only are not)"
    )]
    UnsupportedMode {
        /// The `guardrail_name`.
        name: String,
        /// The mode asked for.
        mode: String,
    },
    /// Two entries share a `guardrail_name`.
    #[error("guardrail `{name}` is defined twice")]
    Duplicate {
        /// The repeated name.
        name: String,
    },
    /// A setting is missing or has a value we cannot use.
    #[error("guardrail `{name}`: {message}")]
    Invalid {
        /// The `guardrail_name`.
        name: String,
        /// What is wrong, naming the key.
        message: String,
    },
}
