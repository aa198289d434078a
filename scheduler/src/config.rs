//! Scheduler configuration: batch limits, context length, chunked prefill
//! and the queueing policy (the knobs of vLLM's `SchedulerConfig`).

use crate::SchedulerError;

/// Order in which waiting requests are admitted and running ones preempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchedulingPolicy {
    /// First come, first served: admit by arrival; preempt the latest arrival.
    #[default]
    Fcfs,
    /// Admit by (priority, arrival), lower priority value first; preempt the
    /// lowest priority (highest value), then the latest arrival.
    Priority,
}

/// Limits of one scheduling step and the policy to apply within them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most requests running at once (the batch's row count).
    pub max_num_seqs: usize,
    /// Most tokens (prefill plus decode) scheduled in one step.
    pub max_num_batched_tokens: usize,
    /// Context length: a request finishes when it reaches this many tokens.
    pub max_model_len: usize,
    /// Whether a prompt may be prefilled over several steps. When off, a
    /// prompt is prefilled in one step, so the token budget must cover
    /// `max_model_len`.
    pub enable_chunked_prefill: bool,
    /// When set, no request gets more than this many tokens in one step, so
    /// a long prompt cannot crowd out short ones.
    pub long_prefill_token_threshold: Option<usize>,
    /// Admission and preemption order.
    pub policy: SchedulingPolicy,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_num_seqs: 256,
            max_num_batched_tokens: 8192,
            max_model_len: 8192,
            enable_chunked_prefill: true,
            long_prefill_token_threshold: None,
            policy: SchedulingPolicy::Fcfs,
        }
    }
}

impl SchedulerConfig {
    /// Rejects configurations that cannot make progress.
    pub fn validate(&self) -> Result<(), SchedulerError> {
        let bad = |m: &str| Err(SchedulerError::InvalidConfig(m.to_string()));
        if self.max_num_seqs == 0 {
            return bad("max_num_seqs must be positive");
        }
        if self.max_num_batched_tokens == 0 {
            return bad("max_num_batched_tokens must be positive");
        }
        if self.max_model_len == 0 {
            return bad("max_model_len must be positive");
        }
        if self.long_prefill_token_threshold == Some(0) {
            return bad("long_prefill_token_threshold must be positive when set");
        }
        if !self.enable_chunked_prefill && self.max_num_batched_tokens < self.max_model_len {
            return bad(
                "without chunked prefill, max_num_batched_tokens must be at least max_model_len",
            );
        }
        if !self.enable_chunked_prefill && self.long_prefill_token_threshold.is_some() {
            return bad("long_prefill_token_threshold needs chunked prefill");
        }
        Ok(())
    }
}
