//! Property tests: random interleavings of add, schedule, update and abort
//! (under random configs, both policies, chunking on and off, a tight KV
//! cache, one full-attention group or hybrid groups with sliding and
//! chunked windows) never break the invariants, and once the adds stop every request
//! that fits finishes with exactly the tokens and reason it should.
//!
//! Invariants checked after every operation: blocks conserved, no block both
//! free and held, ref counts equal holders (`KvCacheManager::check_invariants`
//! through `Scheduler::check_invariants`), queue membership matches status;
//! after every `schedule()`: tokens within `max_num_batched_tokens`, requests
//! within `max_num_seqs`, the delta lists match the token counts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::run_model;
use proptest::prelude::*;
use scheduler::{
    AttentionWindow, FinishReason, KvCacheConfig, ModelRunnerOutput, Request, RequestId, Scheduler,
    SchedulerConfig, SchedulerError, SchedulerOutput, SchedulingPolicy,
};

const BS: usize = 4;
const EOS: u32 = 2;
const MAX_MODEL_LEN: usize = 64;

#[derive(Debug, Clone)]
enum Op {
    Add {
        prompt_len: usize,
        shared: bool,
        max_tokens: usize,
        priority: i32,
        eos_at: Option<usize>,
    },
    Schedule,
    Update,
    Abort {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..50, any::<bool>(), 1usize..20, 0i32..3, proptest::option::weighted(0.3, 0usize..20))
            .prop_map(|(prompt_len, shared, max_tokens, priority, eos_at)| Op::Add { prompt_len, shared, max_tokens, priority, eos_at }),
        5 => Just(Op::Schedule),
        4 => Just(Op::Update),
        1 => any::<usize>().prop_map(|pick| Op::Abort { pick }),
    ]
}

#[derive(Debug, Clone)]
struct Cfg {
    sched: SchedulerConfig,
    kv: KvCacheConfig,
    /// The KV cache groups' windows.
    groups: Vec<AttentionWindow>,
}

fn groups() -> impl Strategy<Value = Vec<AttentionWindow>> {
    use AttentionWindow::{Chunked, Full, Sliding};
    prop_oneof![
        2 => Just(vec![Full]),
        1 => (1usize..12).prop_map(|w| vec![Sliding(w)]),
        1 => (1usize..12).prop_map(|w| vec![Full, Sliding(w), Sliding(w)]),
        1 => (1usize..12).prop_map(|c| vec![Full, Chunked(c)]),
    ]
}

fn cfg() -> impl Strategy<Value = Cfg> {
    (
        1usize..6,
        4usize..80,
        any::<bool>(),
        proptest::option::of(1usize..24),
        any::<bool>(),
        4usize..40,
        any::<bool>(),
        groups(),
    )
        .prop_map(
            |(seqs, budget, chunked, threshold, priority, num_blocks, caching, groups)| {
                let budget = if chunked {
                    budget
                } else {
                    budget.max(MAX_MODEL_LEN)
                };
                Cfg {
                    sched: SchedulerConfig {
                        max_num_seqs: seqs,
                        max_num_batched_tokens: budget,
                        max_model_len: MAX_MODEL_LEN,
                        enable_chunked_prefill: chunked,
                        long_prefill_token_threshold: if chunked { threshold } else { None },
                        policy: if priority {
                            SchedulingPolicy::Priority
                        } else {
                            SchedulingPolicy::Fcfs
                        },
                    },
                    kv: KvCacheConfig {
                        num_blocks,
                        block_size: BS,
                        enable_prefix_caching: caching,
                    },
                    groups,
                }
            },
        )
}

/// What the test expects of one request.
#[derive(Debug)]
struct Expect {
    prompt_len: usize,
    max_tokens: usize,
    eos_at: Option<usize>,
    outputs: Vec<u32>,
    finished: Option<FinishReason>,
    aborted: bool,
}

impl Expect {
    /// The token the fake model samples at `position` for this request.
    fn sample(&self, position: usize) -> u32 {
        if Some(position) == self.eos_at.map(|e| e + self.prompt_len) {
            EOS
        } else {
            common::token_at(position)
        }
    }

    /// The full output and reason the request must end with.
    fn final_output(&self) -> (Vec<u32>, FinishReason) {
        let mut out = Vec::new();
        loop {
            let pos = self.prompt_len + out.len();
            let t = self.sample(pos);
            out.push(t);
            if t == EOS {
                return (out, FinishReason::Eos);
            }
            if self.prompt_len + out.len() >= MAX_MODEL_LEN {
                return (out, FinishReason::MaxModelLen);
            }
            if out.len() >= self.max_tokens {
                return (out, FinishReason::MaxTokens);
            }
        }
    }
}

struct Harness {
    s: Scheduler,
    cfg: Cfg,
    expect: HashMap<RequestId, Expect>,
    pending: Option<(SchedulerOutput, ModelRunnerOutput)>,
    next: usize,
    /// A simulated KV cache: which token each slot of each block holds.
    kv_slots: Vec<[Option<u32>; BS]>,
}

impl Harness {
    fn check_output(&self, out: &SchedulerOutput) -> Result<(), TestCaseError> {
        let c = &self.cfg.sched;
        prop_assert!(out.total_num_scheduled_tokens <= c.max_num_batched_tokens);
        prop_assert!(out.num_scheduled_tokens.len() <= c.max_num_seqs);
        prop_assert_eq!(
            out.num_scheduled_tokens
                .iter()
                .map(|(_, n)| n)
                .sum::<usize>(),
            out.total_num_scheduled_tokens
        );
        prop_assert!(out.num_scheduled_tokens.iter().all(|(_, n)| *n > 0));
        prop_assert_eq!(
            out.scheduled_new_reqs.len() + out.scheduled_cached_reqs.len(),
            out.num_scheduled_tokens.len()
        );
        let mut ids: Vec<_> = out
            .num_scheduled_tokens
            .iter()
            .map(|(r, _)| r.clone())
            .collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(
            ids.len(),
            out.num_scheduled_tokens.len(),
            "a request scheduled twice"
        );
        for (id, n) in &out.num_scheduled_tokens {
            let r = self.s.get_request(id).unwrap();
            prop_assert!(r.num_computed_tokens() <= r.num_tokens());
            if let Some(t) = c.long_prefill_token_threshold {
                prop_assert!(*n <= t);
            }
            // Every scheduled token has a KV slot.
            prop_assert!(self.s.block_ids(id).len() * BS >= r.num_computed_tokens());
        }
        for id in &out.preempted_req_ids {
            prop_assert!(
                out.num_scheduled_tokens.iter().all(|(r, _)| r != id),
                "preempted and scheduled"
            );
            let r = self.s.get_request(id).unwrap();
            prop_assert_eq!(r.status(), scheduler::RequestStatus::Preempted);
            prop_assert!(self.s.block_ids(id).is_empty());
        }
        Ok(())
    }

    /// Plays the workers' KV writes for a step, then checks that every
    /// scheduled request reads back its own tokens for all the positions it
    /// counts as computed, prefix-cache hits included. Writes come first, as
    /// in a forward pass, where each layer stores KV before attending.
    fn simulate_kv(&mut self, out: &SchedulerOutput) -> Result<(), TestCaseError> {
        let starts = out
            .scheduled_new_reqs
            .iter()
            .map(|r| (&r.req_id, r.num_computed_tokens))
            .chain(
                out.scheduled_cached_reqs
                    .iter()
                    .map(|r| (&r.req_id, r.num_computed_tokens)),
            );
        let mut reads = Vec::new();
        for (id, start) in starts {
            let n = out.num_scheduled_tokens_for(id);
            let tokens = self.s.get_request(id).unwrap().all_token_ids();
            for table in self.s.block_tables(id) {
                for (p, &t) in tokens.iter().enumerate().skip(start).take(n) {
                    self.kv_slots[table[p / BS] as usize][p % BS] = Some(t);
                }
            }
            reads.push((id.clone(), start));
        }
        for (id, start) in reads {
            let tokens = self.s.get_request(&id).unwrap().all_token_ids();
            let tables = self.s.block_tables(&id);
            prop_assert_eq!(tables.len(), self.cfg.groups.len());
            for (table, window) in tables.iter().zip(&self.cfg.groups) {
                // The step's first query sees from here on; later ones less.
                let first = window.first_visible(start);
                for (p, &t) in tokens.iter().enumerate().take(start).skip(first) {
                    prop_assert_eq!(
                        self.kv_slots[table[p / BS] as usize][p % BS],
                        Some(t),
                        "{} reads stale KV at position {} ({:?})",
                        id,
                        p,
                        window
                    );
                }
            }
        }
        Ok(())
    }

    fn update(&mut self) {
        if let Some((out, mro)) = self.pending.take() {
            for r in self.s.update_from_output(&out, &mro) {
                let e = self.expect.get_mut(&r.req_id).unwrap();
                assert!(e.finished.is_none() && !e.aborted, "tokens after the end");
                e.outputs.extend(&r.new_token_ids);
                e.finished = r.finish_reason;
            }
        }
    }

    fn schedule(&mut self) -> Result<(), TestCaseError> {
        self.update();
        let out = self.s.schedule().unwrap();
        self.check_output(&out)?;
        self.simulate_kv(&out)?;
        let expect = &self.expect;
        let mro = run_model(&self.s, &out, |id, pos| expect[id].sample(pos));
        self.pending = Some((out, mro));
        Ok(())
    }

    fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Add {
                prompt_len,
                shared,
                max_tokens,
                priority,
                eos_at,
            } => {
                self.next += 1;
                let id = RequestId::from(format!("r{}", self.next));
                let base = if shared {
                    50_000
                } else {
                    100_000 * self.next as u32
                };
                let req = Request::builder(id.clone(), common::prompt(prompt_len, base))
                    .max_tokens(max_tokens)
                    .eos_token_id(EOS)
                    .priority(priority)
                    .arrival_time(self.next as f64)
                    .build();
                let longest = (prompt_len + max_tokens).min(MAX_MODEL_LEN);
                match self.s.add_request(req) {
                    Ok(()) => {
                        // A hybrid cache may admit longer requests: they
                        // must then finish, which the end of the test checks.
                        let full_only = self.cfg.groups == [AttentionWindow::Full];
                        prop_assert!(!full_only || longest.div_ceil(BS) <= self.cfg.kv.num_blocks);
                        self.expect.insert(
                            id,
                            Expect {
                                prompt_len,
                                max_tokens,
                                eos_at,
                                outputs: vec![],
                                finished: None,
                                aborted: false,
                            },
                        );
                    }
                    Err(SchedulerError::ExceedsKvCapacity { .. }) => {
                        // Refused only if holding every position in every
                        // group (and the null block) would not fit.
                        let groups = self.cfg.groups.len();
                        let null_block = usize::from(self.cfg.groups != [AttentionWindow::Full]);
                        prop_assert!(
                            groups * longest.div_ceil(BS) + null_block > self.cfg.kv.num_blocks
                        );
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            Op::Schedule => self.schedule()?,
            Op::Update => self.update(),
            Op::Abort { pick } => {
                let mut live: Vec<RequestId> = self
                    .expect
                    .iter()
                    .filter(|(_, e)| e.finished.is_none() && !e.aborted)
                    .map(|(k, _)| k.clone())
                    .collect();
                if !live.is_empty() {
                    live.sort();
                    let id = live[pick % live.len()].clone();
                    let free_before = self.s.kv_cache().num_free_blocks();
                    let held: usize = self.s.block_tables(&id).iter().map(Vec::len).sum();
                    prop_assert_eq!(self.s.abort([&id]), vec![id.clone()]);
                    prop_assert!(self.s.block_ids(&id).is_empty());
                    // Blocks shared with others stay held; the rest are free at once.
                    prop_assert!(self.s.kv_cache().num_free_blocks() <= free_before + held);
                    prop_assert!(self.s.get_request(&id).is_none());
                    self.expect.get_mut(&id).unwrap().aborted = true;
                }
            }
        }
        if let Err(e) = self.s.check_invariants() {
            prop_assert!(false, "{e}");
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_interleavings_keep_invariants_and_finish(cfg in cfg(), ops in proptest::collection::vec(op(), 10..150)) {
        let s = Scheduler::with_kv_groups(cfg.sched.clone(), cfg.kv, &cfg.groups).unwrap();
        let kv_slots = vec![[None; BS]; cfg.kv.num_blocks];
        let mut h = Harness { s, cfg, expect: HashMap::new(), pending: None, next: 0, kv_slots };
        for op in ops {
            h.apply(op)?;
        }
        // Drain: with no new work, everything admitted must finish.
        let mut steps = 0;
        while h.s.has_unfinished_requests() || h.pending.is_some() {
            h.schedule()?;
            h.update();
            if let Err(e) = h.s.check_invariants() {
                prop_assert!(false, "{e}");
            }
            steps += 1;
            prop_assert!(steps < 5_000, "no progress: {} running, {} waiting", h.s.num_running(), h.s.num_waiting());
        }
        // A cache with a windowed group holds its null block for good.
        let null_block = usize::from(h.cfg.groups != [AttentionWindow::Full]);
        prop_assert_eq!(h.s.kv_cache().num_free_blocks() + null_block, h.cfg.kv.num_blocks, "every block returned");
        for (id, e) in &h.expect {
            if e.aborted {
                continue;
            }
            let (want, reason) = e.final_output();
            prop_assert_eq!(&e.outputs, &want, "outputs of {}", id);
            prop_assert_eq!(e.finished, Some(reason), "finish reason of {}", id);
        }
    }
}
