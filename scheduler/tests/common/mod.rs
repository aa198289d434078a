//! Shared test fixtures: `create_scheduler`, request builders and a fake
//! model runner whose sampled token depends only on the position, so a
//! request recomputed after preemption produces the same tokens.

#![allow(dead_code)]

use scheduler::{
    KvCacheConfig, ModelRunnerOutput, Request, RequestBuilder, RequestId, RequestOutput, Scheduler,
    SchedulerConfig, SchedulerOutput,
};

pub const BLOCK_SIZE: usize = 16;

/// A small default config: 16 sequences, 512 tokens per step, 1024 context.
pub fn config() -> SchedulerConfig {
    SchedulerConfig {
        max_num_seqs: 16,
        max_num_batched_tokens: 512,
        max_model_len: 1024,
        enable_chunked_prefill: true,
        long_prefill_token_threshold: None,
        policy: scheduler::SchedulingPolicy::Fcfs,
    }
}

pub fn kv_config(num_blocks: usize) -> KvCacheConfig {
    KvCacheConfig {
        num_blocks,
        block_size: BLOCK_SIZE,
        enable_prefix_caching: true,
    }
}

/// A scheduler over a roomy KV cache of 1,024 blocks of 16 tokens.
pub fn create_scheduler(config: SchedulerConfig) -> Scheduler {
    create_scheduler_with_blocks(config, 1024)
}

pub fn create_scheduler_with_blocks(config: SchedulerConfig, num_blocks: usize) -> Scheduler {
    Scheduler::new(config, kv_config(num_blocks)).expect("valid config")
}

/// Prompt tokens `base, base+1, ...` (never equal to the EOS id 2 used in tests).
pub fn prompt(len: usize, base: u32) -> Vec<u32> {
    (0..len as u32).map(|i| base + i).collect()
}

/// A request with a prompt of `len` distinct tokens and 16 max tokens.
pub fn request(id: &str, len: usize) -> RequestBuilder {
    Request::builder(id, prompt(len, 10_000))
}

/// The token the fake model samples at `position`.
pub fn token_at(position: usize) -> u32 {
    100 + position as u32
}

/// Plays the workers: every scheduled request that has all its tokens
/// computed after this step samples `sample(id, position)`; partial
/// prefills sample nothing.
pub fn run_model(
    sched: &Scheduler,
    out: &SchedulerOutput,
    sample: impl Fn(&RequestId, usize) -> u32,
) -> ModelRunnerOutput {
    let mut mro = ModelRunnerOutput::default();
    for (id, _) in &out.num_scheduled_tokens {
        let req = sched.get_request(id).expect("scheduled request exists");
        mro.req_ids.push(id.clone());
        if req.num_computed_tokens() == req.num_tokens() {
            mro.sampled_token_ids
                .push(vec![sample(id, req.num_tokens())]);
        } else {
            mro.sampled_token_ids.push(vec![]);
        }
    }
    mro
}

/// One engine step with the position-only fake model.
pub fn step(sched: &mut Scheduler) -> (SchedulerOutput, Vec<RequestOutput>) {
    step_with(sched, |_, pos| token_at(pos))
}

pub fn step_with(
    sched: &mut Scheduler,
    sample: impl Fn(&RequestId, usize) -> u32,
) -> (SchedulerOutput, Vec<RequestOutput>) {
    let out = sched.schedule().expect("schedule");
    let mro = run_model(sched, &out, sample);
    let res = sched.update_from_output(&out, &mro);
    sched.check_invariants().expect("invariants hold");
    (out, res)
}

pub fn id(s: &str) -> RequestId {
    RequestId::from(s)
}
