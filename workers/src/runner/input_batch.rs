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

use proto::worker::StepRequest;

use super::WorkerError;
use crate::sampler::SamplingParams;

/// What the worker knows of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestState {
    /// Prompt then output tokens, as far as the engine has sent them.
    pub token_ids: Vec<u32>,
    /// How many of `token_ids` are the prompt.
    pub num_prompt_tokens: usize,
    /// KV block ids in position order.
    pub block_table: Vec<u32>,
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
    /// Checks every delta first, so a refused step changes nothing.
    pub fn apply(&mut self, step: &StepRequest) -> Result<(), WorkerError> {
        let mut new_params = Vec::with_capacity(step.new_requests.len());
        for new in &step.new_requests {
            let params = new
                .sampling
                .as_ref()
                .map(SamplingParams::from_proto)
                .unwrap_or_default();
            params
                .validate()
                .map_err(|reason| WorkerError::InvalidSampling {
                    req_id: new.req_id.clone(),
                    reason,
                })?;
            new_params.push(params);
        }
        let finished: HashSet<&str> = step.finished_req_ids.iter().map(String::as_str).collect();
        let preempting: HashSet<&str> = step.preempted_req_ids.iter().map(String::as_str).collect();
        let new_ids: HashSet<&str> = step
            .new_requests
            .iter()
            .map(|r| r.req_id.as_str())
            .collect();
        for cached in &step.cached_requests {
            let id = cached.req_id.as_str();
            let running =
                self.running.contains_key(id) && !finished.contains(id) && !preempting.contains(id);
            let waiting = (self.preempted.contains_key(id) || preempting.contains(id))
                && !finished.contains(id);
            let known =
                new_ids.contains(id) || running || (cached.resumed_from_preemption && waiting);
            if !known {
                return Err(WorkerError::UnknownRequest {
                    req_id: cached.req_id.clone(),
                    context: if cached.resumed_from_preemption {
                        "resumed request it never held"
                    } else {
                        "delta for a request it does not run"
                    },
                });
            }
        }

        for id in &step.finished_req_ids {
            self.running.remove(id);
            self.preempted.remove(id);
        }
        for id in &step.preempted_req_ids {
            if let Some(mut state) = self.running.remove(id) {
                state.block_table.clear();
                state.num_computed_tokens = 0;
                self.preempted.insert(id.clone(), state);
            }
        }
        for (new, sampling) in step.new_requests.iter().zip(new_params) {
            self.preempted.remove(&new.req_id);
            self.running.insert(
                new.req_id.clone(),
                RequestState {
                    token_ids: new.prompt_token_ids.clone(),
                    num_prompt_tokens: new.prompt_token_ids.len(),
                    block_table: new.block_ids.clone(),
                    num_computed_tokens: new.num_computed_tokens as usize,
                    sampling,
                },
            );
        }
        for cached in &step.cached_requests {
            let id = &cached.req_id;
            if cached.resumed_from_preemption {
                let Some(mut state) = self
                    .preempted
                    .remove(id)
                    .or_else(|| self.running.remove(id))
                else {
                    continue; // checked above
                };
                state.block_table = cached.new_block_ids.clone();
                state.token_ids = cached.new_token_ids.clone();
                state.num_computed_tokens = cached.num_computed_tokens as usize;
                self.running.insert(id.clone(), state);
            } else if let Some(state) = self.running.get_mut(id) {
                state.block_table.extend_from_slice(&cached.new_block_ids);
                state.token_ids.extend_from_slice(&cached.new_token_ids);
                state.num_computed_tokens = cached.num_computed_tokens as usize;
            }
        }
        Ok(())
    }
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
            block_ids: blocks.to_vec(),
            num_computed_tokens: 0,
        }
    }

    fn delta(id: &str, blocks: &[u32], tokens: &[u32], computed: u32) -> CachedRequest {
        CachedRequest {
            req_id: id.into(),
            resumed_from_preemption: false,
            new_block_ids: blocks.to_vec(),
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
        })
        .unwrap();
        b.apply(&StepRequest {
            cached_requests: vec![delta("a", &[9], &[4], 3)],
            ..Default::default()
        })
        .unwrap();
        let a = b.get("a").unwrap();
        assert_eq!(a.token_ids, vec![1, 2, 3, 4]);
        assert_eq!(a.block_table, vec![7, 9]);
        assert_eq!((a.num_computed_tokens, a.num_output_tokens()), (3, 1));
        b.apply(&StepRequest {
            finished_req_ids: vec!["a".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(b.is_empty());
    }

    #[test]
    fn preempt_and_resume_replace_blocks_and_tokens() {
        let mut b = InputBatch::new();
        b.apply(&StepRequest {
            new_requests: vec![new_req("a", &[1, 2], &[7])],
            ..Default::default()
        })
        .unwrap();
        b.apply(&StepRequest {
            preempted_req_ids: vec!["a".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(b.get("a").is_none() && b.is_preempted("a"));
        // A plain delta for a preempted request is refused.
        assert!(b
            .apply(&StepRequest {
                cached_requests: vec![delta("a", &[1], &[5], 2)],
                ..Default::default()
            })
            .is_err());
        let mut resume = delta("a", &[3, 4], &[1, 2, 5], 0);
        resume.resumed_from_preemption = true;
        b.apply(&StepRequest {
            cached_requests: vec![resume],
            ..Default::default()
        })
        .unwrap();
        let a = b.get("a").unwrap();
        assert_eq!(a.token_ids, vec![1, 2, 5]);
        assert_eq!(a.block_table, vec![3, 4]);
        assert_eq!(a.num_prompt_tokens, 2);
    }

    #[test]
    fn unknown_ids_are_errors_and_change_nothing() {
        let mut b = InputBatch::new();
        let step = StepRequest {
            new_requests: vec![new_req("a", &[1], &[0])],
            cached_requests: vec![delta("ghost", &[], &[1], 1)],
            ..Default::default()
        };
        assert!(matches!(
            b.apply(&step),
            Err(WorkerError::UnknownRequest { .. })
        ));
        assert!(b.is_empty());
        // Finishing an unknown id is harmless (an abort may race a finish).
        b.apply(&StepRequest {
            finished_req_ids: vec!["nobody".into()],
            ..Default::default()
        })
        .unwrap();
    }
}
