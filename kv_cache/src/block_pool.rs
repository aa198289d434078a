//! The block pool: every KV block, its reference count, the free queue and
//! the index from block hash to cached block.
//!
//! Follows vLLM v1's `BlockPool`. A block is *held* while its reference
//! count is positive (one reference per request whose block table lists it)
//! and *free* otherwise; a free block may still be *cached* (it keeps its
//! hash and can be revived by a prefix hit) until it is evicted, which
//! happens only when it reaches the front of the free queue and is handed
//! out again.
//!
//! Differences from vLLM: one block per hash (if two requests fill blocks
//! with the same content at once, the second stays uncached and is simply
//! freed later), no null block (we have no sliding-window layers yet), and
//! a freed block that was never cached goes to the *front* of the free
//! queue, because reusing it destroys nothing, while freed cached blocks go
//! to the back in the order given, oldest evicted first.
//!
//! Mutating methods are crate-private: callers go through
//! [`crate::KvCacheManager`], which keeps reference counts equal to holders.

use rustc_hash::FxHashMap;

use crate::free_queue::FreeBlockQueue;
use crate::{BlockHash, BlockId, KvError};

#[derive(Debug, Clone, Copy, Default)]
struct BlockMeta {
    ref_cnt: u32,
    hash: Option<BlockHash>,
}

/// A fixed set of KV blocks with reference counts, an LRU free queue and a
/// prefix-hash index.
#[derive(Debug, Clone)]
pub struct BlockPool {
    blocks: Vec<BlockMeta>,
    free: FreeBlockQueue,
    cached: FxHashMap<BlockHash, BlockId>,
    enable_caching: bool,
}

impl BlockPool {
    /// A pool of `num_blocks` free, uncached blocks.
    pub(crate) fn new(num_blocks: usize, enable_caching: bool) -> Result<Self, KvError> {
        if num_blocks == 0 {
            return Err(KvError::InvalidConfig("num_blocks must be positive".into()));
        }
        let n = u32::try_from(num_blocks)
            .ok()
            .filter(|n| *n < u32::MAX)
            .ok_or_else(|| {
                KvError::InvalidConfig(format!(
                    "num_blocks {num_blocks} does not fit a u32 block id"
                ))
            })?;
        Ok(Self {
            blocks: vec![BlockMeta::default(); num_blocks],
            free: FreeBlockQueue::new_full(n),
            // At most one entry per block: reserve it all now so the index
            // never rehashes in the middle of a scheduling step.
            cached: if enable_caching {
                FxHashMap::with_capacity_and_hasher(num_blocks, Default::default())
            } else {
                FxHashMap::default()
            },
            enable_caching,
        })
    }

    /// Total number of blocks, held or free.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks that can be handed out now (free, cached or not).
    pub fn num_free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Fraction of blocks held by requests, in `[0, 1]`.
    pub fn usage(&self) -> f64 {
        1.0 - self.free.len() as f64 / self.blocks.len() as f64
    }

    /// Number of blocks registered in the prefix-hash index.
    pub fn num_cached_blocks(&self) -> usize {
        self.cached.len()
    }

    /// How many block tables list this block (0 when free or out of range).
    pub fn ref_count(&self, id: BlockId) -> u32 {
        self.blocks.get(id as usize).map_or(0, |b| b.ref_cnt)
    }

    /// The hash the block is cached under, if any.
    pub fn block_hash(&self, id: BlockId) -> Option<BlockHash> {
        self.blocks.get(id as usize).and_then(|b| b.hash)
    }

    /// Whether the block is in the free queue.
    pub fn is_free(&self, id: BlockId) -> bool {
        self.free.contains(id)
    }

    /// The cached block holding this content, if any.
    pub fn cached_block(&self, hash: &BlockHash) -> Option<BlockId> {
        if !self.enable_caching {
            return None;
        }
        self.cached.get(hash).copied()
    }

    /// Adds a reference to each block, taking free ones out of the queue
    /// (a prefix hit revives a cached block without evicting it).
    pub(crate) fn touch(&mut self, ids: &[BlockId]) {
        for &id in ids {
            let meta = &mut self.blocks[id as usize];
            if meta.ref_cnt == 0 {
                self.free.remove(id);
            }
            meta.ref_cnt += 1;
        }
    }

    /// Hands out `n` blocks from the front of the free queue, evicting their
    /// cached content, each with one reference. All or nothing.
    pub(crate) fn allocate(&mut self, n: usize, out: &mut Vec<BlockId>) -> Result<(), KvError> {
        if n > self.free.len() {
            return Err(KvError::NoFreeBlocks {
                needed: n,
                free: self.free.len(),
            });
        }
        out.reserve(n);
        for _ in 0..n {
            let Some(id) = self.free.pop_front() else {
                return Err(KvError::InvariantViolated(
                    "free queue shorter than its length".into(),
                ));
            };
            self.evict(id);
            self.blocks[id as usize].ref_cnt = 1;
            out.push(id);
        }
        Ok(())
    }

    fn evict(&mut self, id: BlockId) {
        if let Some(hash) = self.blocks[id as usize].hash.take() {
            if self.cached.get(&hash) == Some(&id) {
                self.cached.remove(&hash);
            }
        }
    }

    /// Registers a full block under its content hash. Returns false (and
    /// leaves the block uncached) when caching is off, the block already has
    /// a hash, or another block already caches this content.
    pub(crate) fn cache_block(&mut self, id: BlockId, hash: BlockHash) -> bool {
        if !self.enable_caching || self.blocks[id as usize].hash.is_some() {
            return false;
        }
        match self.cached.entry(hash) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(id);
                self.blocks[id as usize].hash = Some(hash);
                true
            }
        }
    }

    /// Removes a held block's hash from the index (its content will not be
    /// computed after all); a no-op for uncached blocks.
    pub(crate) fn uncache(&mut self, id: BlockId) {
        self.evict(id);
    }

    /// Drops one reference from each block, in the order given; blocks that
    /// become free join the queue (cached ones at the back in this order, so
    /// the first given is evicted first; uncached ones at the front).
    pub(crate) fn free(&mut self, ids: impl IntoIterator<Item = BlockId>) {
        for id in ids {
            let meta = &mut self.blocks[id as usize];
            meta.ref_cnt = meta.ref_cnt.saturating_sub(1);
            if meta.ref_cnt == 0 {
                if meta.hash.is_some() {
                    self.free.push_back(id);
                } else {
                    self.free.push_front(id);
                }
            }
        }
    }

    /// Forgets every cached hash. Refuses (returns false) while any block is
    /// held, since a held block's hash may be about to be hit.
    pub(crate) fn reset_prefix_cache(&mut self) -> bool {
        if self.free.len() != self.blocks.len() {
            return false;
        }
        self.cached.clear();
        for b in &mut self.blocks {
            b.hash = None;
        }
        true
    }

    /// Checks the pool's own invariants: a block is in the free queue iff its
    /// reference count is zero, the queue's links and length agree, and the
    /// hash index and the blocks' hashes mirror each other.
    pub fn check_invariants(&self) -> Result<(), KvError> {
        let bad = |m: String| Err(KvError::InvariantViolated(m));
        let walked: Vec<BlockId> = self.free.iter().collect();
        if walked.len() != self.free.len() {
            return bad(format!(
                "free queue links {} blocks, length says {}",
                walked.len(),
                self.free.len()
            ));
        }
        let mut seen = vec![false; self.blocks.len()];
        for &id in &walked {
            if std::mem::replace(&mut seen[id as usize], true) {
                return bad(format!("block {id} twice in the free queue"));
            }
        }
        for (id, meta) in self.blocks.iter().enumerate() {
            let free = seen[id];
            if free != (meta.ref_cnt == 0) {
                return bad(format!(
                    "block {id} has ref count {} but free={free}",
                    meta.ref_cnt
                ));
            }
            if let Some(h) = meta.hash {
                if self.cached.get(&h) != Some(&(id as BlockId)) {
                    return bad(format!(
                        "block {id} has a hash the index does not map to it"
                    ));
                }
            }
        }
        for (h, &id) in &self.cached {
            if self.blocks.get(id as usize).and_then(|b| b.hash) != Some(*h) {
                return bad(format!(
                    "index maps {h:?} to block {id}, which does not hold it"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash_block;

    fn h(i: u32) -> BlockHash {
        hash_block(None, &[i], &[])
    }

    #[test]
    fn allocate_and_free_conserve_blocks() {
        let mut pool = BlockPool::new(4, true).unwrap();
        let mut got = Vec::new();
        pool.allocate(3, &mut got).unwrap();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(pool.num_free_blocks(), 1);
        assert!(matches!(
            pool.allocate(2, &mut got),
            Err(KvError::NoFreeBlocks { needed: 2, free: 1 })
        ));
        assert_eq!(got.len(), 3, "a failed allocation changes nothing");
        pool.free(got.iter().copied());
        assert_eq!(pool.num_free_blocks(), 4);
        pool.check_invariants().unwrap();
    }

    #[test]
    fn cached_blocks_are_evicted_in_lru_order_and_uncached_first() {
        let mut pool = BlockPool::new(4, true).unwrap();
        let mut got = Vec::new();
        pool.allocate(4, &mut got).unwrap();
        assert!(pool.cache_block(0, h(0)));
        assert!(pool.cache_block(1, h(1)));
        assert!(pool.cache_block(2, h(2)));
        // Free in eviction order: 2 (tail of a prefix) before 1 before 0.
        pool.free([2, 1, 0, 3]);
        // Block 3 was never cached: it is reused first.
        let mut next = Vec::new();
        pool.allocate(2, &mut next).unwrap();
        assert_eq!(next, vec![3, 2]);
        assert_eq!(pool.cached_block(&h(2)), None, "block 2 was evicted");
        assert_eq!(pool.cached_block(&h(1)), Some(1));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn touch_revives_a_free_cached_block() {
        let mut pool = BlockPool::new(2, true).unwrap();
        let mut got = Vec::new();
        pool.allocate(1, &mut got).unwrap();
        pool.cache_block(0, h(7));
        pool.free([0]);
        assert!(pool.is_free(0));
        pool.touch(&[0]);
        assert!(!pool.is_free(0));
        assert_eq!(pool.ref_count(0), 1);
        assert_eq!(pool.block_hash(0), Some(h(7)));
        pool.check_invariants().unwrap();
    }

    #[test]
    fn one_block_per_hash_and_reset_only_when_idle() {
        let mut pool = BlockPool::new(3, true).unwrap();
        let mut got = Vec::new();
        pool.allocate(2, &mut got).unwrap();
        assert!(pool.cache_block(0, h(1)));
        assert!(
            !pool.cache_block(1, h(1)),
            "duplicate content stays uncached"
        );
        assert!(!pool.reset_prefix_cache());
        pool.free([0, 1]);
        assert!(pool.reset_prefix_cache());
        assert_eq!(pool.num_cached_blocks(), 0);
        pool.check_invariants().unwrap();
    }

    #[test]
    fn caching_disabled_never_indexes() {
        let mut pool = BlockPool::new(2, false).unwrap();
        let mut got = Vec::new();
        pool.allocate(1, &mut got).unwrap();
        assert!(!pool.cache_block(0, h(1)));
        assert_eq!(pool.cached_block(&h(1)), None);
    }

    #[test]
    fn rejects_empty_pool() {
        assert!(matches!(
            BlockPool::new(0, true),
            Err(KvError::InvalidConfig(_))
        ));
    }
}
