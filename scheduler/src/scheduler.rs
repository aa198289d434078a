//! The continuous-batching scheduler: one `schedule()` per engine step,
//! then one `update_from_output()` with what the workers sampled.
//!
//! Follows vLLM v1's `Scheduler` (`vllm/v1/core/sched/scheduler.py`):
//! there is no separate prefill or decode phase, only a token budget per
//! step. Running requests are served first, in order, each getting the
//! tokens it still lacks (one for a decode, a chunk for a prefill), capped
//! by the long-prefill threshold and the remaining budget. When the KV
//! cache cannot hold a running request's new tokens, the scheduler preempts
//! by recompute: the victim (lowest priority, then latest arrival) loses its
//! blocks and returns to the waiting queue with its output tokens kept.
//! Only if nobody was preempted are waiting requests admitted, in policy
//! order, each starting after its longest cached prefix.
//!
//! `num_computed_tokens` advances when a step is scheduled (as in vLLM), so
//! each `schedule()` must be followed by the `update_from_output()` for its
//! output before the next `schedule()`. No clocks, threads or I/O here.

use kv_cache::BlockHashes;
use kv_cache::{
    AttentionWindow, ComputedBlocks, KvBlocks, KvCacheConfig, KvCacheManager, KvError,
    PrefixCacheStats, RequestId,
};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::queue::{PriorityKey, WaitingQueue};
use crate::stop::check_stop;
use crate::{
    CachedRequestData, ModelRunnerOutput, NewRequestData, Request, RequestOutput, RequestStatus,
    SchedulerConfig, SchedulerError, SchedulerOutput, SchedulingPolicy,
};

/// A request and the chained hashes of its full blocks.
#[derive(Debug)]
struct Entry {
    req: Request,
    hashes: BlockHashes,
}

impl Entry {
    fn key(&self) -> PriorityKey {
        PriorityKey {
            priority: self.req.priority,
            arrival_time: self.req.arrival_time,
            seq: self.req.seq,
        }
    }
}

fn lookup<'a>(
    map: &'a FxHashMap<RequestId, Entry>,
    id: &RequestId,
) -> Result<&'a Entry, SchedulerError> {
    map.get(id)
        .ok_or_else(|| SchedulerError::UnknownRequest(id.clone()))
}

fn lookup_mut<'a>(
    map: &'a mut FxHashMap<RequestId, Entry>,
    id: &RequestId,
) -> Result<&'a mut Entry, SchedulerError> {
    map.get_mut(id)
        .ok_or_else(|| SchedulerError::UnknownRequest(id.clone()))
}

/// Tokens to schedule for a request that has computed `computed` of `total`
/// tokens, within `budget` and the long-prefill threshold.
fn tokens_to_schedule(
    config: &SchedulerConfig,
    computed: usize,
    total: usize,
    budget: usize,
) -> usize {
    let mut n = total.saturating_sub(computed);
    if let Some(t) = config.long_prefill_token_threshold {
        n = n.min(t);
    }
    n.min(budget)
}

/// Counters for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerStats {
    /// Requests in the running batch.
    pub num_running: usize,
    /// Requests waiting (new or preempted).
    pub num_waiting: usize,
    /// Fraction of KV blocks held.
    pub kv_cache_usage: f64,
    /// Prefix-cache counters since start.
    pub prefix_cache: PrefixCacheStats,
    /// Preemptions since start.
    pub num_preemptions: u64,
}

/// Decides, step by step, which requests run and how many tokens each.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    kv: KvCacheManager,
    requests: FxHashMap<RequestId, Entry>,
    waiting: WaitingQueue,
    running: Vec<RequestId>,
    /// Finished or aborted since the last `schedule()`, for the workers.
    finished_pending: Vec<RequestId>,
    next_seq: u64,
    num_preemptions: u64,
}

impl Scheduler {
    /// A scheduler over a fresh KV cache.
    pub fn new(config: SchedulerConfig, kv_config: KvCacheConfig) -> Result<Self, SchedulerError> {
        Self::with_kv_groups(config, kv_config, &[AttentionWindow::Full])
    }

    /// A scheduler whose requests hold one block table per KV cache group
    /// (`kv_cache::KvCacheLayout::group_windows`), so windowed layers give
    /// back the blocks they no longer see.
    pub fn with_kv_groups(
        config: SchedulerConfig,
        kv_config: KvCacheConfig,
        group_windows: &[AttentionWindow],
    ) -> Result<Self, SchedulerError> {
        config.validate()?;
        Ok(Self {
            waiting: WaitingQueue::new(config.policy),
            kv: KvCacheManager::with_groups(kv_config, group_windows)?,
            config,
            requests: FxHashMap::default(),
            running: Vec::new(),
            finished_pending: Vec::new(),
            next_seq: 0,
            num_preemptions: 0,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The KV cache manager, read-only (usage, block tables, invariants).
    pub fn kv_cache(&self) -> &KvCacheManager {
        &self.kv
    }

    /// A waiting or running request.
    pub fn get_request(&self, id: &RequestId) -> Option<&Request> {
        self.requests.get(id).map(|e| &e.req)
    }

    /// Requests in the running batch.
    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    /// Requests waiting for admission.
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether any request is still waiting or running.
    pub fn has_unfinished_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Whether finished ids wait to be reported in the next output.
    pub fn has_finished_pending(&self) -> bool {
        !self.finished_pending.is_empty()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            num_running: self.running.len(),
            num_waiting: self.waiting.len(),
            kv_cache_usage: self.kv.usage(),
            prefix_cache: self.kv.prefix_cache_stats(),
            num_preemptions: self.num_preemptions,
        }
    }

    /// Forgets every cached prefix; false (nothing done) while requests hold blocks.
    pub fn reset_prefix_cache(&mut self) -> bool {
        self.kv.reset_prefix_cache()
    }

    /// Queues a request after checking it can ever run.
    pub fn add_request(&mut self, mut req: Request) -> Result<(), SchedulerError> {
        let id = req.id.clone();
        if self.requests.contains_key(&id) {
            return Err(SchedulerError::DuplicateRequest(id));
        }
        let len = req.num_prompt_tokens();
        if len == 0 {
            return Err(SchedulerError::EmptyPrompt(id));
        }
        let max_model_len = self.config.max_model_len;
        if len > max_model_len {
            return Err(SchedulerError::PromptTooLong {
                id,
                len,
                max_model_len,
            });
        }
        let stop = &req.stop;
        if stop.max_tokens == 0 {
            return Err(SchedulerError::InvalidStopParams {
                id,
                reason: "max_tokens must be at least 1".into(),
            });
        }
        if stop.min_tokens > stop.max_tokens {
            return Err(SchedulerError::InvalidStopParams {
                id,
                reason: "min_tokens exceeds max_tokens".into(),
            });
        }
        let longest = len
            .saturating_add(stop.max_tokens)
            .min(max_model_len)
            .max(len);
        let needed = self
            .kv
            .max_blocks_held(longest, self.config.max_num_batched_tokens);
        if needed > self.kv.num_blocks() {
            return Err(SchedulerError::ExceedsKvCapacity {
                id,
                needed,
                total: self.kv.num_blocks(),
            });
        }
        let mut hashes = BlockHashes::new(self.kv.block_size(), req.hash_extras.clone())?;
        hashes.update(&req.all_token_ids);
        req.status = RequestStatus::Waiting;
        req.num_computed_tokens = 0;
        req.seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry { req, hashes };
        self.waiting.push(id.clone(), entry.key());
        self.requests.insert(id, entry);
        Ok(())
    }

    /// Index in `running` of the request to preempt: lowest priority (under
    /// the priority policy), then latest arrival, then latest admission.
    fn pick_victim(&self) -> Option<usize> {
        let policy = self.config.policy;
        let key = |id: &RequestId| {
            self.requests.get(id).map(|e| {
                let mut k = e.key();
                if policy == SchedulingPolicy::Fcfs {
                    k.priority = 0;
                }
                k
            })
        };
        self.running
            .iter()
            .enumerate()
            .filter_map(|(i, id)| key(id).map(|k| (k, i)))
            .max()
            .map(|(_, i)| i)
    }

    /// Preempts by recompute: frees the blocks, keeps the tokens, requeues.
    /// `valid_tokens` is how many of its tokens have KV actually computed.
    fn preempt(&mut self, id: &RequestId, valid_tokens: usize) -> Result<(), SchedulerError> {
        self.kv.uncache_beyond(id, valid_tokens);
        self.kv.free(id);
        let entry = lookup_mut(&mut self.requests, id)?;
        entry.req.status = RequestStatus::Preempted;
        entry.req.num_computed_tokens = 0;
        entry.req.num_preemptions += 1;
        let key = entry.key();
        self.waiting.push_preempted(id.clone(), key);
        self.num_preemptions += 1;
        Ok(())
    }

    /// Plans one step: running requests first, then waiting ones.
    pub fn schedule(&mut self) -> Result<SchedulerOutput, SchedulerError> {
        let mut budget = self.config.max_num_batched_tokens;
        let mut out = SchedulerOutput {
            finished_req_ids: std::mem::take(&mut self.finished_pending),
            ..SchedulerOutput::default()
        };
        let mut cached: Vec<CachedRequestData> = Vec::with_capacity(self.running.len());
        let mut counts: Vec<(RequestId, usize)> = Vec::with_capacity(self.running.len());

        // 1. Running requests, in order.
        let mut i = 0;
        'running: while i < self.running.len() && budget > 0 {
            let id = self.running[i].clone();
            loop {
                let entry = lookup_mut(&mut self.requests, &id)?;
                let computed = entry.req.num_computed_tokens;
                let n = tokens_to_schedule(&self.config, computed, entry.req.num_tokens(), budget);
                if n == 0 {
                    i += 1;
                    continue 'running;
                }
                match self
                    .kv
                    .allocate_slots(&id, computed, n, None, &entry.hashes)
                {
                    Ok(blocks) => {
                        entry.req.num_computed_tokens = computed + n;
                        let all = &entry.req.all_token_ids;
                        let new_token_ids =
                            all.get(entry.req.num_tokens_sent..).unwrap_or(&[]).to_vec();
                        entry.req.num_tokens_sent = all.len();
                        cached.push(CachedRequestData {
                            req_id: id.clone(),
                            resumed_from_preemption: false,
                            new_block_ids: blocks.into_iter().map(KvBlocks::into_ids).collect(),
                            new_token_ids,
                            num_computed_tokens: computed,
                        });
                        counts.push((id, n));
                        budget -= n;
                        i += 1;
                        continue 'running;
                    }
                    Err(KvError::NoFreeBlocks { .. }) => {
                        let Some(v) = self.pick_victim() else {
                            break 'running;
                        };
                        let victim = self.running.remove(v);
                        let mut valid = lookup(&self.requests, &victim)?.req.num_computed_tokens;
                        if let Some(pos) = counts.iter().position(|(r, _)| *r == victim) {
                            let (_, vn) = counts.remove(pos);
                            cached.remove(pos);
                            budget += vn;
                            valid -= vn;
                        }
                        self.preempt(&victim, valid)?;
                        let is_self = victim == id;
                        out.preempted_req_ids.push(victim);
                        if is_self {
                            break 'running;
                        }
                        if v < i {
                            i -= 1;
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }

        // 2. Waiting requests, only if nobody had to be preempted.
        let mut admitted: Vec<(RequestId, usize)> = Vec::new();
        if out.preempted_req_ids.is_empty() {
            while budget > 0 && self.running.len() < self.config.max_num_seqs {
                let Some(id) = self.waiting.peek().cloned() else {
                    break;
                };
                let entry = lookup(&self.requests, &id)?;
                let base = entry.req.num_computed_tokens;
                let num_tokens = entry.req.num_tokens();
                let hit = if base == 0 {
                    self.kv.get_computed_blocks(&entry.hashes, num_tokens)?
                } else {
                    ComputedBlocks::default()
                };
                let start = base + hit.num_tokens;
                let wanted = tokens_to_schedule(&self.config, start, num_tokens, usize::MAX);
                if !self.config.enable_chunked_prefill && wanted > budget {
                    break;
                }
                let n = wanted.min(budget);
                match self
                    .kv
                    .allocate_slots(&id, base, n, Some(&hit), &entry.hashes)
                {
                    Ok(_) => {}
                    Err(KvError::NoFreeBlocks { .. }) => break,
                    Err(e) => return Err(e.into()),
                }
                self.waiting.pop();
                self.running.push(id.clone());
                let block_ids = self.kv.block_tables(&id).to_vec();
                let entry = lookup_mut(&mut self.requests, &id)?;
                let resumed = entry.req.status == RequestStatus::Preempted;
                entry.req.status = RequestStatus::Running;
                entry.req.num_computed_tokens = start + n;
                entry.req.num_cached_tokens.get_or_insert(hit.num_tokens);
                entry.req.num_tokens_sent = entry.req.all_token_ids.len();
                if resumed {
                    cached.push(CachedRequestData {
                        req_id: id.clone(),
                        resumed_from_preemption: true,
                        new_block_ids: block_ids,
                        new_token_ids: entry.req.all_token_ids.clone(),
                        num_computed_tokens: start,
                    });
                } else {
                    out.scheduled_new_reqs.push(NewRequestData {
                        req_id: id.clone(),
                        prompt_token_ids: entry.req.prompt_token_ids.clone(),
                        sampling_params: entry.req.sampling_params.clone(),
                        block_ids,
                        num_computed_tokens: start,
                    });
                }
                admitted.push((id, n));
                budget -= n;
            }
        }

        counts.extend(admitted);
        out.total_num_scheduled_tokens = self.config.max_num_batched_tokens - budget;
        out.num_scheduled_tokens = counts;
        out.scheduled_cached_reqs = cached;
        Ok(out)
    }

    /// Applies one step's sampled tokens: appends them, checks stop
    /// conditions, frees finished requests' blocks. Returns the new tokens
    /// and finish reason of every request that produced tokens.
    ///
    /// Tokens for requests not scheduled in `scheduler_output`, no longer
    /// running, or still mid-prefill are ignored.
    pub fn update_from_output(
        &mut self,
        scheduler_output: &SchedulerOutput,
        model_output: &ModelRunnerOutput,
    ) -> Vec<RequestOutput> {
        let scheduled = &scheduler_output.num_scheduled_tokens;
        let same_order = model_output.req_ids.len() == scheduled.len()
            && model_output
                .req_ids
                .iter()
                .zip(scheduled)
                .all(|(a, (b, _))| a == b);
        let allowed: Option<FxHashSet<&RequestId>> =
            (!same_order).then(|| scheduled.iter().map(|(id, _)| id).collect());
        let max_model_len = self.config.max_model_len;
        let mut outputs = Vec::with_capacity(model_output.req_ids.len());
        let mut finished: Vec<RequestId> = Vec::new();
        for (id, tokens) in model_output
            .req_ids
            .iter()
            .zip(&model_output.sampled_token_ids)
        {
            if tokens.is_empty() || allowed.as_ref().is_some_and(|a| !a.contains(id)) {
                continue;
            }
            let Some(entry) = self.requests.get_mut(id) else {
                continue;
            };
            let req = &mut entry.req;
            if req.status != RequestStatus::Running || req.num_computed_tokens < req.num_tokens() {
                continue;
            }
            let mut new_token_ids = Vec::with_capacity(tokens.len());
            let mut finish_reason = None;
            for &t in tokens {
                req.all_token_ids.push(t);
                new_token_ids.push(t);
                finish_reason = check_stop(req, max_model_len);
                if finish_reason.is_some() {
                    break;
                }
            }
            entry.hashes.update(&entry.req.all_token_ids);
            if let Some(reason) = finish_reason {
                entry.req.status = RequestStatus::Finished(reason);
                finished.push(id.clone());
            }
            outputs.push(RequestOutput {
                req_id: id.clone(),
                new_token_ids,
                finish_reason,
            });
        }
        if !finished.is_empty() {
            for id in &finished {
                self.kv.free(id);
                self.requests.remove(id);
            }
            let done: FxHashSet<&RequestId> = finished.iter().collect();
            self.running.retain(|id| !done.contains(id));
            self.finished_pending.extend(finished);
        }
        outputs
    }

    /// Aborts requests wherever they are, freeing their blocks at once.
    /// Returns the ids that were found (unknown or finished ids are skipped).
    pub fn abort<'a>(&mut self, ids: impl IntoIterator<Item = &'a RequestId>) -> Vec<RequestId> {
        let mut aborted = Vec::new();
        let mut was_running = false;
        for id in ids {
            let Some(entry) = self.requests.remove(id) else {
                continue;
            };
            match entry.req.status {
                RequestStatus::Running => was_running = true,
                RequestStatus::Waiting | RequestStatus::Preempted => {
                    self.waiting.remove(id, entry.key());
                }
                RequestStatus::Finished(_) => {}
            }
            self.kv.free(id);
            aborted.push(id.clone());
        }
        if was_running {
            let gone: FxHashSet<&RequestId> = aborted.iter().collect();
            self.running.retain(|id| !gone.contains(id));
        }
        self.finished_pending.extend(aborted.iter().cloned());
        aborted
    }

    /// Ends the requests a worker could not run in the step `output`
    /// scheduled, and with them every request of that step that reads a
    /// block one of them was to compute (two prompts sharing a prefix
    /// within one step share its blocks before they hold KV). Those blocks
    /// hold no valid KV, so they leave the prefix cache; blocks computed in
    /// earlier steps stay cached. Returns the requests ended beyond
    /// `failed` (each read a failed request's blocks); call
    /// [`Self::update_from_output`] after this, so their tokens are
    /// dropped.
    pub fn fail_in_step(
        &mut self,
        failed: &[RequestId],
        output: &SchedulerOutput,
    ) -> Vec<RequestId> {
        let bs = self.kv.block_size();
        let start_of: FxHashMap<&RequestId, usize> = output
            .scheduled_new_reqs
            .iter()
            .map(|r| (&r.req_id, r.num_computed_tokens))
            .chain(
                output
                    .scheduled_cached_reqs
                    .iter()
                    .map(|r| (&r.req_id, r.num_computed_tokens)),
            )
            .collect();
        let mut ended: FxHashSet<RequestId> = failed.iter().cloned().collect();
        let mut bad_blocks: Vec<kv_cache::BlockId> = Vec::new();
        let mut todo: Vec<RequestId> = failed.to_vec();
        while let Some(id) = todo.pop() {
            let Some(&start) = start_of.get(&id) else {
                continue;
            };
            let fresh = self.kv.block_ids(&id).get(start / bs..).unwrap_or(&[]);
            bad_blocks.extend_from_slice(fresh);
            for (other, _) in &output.num_scheduled_tokens {
                if !ended.contains(other)
                    && self.kv.block_ids(other).iter().any(|b| fresh.contains(b))
                {
                    ended.insert(other.clone());
                    todo.push(other.clone());
                }
            }
        }
        self.kv.uncache_blocks(&bad_blocks);
        let named: FxHashSet<&RequestId> = failed.iter().collect();
        let dependents: Vec<RequestId> = ended
            .iter()
            .filter(|id| !named.contains(id))
            .cloned()
            .collect();
        self.abort(failed.iter().chain(&dependents));
        dependents
    }

    /// Checks that queues, request states and the KV cache agree: each
    /// request is in exactly one queue matching its status, waiting requests
    /// hold no blocks, running ones hold enough for their computed tokens,
    /// and the KV cache's own invariants hold. Linear cost; for tests.
    pub fn check_invariants(&self) -> Result<(), SchedulerError> {
        let bad = |m: String| Err(SchedulerError::InvariantViolated(m));
        self.kv.check_invariants()?;
        if self.running.len() > self.config.max_num_seqs {
            return bad(format!("{} running > max_num_seqs", self.running.len()));
        }
        if self.running.len() + self.waiting.len() != self.requests.len() {
            return bad(format!(
                "{} running + {} waiting != {} requests",
                self.running.len(),
                self.waiting.len(),
                self.requests.len()
            ));
        }
        let mut seen = FxHashSet::default();
        for id in &self.running {
            let e = lookup(&self.requests, id)?;
            if !seen.insert(id) || e.req.status != RequestStatus::Running {
                return bad(format!(
                    "running {id} is duplicated or has status {:?}",
                    e.req.status
                ));
            }
            let held = self.kv.block_ids(id).len();
            if held < self.kv.blocks_for_tokens(e.req.num_computed_tokens) {
                return bad(format!(
                    "running {id} holds {held} blocks for {} tokens",
                    e.req.num_computed_tokens
                ));
            }
            if e.req.num_computed_tokens > e.req.num_tokens() {
                return bad(format!("{id} computed more tokens than it has"));
            }
        }
        for id in self.waiting.iter() {
            let e = lookup(&self.requests, id)?;
            if !seen.insert(id)
                || !matches!(
                    e.req.status,
                    RequestStatus::Waiting | RequestStatus::Preempted
                )
            {
                return bad(format!(
                    "waiting {id} is duplicated or has status {:?}",
                    e.req.status
                ));
            }
            if e.req.num_computed_tokens != 0 || !self.kv.block_ids(id).is_empty() {
                return bad(format!("waiting {id} holds blocks or computed tokens"));
            }
        }
        Ok(())
    }

    /// The block table of a request's group 0 (empty if none): its only
    /// table unless the KV cache is hybrid.
    pub fn block_ids(&self, id: &RequestId) -> &[kv_cache::BlockId] {
        self.kv.block_ids(id)
    }

    /// The block tables of a request, one per KV cache group, as sent to
    /// workers (empty if none).
    pub fn block_tables(&self, id: &RequestId) -> &[Vec<kv_cache::BlockId>] {
        self.kv.block_tables(id)
    }
}
