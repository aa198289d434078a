//! The router's effective behaviour, merged once from `router_settings`,
//! `litellm_settings` and LiteLLM's defaults, so the router reads plain
//! values and never re-derives precedence.

use super::settings::{
    FallbackList, LitellmSettings, RetryPolicy, RouterSettings, RoutingStrategy,
};
use std::time::Duration;

/// LiteLLM's default retries per model group (`openai.DEFAULT_MAX_RETRIES`).
pub const DEFAULT_NUM_RETRIES: u32 = 2;
/// LiteLLM's default cooldown (`DEFAULT_COOLDOWN_TIME_SECONDS`).
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);

/// What the router does; built by [`RouterPolicy::merge`].
#[derive(Debug, Clone, PartialEq)]
pub struct RouterPolicy {
    /// How deployments are picked.
    pub strategy: RoutingStrategy,
    /// latency-based-routing tie buffer (fraction of the fastest).
    pub lowest_latency_buffer: f64,
    /// Retries after the first attempt, per model group.
    pub num_retries: u32,
    /// Per-error-kind overrides of `num_retries`.
    pub retry_policy: RetryPolicy,
    /// Whole-request deadline (retries and fallbacks included); `None`
    /// leaves only the deployments' own timeouts.
    pub timeout: Option<Duration>,
    /// Failures per minute tolerated before a cooldown; `None` (not set)
    /// is LiteLLM's default rule instead: cool down when more than half of
    /// this minute's requests (at least 5) failed, and a single-deployment
    /// group only when all of 1,000 did.
    pub allowed_fails: Option<u32>,
    /// How long a cooled-down deployment is skipped.
    pub cooldown_time: Duration,
    /// Generic fallbacks: model_name -> model_names in order.
    pub fallbacks: Vec<(String, Vec<String>)>,
    /// Fallbacks on context-length errors.
    pub context_window_fallbacks: Vec<(String, Vec<String>)>,
    /// Fallbacks on content-policy refusals.
    pub content_policy_fallbacks: Vec<(String, Vec<String>)>,
}

impl Default for RouterPolicy {
    fn default() -> Self {
        Self::merge(&RouterSettings::default(), &LitellmSettings::default())
    }
}

impl RouterPolicy {
    /// `router_settings` wins; `litellm_settings` fills what it leaves
    /// out; LiteLLM's defaults fill the rest. Fallback lists of both
    /// sections are concatenated (router's first).
    pub fn merge(router: &RouterSettings, litellm: &LitellmSettings) -> Self {
        let secs = |s: Option<f64>| s.filter(|t| *t > 0.0).and_then(super::config_duration);
        Self {
            strategy: router.routing_strategy.unwrap_or_default(),
            lowest_latency_buffer: router
                .routing_strategy_args
                .as_ref()
                .and_then(|a| a.lowest_latency_buffer)
                .filter(|b| b.is_finite() && *b >= 0.0)
                .unwrap_or(0.0),
            num_retries: router
                .num_retries
                .or(litellm.num_retries)
                .unwrap_or(DEFAULT_NUM_RETRIES),
            retry_policy: router.retry_policy.clone().unwrap_or_default(),
            timeout: secs(router.timeout).or(secs(litellm.request_timeout)),
            allowed_fails: router.allowed_fails,
            cooldown_time: router
                .cooldown_time
                .and_then(super::config_duration)
                .unwrap_or(DEFAULT_COOLDOWN),
            fallbacks: flatten(&[&router.fallbacks, &litellm.fallbacks]),
            context_window_fallbacks: flatten(&[
                &router.context_window_fallbacks,
                &litellm.context_window_fallbacks,
            ]),
            content_policy_fallbacks: flatten(&[
                &router.content_policy_fallbacks,
                &litellm.content_policy_fallbacks,
            ]),
        }
    }
}

fn flatten(lists: &[&Option<FallbackList>]) -> Vec<(String, Vec<String>)> {
    lists
        .iter()
        .filter_map(|l| l.as_ref())
        .flatten()
        .flat_map(|map| map.iter().map(|(k, v)| (k.clone(), v.to_vec())))
        .collect()
}
