//! Errors of the KV cache layer.
//!
//! One `thiserror` enum for the whole crate, as STYLE.md asks of every layer.
//! Only [`KvError::NoFreeBlocks`] is an expected outcome of normal operation
//! (the scheduler answers it by preempting); every other variant means a
//! caller broke the manager's contract and is a bug to surface, not retry.

use crate::RequestId;

/// What went wrong in the block pool or the cache manager.
///
/// Callers match on variants, never on the message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Not enough free (or evictable) blocks for this allocation; nothing was
    /// changed. The scheduler preempts a request and tries again.
    #[error("not enough free KV blocks: need {needed}, {free} free")]
    NoFreeBlocks {
        /// Blocks the allocation needed.
        needed: usize,
        /// Blocks that were free or evictable at the time.
        free: usize,
    },
    /// The configuration cannot describe a usable cache.
    #[error("invalid KV cache config: {0}")]
    InvalidConfig(String),
    /// The block hashes passed in were built for a different block size.
    #[error("block hashes use block size {got}, the cache uses {expected}")]
    BlockSizeMismatch {
        /// The cache's block size.
        expected: usize,
        /// The block size the hashes were computed with.
        got: usize,
    },
    /// Cached-prefix blocks handed back to `allocate_slots` no longer hold the
    /// content they were looked up for (they were evicted in between).
    #[error("computed blocks for request {0} went stale before allocation")]
    StaleComputedBlocks(RequestId),
    /// Cached-prefix blocks were offered to a request that already holds blocks.
    #[error(
        "request {0} already holds blocks; computed blocks only apply to its first allocation"
    )]
    ComputedBlocksAfterStart(RequestId),
    /// A bookkeeping invariant does not hold; reported by `check_invariants`.
    #[error("KV cache invariant violated: {0}")]
    InvariantViolated(String),
}
