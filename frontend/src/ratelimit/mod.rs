//! Requests-per-minute and tokens-per-minute limits, LiteLLM's `rpm_limit`
//! and `tpm_limit`, for any subject the caller names: a virtual key, a team,
//! a user, or a key on one model (`"key:<hash>:model:<name>"`).
//!
//! What it owns: fixed one-minute windows (`window = unix_seconds / 60`)
//! holding, per subject, the requests admitted and the tokens used in that
//! minute, and the admission rule:
//!
//! - [`RateLimiter::admit_n`] lets a request of `n` sequences in only
//!   when, for **every** subject, `requests + n <= rpm` and `tokens < tpm`
//!   in the current window, and counts its `n` sequences against every
//!   subject in the same atomic step: all subjects are counted or none is,
//!   so a request refused by its team does not eat into its key's budget.
//!   A batched completion (several prompts, `n` > 1) counts each sequence,
//!   so fan-out cannot multiply a key's rpm ([`RateLimiter::admit`] is one
//!   sequence);
//! - [`RateLimiter::record_tokens`] adds a finished request's real token
//!   usage (prompt + completion) to each subject's current window. Like
//!   LiteLLM, tpm is enforced from actual usage, so one request may overshoot
//!   the last tokens of a minute; the next one is refused.
//!
//! Two backends: [`MemoryLimiter`] for one replica and [`RedisLimiter`] for
//! several replicas sharing counters (one Lua script per admission). Neither
//! decides what a backend failure means: [`RateLimitError::Backend`] goes
//! back to the caller, which chooses fail-open or fail-closed.
//!
//! It must not know about HTTP, keys or config: the caller builds the
//! [`Subject`] list from the authenticated key and turns a
//! [`RateLimited`] into a `429` with `Retry-After` (the `From` conversion to
//! [`ProviderError`] gives the body).
//!
//! Differences from LiteLLM: LiteLLM's v3 limiter uses sliding windows in
//! Redis and also limits parallel requests; here windows are fixed minutes
//! (its documented semantics, "per minute") and `max_parallel_requests` is
//! not covered.

mod memory;
mod redis_backend;

pub use memory::MemoryLimiter;
pub use redis_backend::RedisLimiter;

use crate::error::ProviderError;
use async_trait::async_trait;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the limiters read the time; injectable so tests can cross a
/// window boundary without sleeping a minute.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The wall clock, the default [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// Length of one rate-limit window: limits are per minute.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The two limits of one subject; `None` means unlimited, `Some(0)` refuses
/// everything (LiteLLM's way of suspending a key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Requests admitted per minute.
    pub rpm: Option<u64>,
    /// Tokens (prompt + completion, as recorded) per minute.
    pub tpm: Option<u64>,
}

impl Limits {
    /// True when neither limit is set, so the subject needs no counters.
    pub fn is_unlimited(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none()
    }
}

/// One thing a request is counted against, with its limits.
///
/// `id` names the counter and must be stable across replicas and distinct
/// between subjects of one request (`"key:<hash>"`, `"team:<id>"`,
/// `"user:<id>"`, `"key:<hash>:model:<name>"`); it is shown in the
/// rate-limit error, so it must not be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Counter name, e.g. `"team:research"`.
    pub id: String,
    /// Its rpm and tpm limits.
    pub limits: Limits,
}

impl Subject {
    /// A subject named `id` with `limits`.
    pub fn new(id: impl Into<String>, limits: Limits) -> Self {
        Self {
            id: id.into(),
            limits,
        }
    }
}

/// Which of the two limits refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
}

impl LimitKind {
    /// `"rpm"` or `"tpm"`, LiteLLM's names, for messages and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Tpm => "tpm",
        }
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was refused: which subject, which limit, how far, and how
/// long until the window rolls over (the `Retry-After` to send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The [`Subject::id`] whose limit was reached (the first one checked).
    pub subject: String,
    /// The limit reached.
    pub limit: LimitKind,
    /// The configured limit.
    pub max: u64,
    /// The count in this window when refused (requests or tokens).
    pub current: u64,
    /// Time to the start of the next window.
    pub retry_after: Duration,
}

impl RateLimited {
    /// [`Self::retry_after`] rounded up to whole seconds, at least 1: the
    /// value of an HTTP `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

impl fmt::Display for RateLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.limit {
            LimitKind::Rpm => "requests",
            LimitKind::Tpm => "tokens",
        };
        write!(
            f,
            "Rate limit reached for {}: {} limit {} {unit} per minute, current {}; retry after {} s",
            self.subject,
            self.limit,
            self.max,
            self.current,
            self.retry_after_secs()
        )
    }
}

/// What the limiters fail with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RateLimitError {
    /// A limit is reached: the request was not counted anywhere.
    #[error("{0}")]
    Limited(RateLimited),
    /// The shared store (Redis) failed; nothing is known about the limits.
    /// The caller decides between failing open (admit) and closed (503).
    #[error("rate limit store unavailable: {0}")]
    Backend(String),
}

impl From<RateLimitError> for ProviderError {
    /// `429 rate_limit_exceeded` for a reached limit (the caller adds the
    /// `Retry-After` header from [`RateLimited::retry_after_secs`]); `503`
    /// for a store failure when the caller fails closed.
    fn from(e: RateLimitError) -> Self {
        match e {
            RateLimitError::Limited(limited) => ProviderError::RateLimited {
                message: limited.to_string(),
                retry_after: None,
            },
            RateLimitError::Backend(_) => ProviderError::Unavailable {
                message: e.to_string(),
            },
        }
    }
}

/// A store of per-minute counters; one instance is shared by all requests
/// (and, for [`RedisLimiter`], by all replicas pointing at one prefix).
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Admits a request of one sequence: [`Self::admit_n`] with `n = 1`.
    async fn admit(&self, subjects: &[Subject]) -> Result<(), RateLimitError> {
        self.admit_n(subjects, 1).await
    }

    /// Admits a request that generates `sequences` sequences (prompts x
    /// `n`) and counts each against every subject's rpm, or refuses it
    /// (counting nothing) when any subject lacks room for all of them
    /// under rpm, or is at its tpm limit, in the current window. Subjects
    /// without limits are ignored.
    async fn admit_n(&self, subjects: &[Subject], sequences: u64) -> Result<(), RateLimitError>;

    /// Adds `tokens` (the response's real total usage) to the current window
    /// of every subject that has a tpm limit. Takes subjects rather than ids
    /// so subjects without a tpm limit cost no counter.
    async fn record_tokens(&self, subjects: &[Subject], tokens: u64) -> Result<(), RateLimitError>;
}

/// The window `now` falls in and the time left until the next one.
pub(crate) fn window_at(now: SystemTime) -> (u64, Duration) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let index = since_epoch.as_secs() / WINDOW.as_secs();
    let next_start = Duration::from_secs((index + 1) * WINDOW.as_secs());
    (index, next_start.saturating_sub(since_epoch))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn window_index_and_retry_after() {
        let t = UNIX_EPOCH + Duration::from_millis(120_000 + 45_500);
        let (index, retry) = window_at(t);
        assert_eq!(index, 2);
        assert_eq!(retry, Duration::from_millis(14_500));
        let (index, retry) = window_at(UNIX_EPOCH + Duration::from_secs(180));
        assert_eq!(index, 3);
        assert_eq!(retry, WINDOW);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let mut limited = RateLimited {
            subject: "key:k".into(),
            limit: LimitKind::Rpm,
            max: 1,
            current: 1,
            retry_after: Duration::from_millis(14_500),
        };
        assert_eq!(limited.retry_after_secs(), 15);
        limited.retry_after = Duration::from_millis(1);
        assert_eq!(limited.retry_after_secs(), 1);
        limited.retry_after = Duration::from_secs(60);
        assert_eq!(limited.retry_after_secs(), 60);
    }

    #[test]
    fn limited_maps_to_429_and_backend_to_503() {
        let limited = RateLimitError::Limited(RateLimited {
            subject: "team:t".into(),
            limit: LimitKind::Tpm,
            max: 100,
            current: 130,
            retry_after: Duration::from_secs(3),
        });
        let e = ProviderError::from(limited);
        assert_eq!(e.status().as_u16(), 429);
        assert_eq!(
            e.to_string(),
            "Rate limit reached for team:t: tpm limit 100 tokens per minute, current 130; retry after 3 s"
        );
        let e = ProviderError::from(RateLimitError::Backend("down".into()));
        assert_eq!(e.status().as_u16(), 503);
    }
}
