//! What the control plane (keys, budgets, limits, the admin API) can
//! refuse a request with. Mapped to a status and an OpenAI-style
//! body in `crate::error`, with the other errors, so statuses are chosen in
//! one place.

use std::time::Duration;

/// A control-plane refusal or failure.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No key in `Authorization: Bearer`, `x-api-key` or
    /// `x-litellm-api-key`: `401`.
    #[error("No API key provided. Pass it as `Authorization: Bearer sk-...`.")]
    MissingKey,
    /// The key is unknown (never issued, deleted, or mistyped): `401`.
    /// The message never repeats the key.
    #[error("Invalid API key.")]
    InvalidKey,
    /// The key's `expires` is past: `401`.
    #[error("The API key expired at {expired_at}.")]
    KeyExpired {
        /// When it expired (RFC 3339).
        expired_at: String,
    },
    /// An admin route was called without the master key: `403`.
    #[error("Only the master key can call {path}.")]
    AdminOnly {
        /// The route.
        path: String,
    },
    /// The key (or its team or user) may not use this model: `403`.
    #[error("This key cannot access model `{model}`; it may use: {allowed}.")]
    ModelNotAllowed {
        /// The model asked for.
        model: String,
        /// The allowed list, as configured.
        allowed: String,
    },
    /// A key, team or user has spent its `max_budget`: `400` with type
    /// `budget_exceeded`, as LiteLLM answers.
    #[error("Budget has been exceeded for {owner}: spend {spend:.6} USD, max_budget {max_budget:.6} USD.")]
    BudgetExceeded {
        /// `key <alias>`, `team <id>` or `user <id>`.
        owner: String,
        /// Spend so far in this budget period.
        spend: f64,
        /// The budget.
        max_budget: f64,
    },
    /// An rpm or tpm limit of a key, team or user is reached this minute:
    /// `429` with `Retry-After`.
    #[error("Rate limit reached for {owner}: {limit} limit {value} per minute. Retry after {}s.", retry_after.as_secs().max(1))]
    RateLimited {
        /// `key <alias>`, `team <id>` or `user <id>`.
        owner: String,
        /// `"rpm"` or `"tpm"`.
        limit: &'static str,
        /// The configured limit.
        value: u64,
        /// Until the next window.
        retry_after: Duration,
    },
    /// An admin request names a key, team or user that does not exist: `404`.
    #[error("{what} not found: {id}")]
    NotFound {
        /// `key`, `team` or `user`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// An admin request would create a duplicate (team_id, user_id): `409`.
    #[error("{message}")]
    Conflict {
        /// What already exists.
        message: String,
    },
    /// An admin or control request is well-formed JSON but invalid (a bad
    /// `budget_duration`, a negative budget): `400`.
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// The field at fault.
        param: Option<String>,
    },
    /// The key database, Redis or another control dependency failed: `503`.
    /// Messages never include connection strings.
    #[error("{message}")]
    Backend {
        /// What failed.
        message: String,
    },
}

impl ControlError {
    /// A 400 naming `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: Some(param.to_owned()),
        }
    }

    /// The `Retry-After` this error asks for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}
