//! The KV cache manager: per-request block tables on top of the block pool.
//!
//! Follows vLLM v1's `KVCacheManager` for a single full-attention cache
//! group: [`KvCacheManager::get_computed_blocks`] finds the longest cached
//! prefix of full blocks, [`KvCacheManager::allocate_slots`] reserves the
//! blocks for a step's new tokens (all or nothing, so the scheduler can
//! preempt and retry) and registers newly filled blocks in the prefix cache,
//! and [`KvCacheManager::free`] releases a request's blocks, tail first, so
//! the end of a shared prefix is evicted before its head.
//!
//! With several KV cache groups (see [`crate::layout`]) a request holds one
//! block table per group. A group whose layers attend to a sliding window
//! or a chunk gives back the blocks its window has moved past, at the start
//! of each allocation (vLLM's `remove_skipped_blocks`); their places in the
//! table hold the *null block*, one block the manager keeps for itself, so
//! the table still maps position `p` to entry `p / block_size` and the
//! workers, which never read keys behind a window, need no other change.
//! Prefix caching applies to a cache of one full-attention group only: a
//! hybrid cache runs without it, as vLLM v0 did for sliding windows.
//!
//! The manager owns every block table; callers only ever see [`KvBlocks`],
//! an immutable list of ids they cannot forge or edit, and plain `u32` ids
//! to put in the scheduler output.

use model_files::AttentionWindow;
use rustc_hash::FxHashMap;

use crate::{BlockHashes, BlockId, BlockPool, KvError, RequestId};

/// Shape of the cache: how many blocks, how many tokens per block, and
/// whether full blocks are shared across requests by content hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheConfig {
    /// Number of blocks the GPU memory holds (after profiling).
    pub num_blocks: usize,
    /// Tokens per block (16 in vLLM's default).
    pub block_size: usize,
    /// Whether to reuse cached full blocks across requests.
    pub enable_prefix_caching: bool,
}

/// An immutable list of block ids handed out by the manager.
///
/// Only the manager creates one, so a caller can read the ids (to send to
/// workers) but never hand the manager a list it did not produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvBlocks {
    ids: Vec<BlockId>,
}

impl KvBlocks {
    /// The block ids, in block-table order.
    pub fn ids(&self) -> &[BlockId] {
        &self.ids
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ids as an owned vector, for the scheduler output.
    pub fn into_ids(self) -> Vec<BlockId> {
        self.ids
    }
}

/// The longest cached prefix found for a request: the blocks and how many
/// tokens they cover. Pass it back to `allocate_slots` unchanged; the
/// lookup counts in the hit-rate statistics only once that allocation
/// succeeds, so a request retried every step while it waits is counted once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComputedBlocks {
    /// The cached blocks, first block first (not yet referenced).
    pub blocks: KvBlocks,
    /// Tokens covered: `blocks.len() * block_size`.
    pub num_tokens: usize,
    /// Tokens the lookup covered (the request's length at the time).
    queried_tokens: usize,
}

/// Cumulative prefix-cache counters since the manager was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Lookups made (one per request admission).
    pub requests: u64,
    /// Tokens looked up.
    pub queried_tokens: u64,
    /// Tokens found cached.
    pub hit_tokens: u64,
}

impl PrefixCacheStats {
    /// Fraction of queried tokens that were cache hits (0 before any query).
    pub fn hit_rate(&self) -> f64 {
        if self.queried_tokens == 0 {
            0.0
        } else {
            self.hit_tokens as f64 / self.queried_tokens as f64
        }
    }
}

#[derive(Debug)]
struct RequestBlocks {
    /// One table per group, group 0 first.
    tables: Vec<Vec<BlockId>>,
    /// Per group, leading entries already given back to the pool (they
    /// hold the null block now).
    dropped: Vec<usize>,
    /// Leading blocks of group 0 already registered in the prefix cache.
    num_cached: usize,
}

impl RequestBlocks {
    fn new(num_groups: usize) -> Self {
        Self {
            tables: vec![Vec::new(); num_groups],
            dropped: vec![0; num_groups],
            num_cached: 0,
        }
    }
}

/// Per-request block tables over one [`BlockPool`].
#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    enable_caching: bool,
    /// The window each group keeps blocks for.
    group_windows: Vec<AttentionWindow>,
    /// The block standing in for dropped entries; held by the manager for
    /// its whole life. `None` when every group keeps every block.
    null_block: Option<BlockId>,
    requests: FxHashMap<RequestId, RequestBlocks>,
    stats: PrefixCacheStats,
}

impl KvCacheManager {
    /// A manager over a fresh pool of `config.num_blocks` blocks, with one
    /// full-attention group.
    pub fn new(config: KvCacheConfig) -> Result<Self, KvError> {
        Self::with_groups(config, &[AttentionWindow::Full])
    }

    /// A manager whose requests hold one block table per entry of
    /// `group_windows` ([`crate::KvCacheLayout::group_windows`]); a group
    /// with a window gives back the blocks it no longer sees.
    pub fn with_groups(
        config: KvCacheConfig,
        group_windows: &[AttentionWindow],
    ) -> Result<Self, KvError> {
        if config.block_size == 0 {
            return Err(KvError::InvalidConfig("block_size must be positive".into()));
        }
        if group_windows.is_empty() {
            return Err(KvError::InvalidConfig("no KV cache group".into()));
        }
        let single_full = group_windows == [AttentionWindow::Full];
        let enable_caching = config.enable_prefix_caching && single_full;
        let mut pool = BlockPool::new(config.num_blocks, enable_caching)?;
        let null_block = if single_full {
            None
        } else {
            let mut null = Vec::with_capacity(1);
            pool.allocate(1, &mut null)?;
            null.first().copied()
        };
        Ok(Self {
            pool,
            block_size: config.block_size,
            enable_caching,
            group_windows: group_windows.to_vec(),
            null_block,
            requests: FxHashMap::default(),
            stats: PrefixCacheStats::default(),
        })
    }

    /// Number of KV cache groups (block tables per request).
    pub fn num_groups(&self) -> usize {
        self.group_windows.len()
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Total blocks in the pool.
    pub fn num_blocks(&self) -> usize {
        self.pool.num_blocks()
    }

    /// Blocks free or evictable now.
    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free_blocks()
    }

    /// Fraction of blocks held by requests, in `[0, 1]`.
    pub fn usage(&self) -> f64 {
        self.pool.usage()
    }

    /// Cumulative prefix-cache counters.
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.stats
    }

    /// Read-only view of the pool, for metrics and invariant checks.
    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// The request's block table of group 0 (empty when it holds none):
    /// its only table unless the cache is hybrid.
    pub fn block_ids(&self, request: &RequestId) -> &[BlockId] {
        self.requests
            .get(request)
            .and_then(|r| r.tables.first())
            .map_or(&[], Vec::as_slice)
    }

    /// The request's block tables, one per group (empty when it holds none).
    pub fn block_tables(&self, request: &RequestId) -> &[Vec<BlockId>] {
        self.requests
            .get(request)
            .map_or(&[], |r| r.tables.as_slice())
    }

    /// Blocks needed to hold `num_tokens` tokens in one table.
    pub fn blocks_for_tokens(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// The most blocks, over all groups, a request of `num_tokens` tokens
    /// can hold at once when no step computes more than `max_step_tokens`
    /// tokens: a windowed group holds its window plus one step, a full
    /// group every position. A request needing more than the pool can
    /// never run.
    pub fn max_blocks_held(&self, num_tokens: usize, max_step_tokens: usize) -> usize {
        let full = self.blocks_for_tokens(num_tokens);
        let null = usize::from(self.null_block.is_some());
        self.group_windows
            .iter()
            .map(|window| {
                let span = match *window {
                    AttentionWindow::Full => return full,
                    AttentionWindow::Sliding(n) | AttentionWindow::Chunked(n) => n,
                };
                // The window's reach plus the step, and one block each for
                // a window start and a step end that are not block-aligned.
                full.min(self.blocks_for_tokens(span.saturating_add(max_step_tokens)) + 2)
            })
            .sum::<usize>()
            + null
    }

    /// Index of the first entry group `group` still needs once `position`
    /// is the first position a step computes: every query of the step is
    /// at `position` or later, and windows only move forward.
    fn first_live_block(&self, group: usize, position: usize) -> usize {
        self.group_windows
            .get(group)
            .map_or(0, |w| w.first_visible(position) / self.block_size)
    }

    /// Gives back the blocks every windowed group of `request` has moved
    /// past once `position` is the next position to compute; their entries
    /// become the null block.
    fn drop_out_of_window(&mut self, request: &RequestId, position: usize) {
        let Some(null) = self.null_block else {
            return;
        };
        let firsts: Vec<usize> = (0..self.group_windows.len())
            .map(|g| self.first_live_block(g, position))
            .collect();
        let Some(entry) = self.requests.get_mut(request) else {
            return;
        };
        for ((table, dropped), first) in entry.tables.iter_mut().zip(&mut entry.dropped).zip(firsts)
        {
            let end = first.min(table.len());
            for block in table.get_mut(*dropped..end).unwrap_or_default() {
                if *block != null {
                    self.pool.free([*block]);
                    *block = null;
                }
            }
            *dropped = (*dropped).max(end);
        }
    }

    fn check_block_size(&self, hashes: &BlockHashes) -> Result<(), KvError> {
        if hashes.block_size() != self.block_size {
            return Err(KvError::BlockSizeMismatch {
                expected: self.block_size,
                got: hashes.block_size(),
            });
        }
        Ok(())
    }

    /// Finds the longest prefix of the request's full blocks that is cached.
    ///
    /// `num_tokens` is the request's current token count; at least its last
    /// token is always left to compute, since the model must run on it to
    /// produce logits. Nothing is referenced yet: pass the result to
    /// [`Self::allocate_slots`] right away.
    pub fn get_computed_blocks(
        &self,
        hashes: &BlockHashes,
        num_tokens: usize,
    ) -> Result<ComputedBlocks, KvError> {
        self.check_block_size(hashes)?;
        if !self.enable_caching || num_tokens == 0 {
            return Ok(ComputedBlocks::default());
        }
        let max_blocks = ((num_tokens - 1) / self.block_size).min(hashes.len());
        let mut ids = Vec::new();
        for hash in &hashes.as_slice()[..max_blocks] {
            match self.pool.cached_block(hash) {
                Some(id) => ids.push(id),
                None => break,
            }
        }
        let hit = ids.len() * self.block_size;
        Ok(ComputedBlocks {
            blocks: KvBlocks { ids },
            num_tokens: hit,
            queried_tokens: num_tokens,
        })
    }

    /// Reserves blocks so the request can hold `num_computed_tokens` +
    /// `computed.num_tokens` + `num_new_tokens` tokens, and returns the
    /// blocks newly allocated for it (not counting `computed`).
    ///
    /// `num_computed_tokens` counts the tokens the request had computed
    /// before this call (0 for a new or resumed request); `computed` is the
    /// cached prefix from [`Self::get_computed_blocks`], only for a request
    /// that holds no blocks yet. Full blocks covered after this step are
    /// registered in the prefix cache. Returns one list per group, in
    /// table order (null entries included). On [`KvError::NoFreeBlocks`]
    /// nothing changed but the return of blocks behind a window, and the
    /// caller may preempt another request and retry.
    pub fn allocate_slots(
        &mut self,
        request: &RequestId,
        num_computed_tokens: usize,
        num_new_tokens: usize,
        computed: Option<&ComputedBlocks>,
        hashes: &BlockHashes,
    ) -> Result<Vec<KvBlocks>, KvError> {
        self.check_block_size(hashes)?;
        let computed_ids: &[BlockId] = computed.map_or(&[], |c| c.blocks.ids());
        let held: Vec<usize> = match self.requests.get(request) {
            Some(entry) => entry.tables.iter().map(Vec::len).collect(),
            None => vec![0; self.num_groups()],
        };
        if !computed_ids.is_empty() {
            if held.iter().any(|&n| n != 0) {
                return Err(KvError::ComputedBlocksAfterStart(request.clone()));
            }
            let stale = computed_ids
                .iter()
                .zip(hashes.as_slice())
                .any(|(&id, h)| self.pool.block_hash(id) != Some(*h))
                || computed_ids.len() > hashes.len();
            if stale {
                return Err(KvError::StaleComputedBlocks(request.clone()));
            }
        }
        let total_computed = num_computed_tokens + computed_ids.len() * self.block_size;
        let total_tokens = total_computed + num_new_tokens;
        self.drop_out_of_window(request, total_computed);
        let needed = self.blocks_for_tokens(total_tokens);
        // Per group: entries to fill with the null block (behind the
        // window already) and entries that need a block.
        let mut growth = Vec::with_capacity(self.num_groups());
        for (group, &held) in held.iter().enumerate() {
            let held = if group == 0 {
                held + computed_ids.len()
            } else {
                held
            };
            let first_live = self.first_live_block(group, total_computed);
            let nulls = first_live.min(needed).saturating_sub(held);
            let blocks = needed.saturating_sub(held.max(first_live));
            growth.push((nulls, blocks));
        }
        let to_allocate: usize = growth.iter().map(|&(_, b)| b).sum();
        let revived = computed_ids
            .iter()
            .filter(|&&id| self.pool.ref_count(id) == 0)
            .count();
        if to_allocate + revived > self.pool.num_free_blocks() {
            return Err(KvError::NoFreeBlocks {
                needed: to_allocate + revived,
                free: self.pool.num_free_blocks(),
            });
        }
        if growth.iter().all(|&(n, b)| n == 0 && b == 0) && computed_ids.is_empty() {
            // Decode fast path: no new block; maybe one became full.
            if let Some(entry) = self.requests.get_mut(request) {
                Self::cache_full_blocks_of(
                    &mut self.pool,
                    self.block_size,
                    entry,
                    total_tokens,
                    hashes,
                );
            }
            return Ok(vec![KvBlocks::default(); self.num_groups()]);
        }
        if let Some(c) = computed.filter(|c| c.queried_tokens > 0) {
            self.stats.requests += 1;
            self.stats.queried_tokens += c.queried_tokens as u64;
            self.stats.hit_tokens += c.num_tokens as u64;
        }
        self.pool.touch(computed_ids);
        let num_groups = self.num_groups();
        let null = self.null_block;
        let entry = self
            .requests
            .entry(request.clone())
            .or_insert_with(|| RequestBlocks::new(num_groups));
        entry.num_cached = entry.num_cached.max(computed_ids.len());
        let mut new_blocks = Vec::with_capacity(num_groups);
        for (group, (nulls, blocks)) in growth.into_iter().enumerate() {
            let mut ids = Vec::with_capacity(nulls + blocks);
            if group == 0 {
                ids.extend_from_slice(computed_ids);
            }
            if let Some(null) = null {
                ids.resize(ids.len() + nulls, null);
            }
            self.pool.allocate(blocks, &mut ids)?;
            let table = &mut entry.tables[group];
            table.extend_from_slice(&ids);
            if nulls > 0 {
                entry.dropped[group] = entry.dropped[group].max(table.len() - blocks);
            }
            if group == 0 {
                ids.drain(..computed_ids.len());
            }
            new_blocks.push(KvBlocks { ids });
        }
        self.cache_full_blocks(request, total_tokens, hashes);
        Ok(new_blocks)
    }

    fn cache_full_blocks(&mut self, request: &RequestId, num_tokens: usize, hashes: &BlockHashes) {
        if let Some(entry) = self.requests.get_mut(request) {
            Self::cache_full_blocks_of(&mut self.pool, self.block_size, entry, num_tokens, hashes);
        }
    }

    /// Registers the request's blocks that are full once `num_tokens` tokens
    /// are computed (a no-op when caching is off: the pool refuses).
    fn cache_full_blocks_of(
        pool: &mut BlockPool,
        block_size: usize,
        entry: &mut RequestBlocks,
        num_tokens: usize,
        hashes: &BlockHashes,
    ) {
        let Some(table) = entry.tables.first() else {
            return;
        };
        let full = (num_tokens / block_size).min(hashes.len()).min(table.len());
        if full <= entry.num_cached {
            return;
        }
        let newly_full = table[entry.num_cached..full]
            .iter()
            .zip(&hashes.as_slice()[entry.num_cached..full]);
        for (&block, &hash) in newly_full {
            pool.cache_block(block, hash);
        }
        entry.num_cached = full;
    }

    /// Releases all of the request's blocks at once and forgets its table.
    ///
    /// Blocks are released tail first, so a cached prefix is evicted from
    /// its end and a later request sharing only its head still hits.
    /// Returns how many blocks the request held; 0 for an unknown request.
    pub fn free(&mut self, request: &RequestId) -> usize {
        let Some(entry) = self.requests.remove(request) else {
            return 0;
        };
        let live = |b: &&BlockId| Some(**b) != self.null_block;
        let n = entry.tables.iter().flatten().filter(live).count();
        for table in &entry.tables {
            self.pool.free(table.iter().rev().filter(live).copied());
        }
        n
    }

    /// Withdraws from the prefix cache the request's blocks past its first
    /// `num_computed_tokens` tokens that it alone holds.
    ///
    /// `allocate_slots` registers full blocks when it reserves them, trusting
    /// the step to compute them; when the scheduler takes a step back (a
    /// request scheduled earlier in the same `schedule()` call is preempted
    /// before it ever runs) those blocks would otherwise be found by later
    /// prefix lookups without valid KV. Call this before [`Self::free`].
    pub fn uncache_beyond(&mut self, request: &RequestId, num_computed_tokens: usize) {
        let Some(entry) = self.requests.get_mut(request) else {
            return;
        };
        let keep = (num_computed_tokens / self.block_size).min(entry.num_cached);
        let cached = entry
            .tables
            .first()
            .map_or(&[][..], |t| &t[keep..entry.num_cached]);
        for &id in cached {
            if self.pool.ref_count(id) == 1 {
                self.pool.uncache(id);
            }
        }
        entry.num_cached = keep;
    }

    /// Withdraws `blocks` from the prefix cache whoever holds them: a step
    /// that was to compute them failed, so no later lookup may find them.
    pub fn uncache_blocks(&mut self, blocks: &[BlockId]) {
        for &id in blocks {
            if (id as usize) < self.pool.num_blocks() {
                self.pool.uncache(id);
            }
        }
        for entry in self.requests.values_mut() {
            let cached = entry
                .tables
                .first()
                .map_or(&[][..], |t| &t[..entry.num_cached]);
            if let Some(first) = cached.iter().position(|b| blocks.contains(b)) {
                entry.num_cached = first;
            }
        }
    }

    /// Forgets every cached prefix (e.g. after swapping weights). Returns
    /// false and does nothing while any request still holds blocks.
    pub fn reset_prefix_cache(&mut self) -> bool {
        if self.null_block.is_some() {
            // A hybrid cache caches nothing; the null block is always held.
            return self.requests.is_empty();
        }
        self.pool.reset_prefix_cache()
    }

    /// Number of requests holding a block table.
    pub fn num_requests(&self) -> usize {
        self.requests.len()
    }

    /// Checks the pool's invariants and that every block's reference count
    /// equals the number of block tables listing it, and that no table lists
    /// a block twice. Cost is linear in blocks; for tests and debugging.
    pub fn check_invariants(&self) -> Result<(), KvError> {
        self.pool.check_invariants()?;
        let mut holders = vec![0u32; self.pool.num_blocks()];
        if let Some(null) = self.null_block {
            holders[null as usize] = 1;
        }
        for (id, entry) in &self.requests {
            let mut mine: Vec<BlockId> = entry
                .tables
                .iter()
                .flatten()
                .copied()
                .filter(|&b| Some(b) != self.null_block)
                .collect();
            mine.sort_unstable();
            if mine.windows(2).any(|w| w[0] == w[1]) {
                return Err(KvError::InvariantViolated(format!(
                    "request {id} lists a block twice"
                )));
            }
            for (table, &dropped) in entry.tables.iter().zip(&entry.dropped) {
                if table
                    .get(..dropped)
                    .is_some_and(|t| t.iter().any(|&b| Some(b) != self.null_block))
                {
                    return Err(KvError::InvariantViolated(format!(
                        "request {id} holds a block it dropped"
                    )));
                }
            }
            for &b in &mine {
                match holders.get_mut(b as usize) {
                    Some(h) => *h += 1,
                    None => {
                        return Err(KvError::InvariantViolated(format!(
                            "request {id} holds unknown block {b}"
                        )))
                    }
                }
            }
        }
        for (b, &h) in holders.iter().enumerate() {
            let rc = self.pool.ref_count(b as BlockId);
            if rc != h {
                return Err(KvError::InvariantViolated(format!(
                    "block {b} has ref count {rc} but {h} holders"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockHashExtras, BlockHashes};

    const BS: usize = 4;

    fn manager(num_blocks: usize) -> KvCacheManager {
        KvCacheManager::new(KvCacheConfig {
            num_blocks,
            block_size: BS,
            enable_prefix_caching: true,
        })
        .unwrap()
    }

    fn hashes_of(tokens: &[u32], extras: BlockHashExtras) -> BlockHashes {
        let mut h = BlockHashes::new(BS, extras).unwrap();
        h.update(tokens);
        h
    }

    /// Admits a request the way the scheduler does: prefix lookup, then one
    /// allocation for the whole rest of the prompt. Returns the hit tokens.
    fn admit(m: &mut KvCacheManager, id: &str, tokens: &[u32], extras: BlockHashExtras) -> usize {
        let h = hashes_of(tokens, extras);
        let computed = m.get_computed_blocks(&h, tokens.len()).unwrap();
        let hit = computed.num_tokens;
        m.allocate_slots(
            &RequestId::from(id),
            0,
            tokens.len() - hit,
            Some(&computed),
            &h,
        )
        .unwrap();
        hit
    }

    #[test]
    fn shared_system_prompt_hits_across_requests() {
        let mut m = manager(32);
        let system: Vec<u32> = (100..112).collect(); // 3 full blocks
        let a: Vec<u32> = system.iter().copied().chain([1, 2, 3]).collect();
        let b: Vec<u32> = system.iter().copied().chain([7, 8, 9, 10, 11]).collect();
        assert_eq!(admit(&mut m, "a", &a, BlockHashExtras::default()), 0);
        assert_eq!(admit(&mut m, "b", &b, BlockHashExtras::default()), 12);
        let (ra, rb) = (RequestId::from("a"), RequestId::from("b"));
        assert_eq!(m.block_ids(&ra)[..3], m.block_ids(&rb)[..3]);
        assert_ne!(m.block_ids(&ra)[3], m.block_ids(&rb)[3]);
        for &shared in &m.block_ids(&ra)[..3] {
            assert_eq!(m.pool().ref_count(shared), 2);
        }
        let stats = m.prefix_cache_stats();
        assert_eq!(stats.requests, 2);
        assert_eq!(stats.hit_tokens, 12);
        assert!((stats.hit_rate() - 12.0 / 32.0).abs() < 1e-9);
        m.check_invariants().unwrap();
    }

    #[test]
    fn different_extra_keys_never_share_blocks() {
        let mut m = manager(32);
        let prompt: Vec<u32> = (0..13).collect();
        let lora = |name: &str| BlockHashExtras {
            adapter: Some(name.into()),
            ..Default::default()
        };
        assert_eq!(admit(&mut m, "a", &prompt, lora("x")), 0);
        assert_eq!(admit(&mut m, "b", &prompt, lora("y")), 0);
        assert_eq!(admit(&mut m, "c", &prompt, BlockHashExtras::default()), 0);
        let salted = BlockHashExtras {
            cache_salt: Some("tenant".into()),
            ..Default::default()
        };
        assert_eq!(admit(&mut m, "d", &prompt, salted.clone()), 0);
        // The same keys do hit.
        assert_eq!(admit(&mut m, "e", &prompt, lora("x")), 12);
        assert_eq!(admit(&mut m, "f", &prompt, salted), 12);
        m.check_invariants().unwrap();
    }

    #[test]
    fn full_prompt_hit_still_leaves_the_last_token() {
        let mut m = manager(8);
        let prompt: Vec<u32> = (0..8).collect(); // exactly 2 blocks
        admit(&mut m, "a", &prompt, BlockHashExtras::default());
        assert_eq!(admit(&mut m, "b", &prompt, BlockHashExtras::default()), 4);
    }

    #[test]
    fn allocation_failure_changes_nothing() {
        let mut m = manager(4);
        let h = hashes_of(&[0; 12], BlockHashExtras::default());
        let a = RequestId::from("a");
        m.allocate_slots(&a, 0, 12, None, &h).unwrap();
        let h2 = hashes_of(&[1; 8], BlockHashExtras::default());
        let err = m
            .allocate_slots(&RequestId::from("b"), 0, 8, None, &h2)
            .unwrap_err();
        assert_eq!(err, KvError::NoFreeBlocks { needed: 2, free: 1 });
        assert_eq!(m.num_free_blocks(), 1);
        assert_eq!(m.block_ids(&RequestId::from("b")), &[] as &[u32]);
        m.check_invariants().unwrap();
    }

    #[test]
    fn decode_allocates_a_block_only_when_one_fills() {
        let mut m = manager(8);
        let a = RequestId::from("a");
        let mut tokens: Vec<u32> = (0..5).collect();
        let mut h = hashes_of(&tokens, BlockHashExtras::default());
        assert_eq!(m.allocate_slots(&a, 0, 5, None, &h).unwrap()[0].len(), 2);
        for t in 5..9u32 {
            // Tokens 0..t are computed; token t is this step's input.
            tokens.push(t);
            h.update(&tokens);
            let new = m.allocate_slots(&a, t as usize, 1, None, &h).unwrap();
            // Slot for token index t lives in block t / BS.
            assert_eq!(new[0].len(), usize::from(t as usize % BS == 0));
        }
        assert_eq!(m.block_ids(&a).len(), 3);
        assert_eq!(m.pool().num_cached_blocks(), 2);
        m.check_invariants().unwrap();
    }

    #[test]
    fn free_evicts_the_tail_of_a_prefix_before_its_head() {
        let mut m = manager(4);
        let prompt: Vec<u32> = (0..13).collect(); // 3 full blocks + 1 token
        admit(&mut m, "a", &prompt, BlockHashExtras::default());
        assert_eq!(m.free(&RequestId::from("a")), 4);
        assert_eq!(m.num_free_blocks(), 4);
        // Take two blocks: the uncached partial one, then the tail of the prefix.
        let other = hashes_of(&[9; 8], BlockHashExtras::default());
        m.allocate_slots(&RequestId::from("x"), 0, 8, None, &other)
            .unwrap();
        // The first two blocks of the prefix survive and still hit.
        let h = hashes_of(&prompt, BlockHashExtras::default());
        assert_eq!(
            m.get_computed_blocks(&h, prompt.len()).unwrap().num_tokens,
            8
        );
        m.check_invariants().unwrap();
    }

    #[test]
    fn stale_computed_blocks_are_refused() {
        let mut m = manager(3);
        let prompt: Vec<u32> = (0..9).collect();
        admit(&mut m, "a", &prompt, BlockHashExtras::default());
        m.free(&RequestId::from("a"));
        let h = hashes_of(&prompt, BlockHashExtras::default());
        let computed = m.get_computed_blocks(&h, prompt.len()).unwrap();
        assert_eq!(computed.blocks.len(), 2);
        // Someone else takes every block, evicting the prefix.
        let other = hashes_of(&[5; 12], BlockHashExtras::default());
        m.allocate_slots(&RequestId::from("x"), 0, 12, None, &other)
            .unwrap();
        m.free(&RequestId::from("x"));
        let err = m
            .allocate_slots(&RequestId::from("b"), 0, 1, Some(&computed), &h)
            .unwrap_err();
        assert_eq!(err, KvError::StaleComputedBlocks(RequestId::from("b")));
        m.check_invariants().unwrap();
    }

    #[test]
    fn uncache_beyond_withdraws_uncomputed_blocks() {
        let mut m = manager(8);
        let prompt: Vec<u32> = (0..13).collect();
        let h = hashes_of(&prompt, BlockHashExtras::default());
        let a = RequestId::from("a");
        // Scheduled all 13 tokens (3 full blocks cached), but only 4 computed.
        m.allocate_slots(&a, 0, 13, None, &h).unwrap();
        assert_eq!(m.pool().num_cached_blocks(), 3);
        m.uncache_beyond(&a, 4);
        assert_eq!(m.pool().num_cached_blocks(), 1);
        m.free(&a);
        assert_eq!(m.get_computed_blocks(&h, 13).unwrap().num_tokens, 4);
        m.check_invariants().unwrap();
    }

    #[test]
    fn reset_prefix_cache_only_when_idle() {
        let mut m = manager(8);
        let prompt: Vec<u32> = (0..9).collect();
        admit(&mut m, "a", &prompt, BlockHashExtras::default());
        assert!(!m.reset_prefix_cache());
        m.free(&RequestId::from("a"));
        assert!(m.reset_prefix_cache());
        assert_eq!(admit(&mut m, "b", &prompt, BlockHashExtras::default()), 0);
    }

    #[test]
    fn usage_counts_held_blocks() {
        let mut m = manager(10);
        assert_eq!(m.usage(), 0.0);
        admit(
            &mut m,
            "a",
            &(0..10).collect::<Vec<_>>(),
            BlockHashExtras::default(),
        );
        assert!((m.usage() - 0.3).abs() < 1e-9);
        m.free(&RequestId::from("a"));
        assert_eq!(m.usage(), 0.0);
    }

    #[test]
    fn lookups_count_in_stats_only_when_admitted() {
        let mut m = manager(8);
        let prompt: Vec<u32> = (0..9).collect();
        let h = hashes_of(&prompt, BlockHashExtras::default());
        for _ in 0..3 {
            m.get_computed_blocks(&h, prompt.len()).unwrap();
        }
        assert_eq!(m.prefix_cache_stats(), PrefixCacheStats::default());
        admit(&mut m, "a", &prompt, BlockHashExtras::default());
        let stats = m.prefix_cache_stats();
        assert_eq!(
            (stats.requests, stats.queried_tokens, stats.hit_tokens),
            (1, 9, 0)
        );
    }

    #[test]
    fn block_size_mismatch_is_an_error() {
        let m = manager(4);
        let h = BlockHashes::new(8, BlockHashExtras::default()).unwrap();
        assert!(matches!(
            m.get_computed_blocks(&h, 4),
            Err(KvError::BlockSizeMismatch { .. })
        ));
    }

    fn hybrid(num_blocks: usize, windows: &[AttentionWindow]) -> KvCacheManager {
        KvCacheManager::with_groups(
            KvCacheConfig {
                num_blocks,
                block_size: BS,
                enable_prefix_caching: true,
            },
            windows,
        )
        .unwrap()
    }

    /// Runs `len` tokens through `m` as one prompt step then decode steps;
    /// checks the invariants after each.
    fn grow(
        m: &mut KvCacheManager,
        id: &RequestId,
        prompt: usize,
        len: usize,
    ) -> Result<(), KvError> {
        let tokens: Vec<u32> = (0..len as u32).collect();
        let h = hashes_of(&tokens, BlockHashExtras::default());
        m.allocate_slots(id, 0, prompt, None, &h)?;
        for computed in prompt..len {
            m.allocate_slots(id, computed, 1, None, &h)?;
            m.check_invariants().unwrap();
        }
        Ok(())
    }

    #[test]
    fn a_sliding_group_keeps_only_the_blocks_its_window_sees() {
        // Window 8 over blocks of 4: a query at p sees p-7..=p.
        let mut m = hybrid(16, &[AttentionWindow::Full, AttentionWindow::Sliding(8)]);
        assert!(!m.enable_caching, "a hybrid cache does not cache prefixes");
        let a = RequestId::from("a");
        grow(&mut m, &a, 6, 40).unwrap();
        let [full, sliding] = m.block_tables(&a) else {
            panic!("two groups")
        };
        assert_eq!(full.len(), 10);
        assert_eq!(sliding.len(), 10);
        let null = m.null_block.unwrap();
        // The last step computed position 39: it sees 32..=39, blocks 8, 9.
        let live: Vec<_> = sliding.iter().filter(|&&b| b != null).collect();
        assert_eq!(live.len(), 2, "{sliding:?}");
        assert!(sliding[..8].iter().all(|&b| b == null));
        // 10 full + 2 sliding + the null block.
        assert_eq!(m.num_free_blocks(), 16 - 13);
        assert_eq!(m.free(&a), 12);
        assert_eq!(m.num_free_blocks(), 15);
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_chunked_group_drops_a_chunk_once_the_next_begins() {
        let mut m = hybrid(32, &[AttentionWindow::Full, AttentionWindow::Chunked(8)]);
        let a = RequestId::from("a");
        // A prompt of 20 in one step: it needs every block (position 0's
        // query is in the step), then decode from 20 on.
        grow(&mut m, &a, 20, 21).unwrap();
        let null = m.null_block.unwrap();
        // The step from 20 sees chunk 16..24: blocks 0..4 are gone.
        let chunked = &m.block_tables(&a)[1];
        assert_eq!(chunked.len(), 6);
        assert!(chunked[..4].iter().all(|&b| b == null), "{chunked:?}");
        assert!(chunked[4..].iter().all(|&b| b != null));
        m.check_invariants().unwrap();
    }

    #[test]
    fn a_resumed_request_past_the_window_gets_null_entries_not_blocks() {
        let mut m = hybrid(32, &[AttentionWindow::Sliding(4)]);
        let a = RequestId::from("a");
        let tokens: Vec<u32> = (0..40).collect();
        let h = hashes_of(&tokens, BlockHashExtras::default());
        // A chunk from 32 (as if 0..32 were computed on another table):
        // the step sees 29.. so only blocks 7..10 are needed.
        let new = m.allocate_slots(&a, 32, 8, None, &h).unwrap();
        let null = m.null_block.unwrap();
        assert_eq!(new[0].len(), 10);
        assert_eq!(new[0].ids().iter().filter(|&&b| b != null).count(), 3);
        m.check_invariants().unwrap();
    }

    #[test]
    fn the_largest_need_is_bounded_by_the_window_and_the_step() {
        let m = hybrid(1000, &[AttentionWindow::Full, AttentionWindow::Sliding(8)]);
        // Full: 250 blocks; sliding: (8 + 16) / 4 + 2 = 8; null: 1.
        assert_eq!(m.max_blocks_held(1000, 16), 250 + 8 + 1);
        assert_eq!(manager(10).max_blocks_held(1000, 16), 250);
        // Short requests never need more than their length.
        assert_eq!(m.max_blocks_held(4, 16), 1 + 1 + 1);
    }
}
