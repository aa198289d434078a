//! What one scheduling step hands to the workers, and what comes back.
//!
//! Plain data, mirroring vLLM v1's `vllm/v1/core/sched/output.py`: new
//! requests are sent in full once; requests the workers already hold are
//! sent as deltas (the tokens sampled since, new block ids and the
//! computed-token count); a request resumed after preemption is re-sent
//! with its whole block table and token ids, since its old blocks were
//! freed. An output stands on its own: turning it into the workers' step
//! needs nothing else from the scheduler. Block ids are plain `u32` and
//! every field maps one to one onto a `proto` message.

use std::sync::Arc;

use kv_cache::{BlockId, RequestId};

use crate::{FinishReason, SamplingParams};

/// A request the workers have not seen: everything they need to hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRequestData {
    /// The request.
    pub req_id: RequestId,
    /// Its whole prompt.
    pub prompt_token_ids: Arc<[u32]>,
    /// Its sampling settings, shared with the scheduler's copy.
    pub sampling_params: Arc<SamplingParams>,
    /// Its block tables, one per KV cache group (cached prefix blocks
    /// first).
    pub block_ids: Vec<Vec<BlockId>>,
    /// Tokens already computed (prefix-cache hits); this step computes from here.
    pub num_computed_tokens: usize,
}

/// A request the workers already hold (running, or resumed from preemption).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRequestData {
    /// The request.
    pub req_id: RequestId,
    /// True when it was preempted and comes back: `new_block_ids` then is
    /// its whole block table and replaces the old one, and `new_token_ids`
    /// carries every token it has so far.
    pub resumed_from_preemption: bool,
    /// Blocks appended to each group's table this step (the whole tables
    /// when resumed).
    pub new_block_ids: Vec<Vec<BlockId>>,
    /// Tokens the workers do not hold yet: those sampled since it was last
    /// scheduled, or, when resumed, prompt plus output.
    pub new_token_ids: Vec<u32>,
    /// Tokens already computed; this step computes from here.
    pub num_computed_tokens: usize,
}

/// The plan of one step: which requests run and how many tokens each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerOutput {
    /// Requests scheduled for the first time.
    pub scheduled_new_reqs: Vec<NewRequestData>,
    /// Requests the workers already hold, as deltas.
    pub scheduled_cached_reqs: Vec<CachedRequestData>,
    /// Tokens scheduled per request, running requests first.
    pub num_scheduled_tokens: Vec<(RequestId, usize)>,
    /// Sum of `num_scheduled_tokens`; never above `max_num_batched_tokens`.
    pub total_num_scheduled_tokens: usize,
    /// Requests finished or aborted since the last step: workers drop them.
    pub finished_req_ids: Vec<RequestId>,
    /// Requests preempted in this step: workers drop their batch rows (their
    /// blocks are already freed) and keep nothing but what resumption re-sends.
    pub preempted_req_ids: Vec<RequestId>,
}

impl SchedulerOutput {
    /// Tokens scheduled for a request this step (0 when not scheduled).
    pub fn num_scheduled_tokens_for(&self, id: &RequestId) -> usize {
        self.num_scheduled_tokens
            .iter()
            .find(|(r, _)| r == id)
            .map_or(0, |(_, n)| *n)
    }

    /// Number of requests scheduled this step.
    pub fn num_scheduled_reqs(&self) -> usize {
        self.num_scheduled_tokens.len()
    }

    /// True when nothing runs this step.
    pub fn is_empty(&self) -> bool {
        self.num_scheduled_tokens.is_empty()
    }
}

/// What the workers return for one step: sampled token ids per request.
///
/// A request in the middle of a chunked prefill samples nothing useful; its
/// entry may be empty (and is ignored either way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRunnerOutput {
    /// Requests that ran, in any order.
    pub req_ids: Vec<RequestId>,
    /// Sampled token ids, aligned with `req_ids` (several with speculative
    /// decoding).
    pub sampled_token_ids: Vec<Vec<u32>>,
}

/// New tokens of one request after a step, and its finish reason if it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOutput {
    /// The request.
    pub req_id: RequestId,
    /// Tokens appended this step (kept up to and including a stop token).
    pub new_token_ids: Vec<u32>,
    /// Set when the request finished this step; its blocks are already freed.
    pub finish_reason: Option<FinishReason>,
}
