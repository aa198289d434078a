//! Which failures are retried, how often, how long to wait, and which
//! count toward a deployment's cooldown — LiteLLM's rules
//! (`litellm/router.py` `should_retry_this_error`, `_time_to_sleep_before_retry`;
//! `router_utils/cooldown_handlers.py` `_is_cooldown_required`), over our
//! [`ProviderError`] instead of exception classes and without string
//! matching.

use crate::config::{RetryPolicy, RouterPolicy};
use crate::error::ProviderError;
use crate::providers::http::MAX_RETRY_AFTER_SECS;
use std::time::Duration;

/// First backoff step (LiteLLM's `INITIAL_RETRY_DELAY`).
pub const INITIAL_DELAY: Duration = Duration::from_millis(500);
/// Largest backoff step before Retry-After (LiteLLM's `MAX_RETRY_DELAY`).
pub const MAX_DELAY: Duration = Duration::from_secs(8);

/// The error classes LiteLLM's `retry_policy` keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// 400 that is neither context-length nor content-policy.
    BadRequest,
    /// 401 / 403.
    Authentication,
    /// 408 / 504 / our own timeout.
    Timeout,
    /// 429.
    RateLimit,
    /// Content-policy refusal.
    ContentPolicy,
    /// Prompt too long for the model.
    ContextWindow,
    /// 404: model or route unknown upstream.
    NotFound,
    /// 5xx, connection failures, cut streams.
    InternalServer,
}

/// Classifies `e`.
pub fn classify(e: &ProviderError) -> ErrorClass {
    match e {
        ProviderError::InvalidRequest { .. } => ErrorClass::BadRequest,
        ProviderError::ContextLengthExceeded { .. } => ErrorClass::ContextWindow,
        ProviderError::ContentPolicy { .. } => ErrorClass::ContentPolicy,
        ProviderError::ModelNotFound { .. } => ErrorClass::NotFound,
        ProviderError::RateLimited { .. } => ErrorClass::RateLimit,
        ProviderError::Timeout => ErrorClass::Timeout,
        ProviderError::Unavailable { .. }
        | ProviderError::Unservable { .. }
        | ProviderError::Internal { .. } => ErrorClass::InternalServer,
        ProviderError::Upstream { status, .. } => match status {
            401 | 403 => ErrorClass::Authentication,
            404 => ErrorClass::NotFound,
            408 | 504 => ErrorClass::Timeout,
            429 => ErrorClass::RateLimit,
            s if *s >= 500 => ErrorClass::InternalServer,
            _ => ErrorClass::BadRequest,
        },
    }
}

/// How many retries `e` gets within one model group: the `retry_policy`
/// count for its class when set, else `num_retries` for the classes
/// retried by default (timeouts, 429, 5xx) and none for the rest (400,
/// 401, 403, 404, 422: the same request would fail again).
pub fn retries_for(e: &ProviderError, policy: &RouterPolicy) -> u32 {
    let class = classify(e);
    let RetryPolicy {
        bad_request,
        authentication,
        timeout,
        rate_limit,
        content_policy,
        internal_server,
    } = &policy.retry_policy;
    let explicit = match class {
        ErrorClass::BadRequest => *bad_request,
        ErrorClass::Authentication => *authentication,
        ErrorClass::Timeout => *timeout,
        ErrorClass::RateLimit => *rate_limit,
        ErrorClass::ContentPolicy => *content_policy,
        ErrorClass::InternalServer => *internal_server,
        ErrorClass::ContextWindow | ErrorClass::NotFound => None,
    };
    explicit.unwrap_or(match class {
        ErrorClass::Timeout | ErrorClass::RateLimit | ErrorClass::InternalServer => {
            policy.num_retries
        }
        _ => 0,
    })
}

/// Whether `e` counts toward `allowed_fails` (LiteLLM's
/// `_is_cooldown_required`: 4xx do not, except 401, 404, 408 and 429).
pub fn counts_as_failure(e: &ProviderError) -> bool {
    matches!(
        classify(e),
        ErrorClass::Authentication
            | ErrorClass::NotFound
            | ErrorClass::Timeout
            | ErrorClass::RateLimit
            | ErrorClass::InternalServer
    ) && !matches!(e, ProviderError::Upstream { status: 403, .. })
}

/// Whether `e` cools its deployment down at once, without waiting for
/// `allowed_fails` (429, 401, 404: the deployment is throttled,
/// misconfigured or gone).
pub fn cools_immediately(e: &ProviderError) -> bool {
    matches!(classify(e), ErrorClass::RateLimit | ErrorClass::NotFound)
        || matches!(e, ProviderError::Upstream { status: 401, .. })
}

/// The upstream's (or a local engine's full queue's) Retry-After, if it
/// sent one, at most [`MAX_RETRY_AFTER_SECS`] (an error built by hand may
/// carry any value).
pub fn retry_after(e: &ProviderError) -> Option<Duration> {
    match e {
        ProviderError::Upstream {
            retry_after: Some(s),
            ..
        }
        | ProviderError::RateLimited {
            retry_after: Some(s),
            ..
        } => Some(Duration::from_secs((*s).min(MAX_RETRY_AFTER_SECS))),
        _ => None,
    }
}

/// Wait before retry number `attempt` (0 for the first retry):
/// `0.5 s * 2^attempt`, capped at 8 s, plus up to 25 % jitter so retries
/// of many requests spread out, and never less than the upstream's
/// Retry-After.
pub fn backoff(attempt: u32, e: &ProviderError) -> Duration {
    let step = INITIAL_DELAY
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_DELAY);
    let jittered = step.mul_f64(1.0 + 0.25 * fastrand::f64());
    retry_after(e).map_or(jittered, |ra| ra.max(jittered))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn up(status: u16) -> ProviderError {
        ProviderError::Upstream {
            status,
            message: "x".into(),
            retry_after: None,
        }
    }

    #[test]
    fn default_retries_follow_litellm() {
        let p = RouterPolicy {
            num_retries: 3,
            ..RouterPolicy::default()
        };
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(retries_for(&up(s), &p), 3, "{s}");
        }
        assert_eq!(retries_for(&ProviderError::Timeout, &p), 3);
        for s in [400, 401, 403, 404, 422] {
            assert_eq!(retries_for(&up(s), &p), 0, "{s}");
        }
        let cl = ProviderError::ContextLengthExceeded {
            message: "x".into(),
        };
        assert_eq!(retries_for(&cl, &p), 0);
    }

    #[test]
    fn retry_policy_overrides_per_class() {
        let p = RouterPolicy {
            num_retries: 1,
            retry_policy: RetryPolicy {
                bad_request: Some(2),
                rate_limit: Some(5),
                internal_server: Some(0),
                ..RetryPolicy::default()
            },
            ..RouterPolicy::default()
        };
        assert_eq!(retries_for(&up(400), &p), 2);
        assert_eq!(retries_for(&up(429), &p), 5);
        assert_eq!(retries_for(&up(500), &p), 0);
        assert_eq!(retries_for(&up(408), &p), 1);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let e = up(500);
        let b0 = backoff(0, &e);
        assert!(b0 >= INITIAL_DELAY && b0 <= INITIAL_DELAY.mul_f64(1.25));
        let b2 = backoff(2, &e);
        assert!(b2 >= Duration::from_secs(2) && b2 <= Duration::from_millis(2500));
        let b10 = backoff(10, &e);
        assert!(b10 >= MAX_DELAY && b10 <= MAX_DELAY.mul_f64(1.25));
        let ra = ProviderError::Upstream {
            status: 429,
            message: "slow down".into(),
            retry_after: Some(20),
        };
        assert_eq!(backoff(0, &ra), Duration::from_secs(20));
        let forever = ProviderError::Upstream {
            status: 429,
            message: "inf".into(),
            retry_after: Some(u64::MAX),
        };
        assert_eq!(
            backoff(0, &forever),
            Duration::from_secs(MAX_RETRY_AFTER_SECS)
        );
    }

    #[test]
    fn cooldown_classes() {
        assert!(cools_immediately(&up(429)));
        assert!(cools_immediately(&up(401)));
        assert!(cools_immediately(&up(404)));
        assert!(!cools_immediately(&up(500)));
        assert!(counts_as_failure(&up(500)));
        assert!(counts_as_failure(&ProviderError::Timeout));
        assert!(!counts_as_failure(&up(400)));
        assert!(!counts_as_failure(&up(422)));
        assert!(!counts_as_failure(&ProviderError::ContentPolicy {
            message: "x".into()
        }));
    }
}
