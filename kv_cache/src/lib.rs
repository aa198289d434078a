//! Paged KV cache bookkeeping: block pool, free-block LRU queue, prefix-hash
//! index, reference counts and per-request block tables (issue 3).
//!
//! Pure Rust: it must not know about torch, async or gRPC. It tracks which
//! block ids hold which tokens; the tensors themselves live in the workers,
//! which only follow the ids the scheduler sends them.
//!
//! Layout follows vLLM v1 (`vllm/v1/core/block_pool.py`,
//! `kv_cache_manager.py`, `kv_cache_utils.py`):
//! - [`block_hash`]: chained 128-bit content hashes of full blocks;
//! - `free_queue`: the O(1) LRU free-block list (crate-private);
//! - [`block_pool`]: blocks, reference counts, free queue, hash index;
//! - [`layout`]: which layers share a block table (KV cache groups);
//! - [`manager`]: per-request block tables, prefix lookup, allocation.
//!
//! It differs from vLLM in keeping one block per hash and in caching
//! prefixes only for a cache of one full-attention group.

#![warn(missing_docs)]

pub mod block_hash;
pub mod block_pool;
mod error;
mod free_queue;
pub mod layout;
pub mod manager;
mod request_id;

pub use block_hash::{
    hash_block, BlockHash, BlockHashExtras, BlockHashes, ExtraKey, MultiModalSpan,
};
pub use block_pool::BlockPool;
pub use error::KvError;
pub use layout::{KvCacheLayout, LayerPlace};
pub use manager::{ComputedBlocks, KvBlocks, KvCacheConfig, KvCacheManager, PrefixCacheStats};
/// Re-exported so callers name a group's window without `model_files`.
pub use model_files::AttentionWindow;
pub use request_id::RequestId;

/// A block's index in the pool; plain `u32` so it goes on the wire as is.
pub type BlockId = u32;
