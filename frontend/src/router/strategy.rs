//! The routing strategies: given the eligible deployments of one
//! model_name (healthy, lowest `order`, the failed one excluded on
//! retries), pick one. LiteLLM's `router_strategy/*`, simplified to what
//! a single gateway process can know (no Redis-shared counters yet).

use super::deployment::Deployment;
use crate::config::RoutingStrategy;
use std::sync::Arc;
use tokio::time::Instant;

/// What the strategy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Use the candidate at this position.
    Pick(usize),
    /// usage-based-routing: every candidate is at its rpm/tpm limit.
    AllAtLimit,
}

/// Inputs besides the candidates.
#[derive(Debug, Clone, Copy)]
pub struct PickContext {
    /// Now, for the usage windows.
    pub now: Instant,
    /// Rough input tokens of the request (usage-based tpm check).
    pub est_tokens: u64,
    /// Whether the request streams (latency-based uses time to first token).
    pub streaming: bool,
    /// latency-based tie buffer.
    pub latency_buffer: f64,
}

/// Picks among `cands` (non-empty).
pub fn choose(strategy: RoutingStrategy, cands: &[Arc<Deployment>], ctx: PickContext) -> Choice {
    if cands.len() == 1 && strategy != RoutingStrategy::UsageBased {
        return Choice::Pick(0);
    }
    match strategy {
        RoutingStrategy::SimpleShuffle => Choice::Pick(weighted_shuffle(cands)),
        RoutingStrategy::LeastBusy => {
            Choice::Pick(random_min(cands, |d| d.in_flight() as f64, 0.0))
        }
        RoutingStrategy::LatencyBased => Choice::Pick(random_min(
            cands,
            |d| d.latency_score(ctx.streaming).unwrap_or(0.0),
            ctx.latency_buffer,
        )),
        RoutingStrategy::CostBased => Choice::Pick(random_min(
            cands,
            |d| match (
                d.params.input_cost_per_token,
                d.params.output_cost_per_token,
            ) {
                (Some(i), Some(o)) => i + o,
                (Some(c), None) | (None, Some(c)) => c,
                (None, None) => f64::INFINITY,
            },
            0.0,
        )),
        RoutingStrategy::UsageBased => usage_based(cands, ctx),
    }
}

/// LiteLLM's simple-shuffle: weighted by `weight` when any deployment
/// sets it (unset counts 0), else by `rpm`, else by `tpm`, else uniform.
fn weighted_shuffle(cands: &[Arc<Deployment>]) -> usize {
    let pick_weights = |f: &dyn Fn(&Deployment) -> Option<f64>| -> Option<Vec<f64>> {
        cands.iter().any(|d| f(d).is_some()).then(|| {
            cands
                .iter()
                .map(|d| f(d).filter(|w| w.is_finite() && *w > 0.0).unwrap_or(0.0))
                .collect()
        })
    };
    let weights = pick_weights(&|d| d.params.weight)
        .or_else(|| pick_weights(&|d| d.params.rpm.map(|r| r as f64)))
        .or_else(|| pick_weights(&|d| d.params.tpm.map(|t| t as f64)));
    let Some(weights) = weights else {
        return fastrand::usize(..cands.len());
    };
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return fastrand::usize(..cands.len());
    }
    let mut x = fastrand::f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
}

/// A random candidate among those whose score is within `buffer`
/// (a fraction) of the lowest.
fn random_min(cands: &[Arc<Deployment>], score: impl Fn(&Deployment) -> f64, buffer: f64) -> usize {
    let scores: Vec<f64> = cands.iter().map(|d| score(d)).collect();
    let min = scores.iter().copied().fold(f64::INFINITY, f64::min);
    let limit = if min.is_finite() {
        min + min.abs() * buffer
    } else {
        min
    };
    let tied: Vec<usize> = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| **s <= limit || (min.is_infinite() && s.is_infinite()))
        .map(|(i, _)| i)
        .collect();
    if tied.is_empty() {
        return 0;
    }
    tied[fastrand::usize(..tied.len())]
}

/// LiteLLM's usage-based-routing-v2: deployments whose current-minute
/// usage plus this request stays within `rpm` and `tpm`; the least used
/// (by tpm, then rpm) wins.
fn usage_based(cands: &[Arc<Deployment>], ctx: PickContext) -> Choice {
    let mut best: Option<(usize, (u64, u64))> = None;
    for (i, d) in cands.iter().enumerate() {
        let (rpm, tpm) = d.usage(ctx.now);
        let rpm_ok = d.params.rpm.is_none_or(|limit| rpm < limit);
        let tpm_ok = d
            .params
            .tpm
            .is_none_or(|limit| tpm.saturating_add(ctx.est_tokens) <= limit);
        if rpm_ok && tpm_ok && best.is_none_or(|(_, b)| (tpm, rpm) < b) {
            best = Some((i, (tpm, rpm)));
        }
    }
    best.map_or(Choice::AllAtLimit, |(i, _)| Choice::Pick(i))
}
