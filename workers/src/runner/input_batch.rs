//! The worker's persistent batch: every request it holds, kept across
//! steps and changed only by the deltas of a [`StepRequest`] (vLLM v1's
//! `CachedRequestState` map).
//!
//! A request arrives once in full (`NewRequest`), then as appended blocks
//! and tokens (`CachedRequest`). Finished ids are forgotten; preempted ids
//! leave the running set but keep their prompt length and sampling
//! parameters, so a `resumed_from_preemption` delta (which re-sends blocks
//! and tokens, not parameters) can bring them back.
//!
//! The worker never appends the tokens it samples: the engine sends them
//! back as `new_token_ids` of the next step, so the engine stays the only
//! source of truth.

use std::collections::{HashMap, HashSet};

use proto::worker::{BlockTable, FailedRequest, StepRequest};

use crate::sampler::SamplingParams;

/// What the worker knows of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestState {
    /// Prompt then output tokens, as far as the engine has sent them.
    pub token_ids: Vec<u32>,
    /// How many of `token_ids` are the prompt.
    pub num_prompt_tokens: usize,
    /// Per KV cache group, block ids in position order.
    pub block_tables: Vec<Vec<u32>>,
    /// Tokens already in the KV cache.
    pub num_computed_tokens: usize,
    pub sampling: SamplingParams,
}

impl RequestState {
    /// Output tokens so far (the position of a seeded draw).
    pub fn num_output_tokens(&self) -> usize {
        self.token_ids.len().saturating_sub(self.num_prompt_tokens)
    }
}

/// Every request the worker holds, by id.
#[derive(Debug, Default)]
pub struct InputBatch {
    running: HashMap<String, RequestState>,
    preempted: HashMap<String, RequestState>,
}

impl InputBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// A running request.
    pub fn get(&self, req_id: &str) -> Option<&RequestState> {
        self.running.get(req_id)
    }

    pub fn get_mut(&mut self, req_id: &str) -> Option<&mut RequestState> {
        self.running.get_mut(req_id)
    }

    /// Running requests.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Whether `req_id` is held as preempted (waiting to resume).
    pub fn is_preempted(&self, req_id: &str) -> bool {
        self.preempted.contains_key(req_id)
    }

    /// Applies the deltas of `step`: drops finished and preempted ids, adds
    /// new requests, appends (or, on resume, replaces) blocks and tokens.
    ///
    /// What the worker cannot take comes back in the returned list, to be
    /// failed alone while the rest of the step runs: a new request with
    /// invalid sampling parameters (not added), and a delta for a request
    /// the worker does not hold (the engine and the worker disagree about
    /// that one request; the delta is ignored).
    pub fn apply(&mut self, step: &StepRequest) -> Vec<FailedRequest> {
        let mut refused = Vec::new();
        let mut new_params = Vec::with_capacity(step.new_requests.len());
        for new in &step.new_requests {
            let params = new
                .sampling
                .as_ref()
                .map_or_else(|| Ok(SamplingParams::default()), SamplingParams::from_proto);
            match params {
                Ok(params) => new_params.push(Some(params)),
                Err(reason) => {
                    refused.push(FailedRequest {
                        req_id: new.req_id.clone(),
                        reason: format!("invalid sampling parameters: {reason}"),
                    });
                    new_params.push(None);
                }
            }
        }
        let finished: HashSet<&str> = step.finished_req_ids.iter().map(String::as_str).collect();
        let preempting: HashSet<&str> = step.preempted_req_ids.iter().map(String::as_str).collect();
        let new_ids: HashSet<&str> = step
            .new_requests
            .iter()
            .map(|r| r.req_id.as_str())
            .collect();
        let mut unknown: HashSet<&str> = HashSet::new();
        for cached in &step.cached_requests {
            let id = cached.req_id.as_str();
            let running =
                self.running.contains_key(id) && !finished.contains(id) && !preempting.contains(id);
            let waiting = (self.preempted.contains_key(id) || preempting.contains(id))
                && !finished.contains(id);
            let known =
                new_ids.contains(id) || running || (cached.resumed_from_preemption && waiting);
            if !known {
                unknown.insert(id);
                refused.push(FailedRequest {
                    req_id: cached.req_id.clone(),
                    reason: if cached.resumed_from_preemption {
                        "the worker was asked to resume a request it never held"
                    } else {
                        "the worker got a delta for a request it does not run"
                    }
                    .into(),
                });
            }
        }

        for id in &step.finished_req_ids {
            self.running.remove(id);
            self.preempted.remove(id);
        }
        for id in &step.preempted_req_ids {
            if let Some(mut state) = self.running.remove(id) {
                state.block_tables.clear();
                state.num_computed_tokens = 0;
                self.preempted.insert(id.clone(), state);
            }
        }
        for (new, sampling) in step.new_requests.iter().zip(new_params) {
            self.preempted.remove(&new.req_id);
            let Some(sampling) = sampling else {
                continue;
            };
            self.running.insert(
                new.req_id.clone(),
                RequestState {
                    token_ids: new.prompt_token_ids.clone(),
                    num_prompt_tokens: new.prompt_token_ids.len(),
                    block_tables: tables(&new.block_tables),
                    num_computed_tokens: new.num_computed_tokens as usize,
                    sampling,
                },
            );
        }
        for cached in &step.cached_requests {
            let id = &cached.req_id;
            if unknown.contains(id.as_str()) {
                continue;
            }
            if cached.resumed_from_preemption {
                let Some(mut state) = self
                    .preempted
                    .remove(id)
                    .or_else(|| self.running.remove(id))
                else {
                    continue; // refused above
                };
                state.block_tables = tables(&cached.new_block_tables);
                state.token_ids = cached.new_token_ids.clone();
                state.num_computed_tokens = cached.num_computed_tokens as usize;
                self.running.insert(id.clone(), state);
            } else if let Some(state) = self.running.get_mut(id) {
                if state.block_tables.len() < cached.new_block_tables.len() {
                    state
                        .block_tables
                        .resize(cached.new_block_tables.len(), Vec::new());
                }
                for (table, new) in state.block_tables.iter_mut().zip(&cached.new_block_tables) {
                    table.extend_from_slice(&new.block_ids);
                }
                state.token_ids.extend_from_slice(&cached.new_token_ids);
                state.num_computed_tokens = cached.num_computed_tokens as usize;
            }
        }
        refused
    }

    /// Forgets a request (running or preempted): the worker failed it and
    /// the engine will not schedule it again.
    pub fn forget(&mut self, req_id: &str) {
        self.running.remove(req_id);
        self.preempted.remove(req_id);
    }
}

/// The wire's block tables as plain lists, one per KV cache group.
fn tables(wire: &[BlockTable]) -> Vec<Vec<u32>> {
    wire.iter().map(|t| t.block_ids.clone()).collect()
}

#[cfg(test)]
mod tests {
    use proto::worker::{CachedRequest, NewRequest};

    use super::*;

    fn new_req(id: &str, prompt: &[u32], blocks: &[u32]) -> NewRequest {
        NewRequest {
            req_id: id.into(),
            prompt_token_ids: prompt.to_vec(),
            sampling: None,
            block_tables: vec![BlockTable {
                block_ids: blocks.to_vec(),
            }],
            num_computed_tokens: 0,
        }
    }

    fn delta(id: &str, blocks: &[u32], tokens: &[u32], computed: u32) -> CachedRequest {
        CachedRequest {
            req_id: id.into(),
            resumed_from_preemption: false,
            new_block_tables: vec![BlockTable {
                block_ids: blocks.to_vec(),
            }],
            new_token_ids: tokens.to_vec(),
            num_computed_tokens: computed,
        }
    }

    #[test]
    fn new_then_deltas_then_finish() {
        let mut b = InputBatch::new();
        b.apply(&StepRequest {
            new_requests: vec![new_req("a", &[1, 2, 3], &[7])],
            ..Default::default()
        });
        b.apply(&StepRequest {
            cached_requests: vec![delta("a", &[9], &[4], 3)],
            ..Default::default()
        });
        let a = b.get("a").unwrap();
        assert_eq!(a.token_ids, vec![1, 2, 3, 4]);
        assert_eq!(a.block_tables, vec![vec![7, 9]]);
        assert_eq!((a.num_computed_tokens, a.num_output_tokens()), (3, 1));
        b.apply(&StepRequest {
            finished_req_ids: vec!["a".into()],
            ..Default::default()
        });
        assert!(b.is_empty());
    }

    #[test]
    fn preempt_and_resume_replace_blocks_and_tokens() {
        let mut b = InputBatch::new();
        b.apply(&StepRequest {
            new_requests: vec![new_req("a", &[1, 2], &[7])],
            ..Default::default()
        });
        b.apply(&StepRequest {
            preempted_req_ids: vec!["a".into()],
            ..Default::default()
        });
        assert!(b.get("a").is_none() && b.is_preempted("a"));
        // A plain delta for a preempted request is refused, alone.
        let refused = b.apply(&StepRequest {
            cached_requests: vec![delta("a", &[1], &[5], 2)],
            ..Default::default()
        });
        assert_eq!(refused.len(), 1);
        assert!(b.get("a").is_none() && b.is_preempted("a"));
        let mut resume = delta("a", &[3, 4], &[1, 2, 5], 0);
        resume.resumed_from_preemption = true;
        b.apply(&StepRequest {
            cached_requests: vec![resume],
            ..Default::default()
        });
        let a = b.get("a").unwrap();
        assert_eq!(a.token_ids, vec![1, 2, 5]);
        assert_eq!(a.block_tables, vec![vec![3, 4]]);
        assert_eq!(a.num_prompt_tokens, 2);
    }

    #[test]
    fn unknown_ids_and_bad_params_fail_alone() {
        let mut b = InputBatch::new();
        let mut bad = new_req("bad", &[1], &[1]);
        bad.sampling = Some(proto::worker::SamplingParams {
            temperature: f32::NAN,
            ..Default::default()
        });
        let step = StepRequest {
            new_requests: vec![new_req("a", &[1], &[0]), bad],
            cached_requests: vec![delta("ghost", &[], &[1], 1)],
            ..Default::default()
        };
        let refused = b.apply(&step);
        let ids: Vec<&str> = refused.iter().map(|f| f.req_id.as_str()).collect();
        assert_eq!(ids, ["bad", "ghost"]);
        assert!(refused[0].reason.contains("temperature"), "{refused:?}");
        // The good request of the same step is held.
        assert_eq!(b.len(), 1);
        assert!(b.get("a").is_some() && b.get("bad").is_none());
        // Finishing an unknown id is harmless (an abort may race a finish).
        assert!(b
            .apply(&StepRequest {
                finished_req_ids: vec!["nobody".into()],
                ..Default::default()
            })
            .is_empty());
        b.forget("a");
        assert!(b.is_empty());
    }
}
