//! `SchedulerOutput` (the scheduler's plain data) to `StepRequest` (the
//! worker wire form), and the worker's `StepResult` back.
//!
//! Workers keep each request's tokens; for a request they already hold
//! the scheduler's output carries only the tokens appended since they last
//! saw it (the previous step's samples), so this is a plain conversion.

use std::collections::HashMap;

use proto::worker as pb;
use scheduler::{ModelRunnerOutput, RequestId, SchedulerOutput};

use super::SampledLogprobs;

/// Per-group block ids in wire form.
fn block_tables(groups: &[Vec<scheduler::BlockId>]) -> Vec<pb::BlockTable> {
    groups
        .iter()
        .map(|ids| pb::BlockTable {
            block_ids: ids.clone(),
        })
        .collect()
}

/// The wire step for `out`.
pub fn step_request(step_id: u64, out: &SchedulerOutput) -> pb::StepRequest {
    let new_requests = out
        .scheduled_new_reqs
        .iter()
        .map(|r| pb::NewRequest {
            req_id: r.req_id.to_string(),
            prompt_token_ids: r.prompt_token_ids.to_vec(),
            sampling: Some(sampling_to_wire(&r.sampling_params)),
            block_tables: block_tables(&r.block_ids),
            num_computed_tokens: r.num_computed_tokens as u32,
        })
        .collect();
    let cached_requests = out
        .scheduled_cached_reqs
        .iter()
        .map(|r| pb::CachedRequest {
            req_id: r.req_id.to_string(),
            resumed_from_preemption: r.resumed_from_preemption,
            new_block_tables: block_tables(&r.new_block_ids),
            new_token_ids: r.new_token_ids.clone(),
            num_computed_tokens: r.num_computed_tokens as u32,
        })
        .collect();
    pb::StepRequest {
        step_id,
        new_requests,
        cached_requests,
        scheduled: out
            .num_scheduled_tokens
            .iter()
            .map(|(id, n)| pb::ScheduledTokens {
                req_id: id.to_string(),
                num_tokens: *n as u32,
            })
            .collect(),
        finished_req_ids: out
            .finished_req_ids
            .iter()
            .map(|id| id.to_string())
            .collect(),
        preempted_req_ids: out
            .preempted_req_ids
            .iter()
            .map(|id| id.to_string())
            .collect(),
        // The executor sets it when it sends bitmasks after the step.
        bitmasks_follow: false,
    }
}

/// The scheduler's sampling settings in wire form.
pub fn sampling_to_wire(p: &scheduler::SamplingParams) -> pb::SamplingParams {
    pb::SamplingParams {
        temperature: p.temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        min_p: p.min_p,
        seed: p.seed,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        repetition_penalty: p.repetition_penalty,
        logprobs: p.logprobs,
    }
}

/// Splits a worker result into what the scheduler needs and the logprobs
/// the API layer needs.
pub fn runner_output(
    result: pb::StepResult,
) -> (ModelRunnerOutput, HashMap<RequestId, Vec<SampledLogprobs>>) {
    let mut out = ModelRunnerOutput::default();
    let mut logprobs = HashMap::new();
    for r in result.outputs {
        let id = RequestId::from(r.req_id);
        if !r.logprobs.is_empty() {
            let sampled = r
                .logprobs
                .into_iter()
                .map(|lp| SampledLogprobs {
                    logprob: lp.logprob,
                    top: lp.top_token_ids.into_iter().zip(lp.top_logprobs).collect(),
                })
                .collect();
            logprobs.insert(id.clone(), sampled);
        }
        out.req_ids.push(id);
        out.sampled_token_ids.push(r.sampled_token_ids);
    }
    (out, logprobs)
}
