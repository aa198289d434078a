//! Errors of the scheduler layer.
//!
//! Rejections of a request at admission (too long, bad stop parameters, a
//! duplicate id) are the caller's to report to the user; `Kv` wraps a KV
//! cache contract violation, which is a bug rather than back-pressure (the
//! scheduler answers running out of blocks by preempting, never by error).

use kv_cache::{KvError, RequestId};

/// What went wrong in the scheduler; match on variants, not on text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// The configuration cannot schedule anything, or could starve a request.
    #[error("invalid scheduler config: {0}")]
    InvalidConfig(String),
    /// A request with this id is already waiting or running.
    #[error("request {0} already exists")]
    DuplicateRequest(RequestId),
    /// A request must have at least one prompt token.
    #[error("request {0} has an empty prompt")]
    EmptyPrompt(RequestId),
    /// The prompt does not fit the model's context.
    #[error("request {id}: prompt of {len} tokens exceeds max_model_len {max_model_len}")]
    PromptTooLong {
        /// The request.
        id: RequestId,
        /// Its prompt length.
        len: usize,
        /// The configured context length.
        max_model_len: usize,
    },
    /// The request could never fit in the KV cache even running alone.
    #[error("request {id} needs {needed} KV blocks but the cache has {total}")]
    ExceedsKvCapacity {
        /// The request.
        id: RequestId,
        /// Blocks it needs at its longest.
        needed: usize,
        /// Blocks in the cache.
        total: usize,
    },
    /// The stop parameters are inconsistent (e.g. `max_tokens` of 0).
    #[error("request {id}: {reason}")]
    InvalidStopParams {
        /// The request.
        id: RequestId,
        /// What is wrong.
        reason: String,
    },
    /// The scheduler's own tables disagree (a request listed in a queue has
    /// no state); reported instead of panicking.
    #[error("scheduler bookkeeping lost request {0}")]
    UnknownRequest(RequestId),
    /// A bookkeeping invariant does not hold; reported by `check_invariants`.
    #[error("scheduler invariant violated: {0}")]
    InvariantViolated(String),
    /// The KV cache manager reported a contract violation.
    #[error(transparent)]
    Kv(#[from] KvError),
}
