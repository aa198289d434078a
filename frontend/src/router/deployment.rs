//! One deployment behind a model_name and what the router knows about it:
//! requests in flight, moving-average latency and time to first token,
//! this minute's requests and tokens, recent failures and cooldown.
//!
//! Time is `tokio::time::Instant`, so tests drive cooldowns and minute
//! windows with tokio's paused clock. The state lock is a `std` mutex held
//! for a few arithmetic operations, never across an await.

use crate::config::params::DeploymentParams;
use crate::provider::Provider;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Window of `allowed_fails` and of rpm/tpm usage.
pub const MINUTE: Duration = Duration::from_secs(60);
/// LiteLLM's `DEFAULT_FAILURE_THRESHOLD_PERCENT`: without `allowed_fails`,
/// a deployment cools down once more than this share of its requests this
/// minute failed.
pub const FAILURE_RATE_THRESHOLD: f64 = 0.5;
/// Requests this minute before the failure rate counts (one early failure
/// is not a 100 % failure rate).
pub const FAILURE_RATE_MIN_REQUESTS: u64 = 5;
/// LiteLLM's `SINGLE_DEPLOYMENT_TRAFFIC_FAILURE_THRESHOLD`: the only
/// deployment of a group cools down only when all of this many failed.
pub const SINGLE_DEPLOYMENT_FAILURE_MIN_REQUESTS: u64 = 1000;
/// Weight of a new sample in the latency moving average.
const EWMA_ALPHA: f64 = 0.3;
/// Longest cooldown, whatever the config or an upstream's `Retry-After`
/// asks for.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(24 * 3600);

/// What the router needs to build a deployment: who serves it and how it
/// is limited. Public so tests and embedders can assemble a router
/// without a config file.
pub struct DeploymentSpec {
    /// The client-facing name it serves.
    pub model_name: String,
    /// Stable id for metrics and logs (never an api_base or key).
    pub id: String,
    /// rpm/tpm limits, weight, order, prices, timeouts.
    pub params: DeploymentParams,
    /// The adapter (or the local engine).
    pub provider: Arc<dyn Provider>,
}

#[derive(Debug)]
struct State {
    failures: VecDeque<Instant>,
    cooldown_until: Option<Instant>,
    latency: Option<f64>,
    ttft: Option<f64>,
    window_start: Instant,
    rpm_used: u64,
    tpm_used: u64,
    ok_in_window: u64,
    failed_in_window: u64,
}

/// A deployment and its live statistics.
pub struct Deployment {
    /// See [`DeploymentSpec::model_name`].
    pub model_name: String,
    /// See [`DeploymentSpec::id`].
    pub id: String,
    /// See [`DeploymentSpec::params`].
    pub params: DeploymentParams,
    /// See [`DeploymentSpec::provider`].
    pub provider: Arc<dyn Provider>,
    in_flight: AtomicU64,
    state: Mutex<State>,
}

/// What a failure did to the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Counted; still eligible.
    Counted,
    /// Cooling down now, after this many failures in the last minute.
    CooledDown(usize),
}

impl Deployment {
    /// A deployment with no history.
    pub fn new(spec: DeploymentSpec) -> Self {
        Self {
            model_name: spec.model_name,
            id: spec.id,
            params: spec.params,
            provider: spec.provider,
            in_flight: AtomicU64::new(0),
            state: Mutex::new(State {
                failures: VecDeque::new(),
                cooldown_until: None,
                latency: None,
                ttft: None,
                window_start: Instant::now(),
                rpm_used: 0,
                tpm_used: 0,
                ok_in_window: 0,
                failed_in_window: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // counters; the numbers are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether it is cooling down at `now`; `Some(false)` when a cooldown
    /// just ended (so the caller can reset the gauge).
    pub fn cooling(&self, now: Instant) -> (bool, bool) {
        let mut s = self.lock();
        match s.cooldown_until {
            Some(until) if now < until => (true, false),
            Some(_) => {
                s.cooldown_until = None;
                s.failures.clear();
                (false, true)
            }
            None => (false, false),
        }
    }

    /// When its cooldown ends, if cooling.
    pub fn cooldown_until(&self) -> Option<Instant> {
        self.lock().cooldown_until
    }

    /// Records a failure: cools down when `immediate` (429/401/404), or
    /// with `allowed_fails` when the failures of the last minute exceed it,
    /// or without it by LiteLLM's failure-rate rule (see
    /// [`FAILURE_RATE_THRESHOLD`]; `single` = the group's only deployment).
    pub fn record_failure(
        &self,
        now: Instant,
        immediate: bool,
        allowed_fails: Option<u32>,
        single: bool,
        cooldown: Duration,
    ) -> FailureOutcome {
        let mut s = self.lock();
        Self::roll(&mut s, now);
        s.failed_in_window += 1;
        s.failures.push_back(now);
        while s
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= MINUTE)
        {
            s.failures.pop_front();
        }
        // Only the count up to `allowed_fails + 1` matters; bound memory.
        let keep = allowed_fails.map_or(1, |a| a as usize + 1);
        while s.failures.len() > keep {
            s.failures.pop_front();
        }
        let n = s.failures.len();
        let over = match allowed_fails {
            Some(allowed) => n > allowed as usize,
            None => {
                let total = s.ok_in_window + s.failed_in_window;
                let rate = s.failed_in_window as f64 / total as f64;
                if single {
                    s.ok_in_window == 0 && total >= SINGLE_DEPLOYMENT_FAILURE_MIN_REQUESTS
                } else {
                    total >= FAILURE_RATE_MIN_REQUESTS && rate > FAILURE_RATE_THRESHOLD
                }
            }
        };
        let already = s.cooldown_until.is_some_and(|u| now < u);
        if !already && (immediate || over) && !cooldown.is_zero() {
            // Capped, so no `Retry-After` an upstream sends (`inf`, 1e30)
            // can overflow the clock or black a deployment out for years.
            s.cooldown_until = Some(now + cooldown.min(MAX_COOLDOWN));
            FailureOutcome::CooledDown(s.failed_in_window as usize)
        } else {
            FailureOutcome::Counted
        }
    }

    /// Records a successful attempt's latency (to the first chunk when
    /// `streaming`) in the moving average latency-based routing reads.
    pub fn record_latency(&self, latency: Duration, streaming: bool) {
        let x = latency.as_secs_f64();
        let mut s = self.lock();
        let slot = if streaming {
            &mut s.ttft
        } else {
            &mut s.latency
        };
        *slot = Some(slot.map_or(x, |old| old + EWMA_ALPHA * (x - old)));
    }

    /// The latency-based routing score: the moving average of whole
    /// responses, or of time to first token when only streams were seen;
    /// `None` when untried (so a new deployment gets traffic).
    pub fn latency_score(&self, streaming: bool) -> Option<f64> {
        let s = self.lock();
        if streaming {
            s.ttft.or(s.latency)
        } else {
            s.latency.or(s.ttft)
        }
    }

    fn roll(s: &mut State, now: Instant) {
        if now.duration_since(s.window_start) >= MINUTE {
            s.window_start = now;
            s.rpm_used = 0;
            s.tpm_used = 0;
            s.ok_in_window = 0;
            s.failed_in_window = 0;
        }
    }

    /// Counts a successful request toward this minute's failure rate.
    pub fn record_success(&self, now: Instant) {
        let mut s = self.lock();
        Self::roll(&mut s, now);
        s.ok_in_window += 1;
    }

    /// Counts one request dispatched at `now` toward this minute's rpm.
    pub fn count_request(&self, now: Instant) {
        let mut s = self.lock();
        Self::roll(&mut s, now);
        s.rpm_used += 1;
    }

    /// Adds a response's tokens to this minute's tpm.
    pub fn count_tokens(&self, now: Instant, tokens: u64) {
        let mut s = self.lock();
        Self::roll(&mut s, now);
        s.tpm_used = s.tpm_used.saturating_add(tokens);
    }

    /// This minute's (requests, tokens).
    pub fn usage(&self, now: Instant) -> (u64, u64) {
        let mut s = self.lock();
        Self::roll(&mut s, now);
        (s.rpm_used, s.tpm_used)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Marks a request in flight until the guard drops (a stream's guard
    /// lives in the stream, so a long stream keeps counting).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// `order`, with unset meaning last.
    pub fn order(&self) -> u32 {
        self.params.order.unwrap_or(u32::MAX)
    }
}

/// One request in flight on a deployment (least-busy routing).
pub struct InFlight(Arc<Deployment>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
