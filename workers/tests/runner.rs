//! `ModelRunner` driven by `StepRequest`s on the tiny Llama fixture, the
//! way the engine drives a worker: requests arrive in full once, then as
//! deltas; chunked prefill, decode, preemption and resume, finishing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use proto::worker::{
    CachedRequest, InitKvCacheRequest, InitRequest, LoadModelRequest, NewRequest, SamplingParams,
    ScheduledTokens, StepRequest, StepResult,
};
use workers::runner::{ModelRunner, WorkerError};

const BLOCK_SIZE: usize = 4;
const NUM_BLOCKS: u32 = 128;

fn tiny_llama() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/generated/tiny_llama"
    ));
    assert!(
        dir.join("config.json").is_file(),
        "fixture {} is missing: run `.venv/bin/python scripts/fixtures/llama_parity.py` \
         (or scripts/test.sh)",
        dir.display()
    );
    dir
}

fn runner() -> ModelRunner {
    let mut r = ModelRunner::new(&InitRequest {
        device: "cpu".into(),
        rank: 0,
        world_size: 1,
        communicator_id: String::new(),
        communicator: String::new(),
    })
    .unwrap();
    let info = r
        .load_model(&LoadModelRequest {
            model: tiny_llama().display().to_string(),
            load_format: "auto".into(),
            dtype: "float32".into(),
            seed: 0,
            attention_backend: "auto".into(),
            hf_overrides: String::new(),
            enable_expert_parallel: false,
            disable_hybrid_kv_cache: false,
            quantization: String::new(),
        })
        .unwrap();
    assert_eq!(info.vocab_size, 256);
    r.init_kv_cache(&InitKvCacheRequest {
        num_blocks: NUM_BLOCKS,
        block_size: BLOCK_SIZE as u32,
    })
    .unwrap();
    r
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        ..Default::default()
    }
}

fn seeded(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        seed: Some(seed),
        ..greedy()
    }
}

/// What a scheduler knows of one request, and what it has sent.
struct Seq {
    id: String,
    tokens: Vec<u32>,
    prompt_len: usize,
    blocks: Vec<u32>,
    computed: usize,
    sent_tokens: usize,
    sent_blocks: usize,
    sent: bool,
    resumed: bool,
    params: SamplingParams,
}

impl Seq {
    fn new(id: &str, prompt: &[u32], params: SamplingParams) -> Self {
        Self {
            id: id.into(),
            tokens: prompt.to_vec(),
            prompt_len: prompt.len(),
            blocks: Vec::new(),
            computed: 0,
            sent_tokens: 0,
            sent_blocks: 0,
            sent: false,
            resumed: false,
            params,
        }
    }

    fn output(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }
}

/// A toy scheduler: allocates blocks from a counter, builds deltas.
struct Driver {
    next_block: u32,
    step_id: u64,
}

impl Driver {
    fn new(first_block: u32) -> Self {
        Self {
            next_block: first_block,
            step_id: 0,
        }
    }

    /// Builds the step for `(seq, num_tokens)` pairs (0 tokens: the whole
    /// rest of the known tokens).
    fn step(&mut self, seqs: &mut [&mut Seq], counts: &[usize]) -> StepRequest {
        let mut step = StepRequest {
            step_id: self.step_id,
            ..Default::default()
        };
        self.step_id += 1;
        for (seq, &n) in seqs.iter_mut().zip(counts) {
            let n = if n == 0 {
                seq.tokens.len() - seq.computed
            } else {
                n
            };
            let end = seq.computed + n;
            while seq.blocks.len() * BLOCK_SIZE < end {
                seq.blocks.push(self.next_block);
                self.next_block = (self.next_block + 1) % NUM_BLOCKS;
            }
            if !seq.sent {
                step.new_requests.push(NewRequest {
                    req_id: seq.id.clone(),
                    prompt_token_ids: seq.tokens[..seq.prompt_len].to_vec(),
                    sampling: Some(seq.params),
                    block_tables: one_table(seq.blocks.clone()),
                    num_computed_tokens: seq.computed as u32,
                });
                seq.sent = true;
                seq.sent_tokens = seq.prompt_len;
            } else {
                let resumed = std::mem::take(&mut seq.resumed);
                step.cached_requests.push(CachedRequest {
                    req_id: seq.id.clone(),
                    resumed_from_preemption: resumed,
                    new_block_tables: one_table(if resumed {
                        seq.blocks.clone()
                    } else {
                        seq.blocks[seq.sent_blocks..].to_vec()
                    }),
                    new_token_ids: if resumed {
                        seq.tokens.clone()
                    } else {
                        seq.tokens[seq.sent_tokens..].to_vec()
                    },
                    num_computed_tokens: seq.computed as u32,
                });
                seq.sent_tokens = seq.tokens.len();
            }
            seq.sent_blocks = seq.blocks.len();
            step.scheduled.push(ScheduledTokens {
                req_id: seq.id.clone(),
                num_tokens: n as u32,
            });
        }
        step
    }

    /// Applies a result as `update_from_output` would.
    fn update(seqs: &mut [&mut Seq], step: &StepRequest, result: &StepResult) {
        assert_eq!(result.step_id, step.step_id);
        assert_eq!(result.outputs.len(), step.scheduled.len());
        for (seq, (sched, out)) in seqs
            .iter_mut()
            .zip(step.scheduled.iter().zip(&result.outputs))
        {
            assert_eq!(out.req_id, seq.id);
            seq.computed += sched.num_tokens as usize;
            seq.tokens.extend(&out.sampled_token_ids);
        }
    }

    fn run(&mut self, r: &mut ModelRunner, seqs: &mut [&mut Seq], counts: &[usize]) -> StepResult {
        let step = self.step(seqs, counts);
        let result = r.execute_step(&step).unwrap();
        Self::update(seqs, &step, &result);
        result
    }

    /// Decodes one token for every sequence, `times` times.
    fn decode(&mut self, r: &mut ModelRunner, seqs: &mut [&mut Seq], times: usize) {
        for _ in 0..times {
            let ones = vec![1; seqs.len()];
            self.run(r, seqs, &ones);
        }
    }
}

const PROMPT: [u32; 10] = [1, 17, 42, 99, 3, 250, 7, 7, 128, 64];

fn one_shot_greedy(decode_steps: usize) -> Vec<u32> {
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut s = Seq::new("a", &PROMPT, greedy());
    d.run(&mut r, &mut [&mut s], &[0]);
    d.decode(&mut r, &mut [&mut s], decode_steps);
    s.output().to_vec()
}

#[test]
fn chunked_prefill_then_deltas_matches_one_shot() {
    let expected = one_shot_greedy(8);
    assert_eq!(expected.len(), 9);

    let mut r = runner();
    let mut d = Driver::new(5);
    let mut s = Seq::new("a", &PROMPT, greedy());
    let first = d.run(&mut r, &mut [&mut s], &[6]);
    assert!(
        first.outputs[0].sampled_token_ids.is_empty(),
        "a partial prefill samples nothing"
    );
    d.run(&mut r, &mut [&mut s], &[4]);
    d.decode(&mut r, &mut [&mut s], 8);
    assert_eq!(s.output(), expected.as_slice());
}

#[test]
fn preempt_and_resume_gives_the_same_tokens() {
    let expected = one_shot_greedy(8);
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut s = Seq::new("a", &PROMPT, greedy());
    d.run(&mut r, &mut [&mut s], &[0]);
    d.decode(&mut r, &mut [&mut s], 3);

    // Preempted: blocks freed, the worker drops it from the batch.
    r.execute_step(&StepRequest {
        step_id: 100,
        preempted_req_ids: vec!["a".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(r.input_batch().get("a").is_none());
    // Resumed into other blocks: everything recomputed from token 0.
    s.blocks.clear();
    s.computed = 0;
    s.resumed = true;
    d.next_block = 60;
    d.run(&mut r, &mut [&mut s], &[0]);
    d.decode(&mut r, &mut [&mut s], 4);
    assert_eq!(s.output(), expected.as_slice());
}

#[test]
fn finished_requests_are_dropped() {
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut s = Seq::new("a", &PROMPT, greedy());
    d.run(&mut r, &mut [&mut s], &[0]);
    assert!(r.input_batch().get("a").is_some());
    r.execute_step(&StepRequest {
        step_id: 1,
        finished_req_ids: vec!["a".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(r.input_batch().is_empty());
    // A delta for it now fails it alone.
    let step = d.step(&mut [&mut s], &[1]);
    assert_eq!(failed_ids(&r.execute_step(&step).unwrap()), ["a"]);
}

#[test]
fn seeded_sampling_ignores_batch_composition() {
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut alone = Seq::new("s", &PROMPT, seeded(1234));
    d.run(&mut r, &mut [&mut alone], &[0]);
    d.decode(&mut r, &mut [&mut alone], 6);

    // The same request next to others (one random, one greedy with a
    // longer prompt), chunked differently and with a preemption.
    let mut r = runner();
    let mut d = Driver::new(40);
    let mut s = Seq::new("s", &PROMPT, seeded(1234));
    let mut noisy = Seq::new(
        "noisy",
        &[5, 6, 7],
        SamplingParams {
            temperature: 1.5,
            ..greedy()
        },
    );
    let mut g = Seq::new("g", &[9; 14], greedy());
    d.run(&mut r, &mut [&mut noisy, &mut s], &[0, 4]);
    d.run(&mut r, &mut [&mut noisy, &mut s, &mut g], &[1, 0, 0]);
    d.decode(&mut r, &mut [&mut noisy, &mut s, &mut g], 2);
    r.execute_step(&StepRequest {
        step_id: 99,
        preempted_req_ids: vec!["s".into()],
        ..Default::default()
    })
    .unwrap();
    s.blocks.clear();
    s.computed = 0;
    s.resumed = true;
    d.run(&mut r, &mut [&mut g, &mut s], &[1, 0]);
    d.decode(&mut r, &mut [&mut s, &mut g], 3);
    assert_eq!(s.output(), alone.output());
    // And the draws are not just greedy.
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut other = Seq::new("s", &PROMPT, seeded(99));
    d.run(&mut r, &mut [&mut other], &[0]);
    d.decode(&mut r, &mut [&mut other], 6);
    assert_ne!(other.output(), alone.output());
}

#[test]
fn logprobs_come_back_when_asked() {
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut s = Seq::new(
        "a",
        &PROMPT,
        SamplingParams {
            logprobs: Some(3),
            ..greedy()
        },
    );
    let out = d.run(&mut r, &mut [&mut s], &[0]);
    let lp = &out.outputs[0].logprobs;
    assert_eq!(lp.len(), 1);
    // Greedy: the sampled token is the top one.
    assert_eq!(lp[0].rank, 1);
    assert_eq!(lp[0].top_token_ids.len(), 3);
    assert_eq!(lp[0].top_token_ids[0], out.outputs[0].sampled_token_ids[0]);
    assert!((lp[0].logprob - lp[0].top_logprobs[0]).abs() < 1e-6);
}

/// The ids a step failed, in order.
fn failed_ids(result: &StepResult) -> Vec<&str> {
    result.failed.iter().map(|f| f.req_id.as_str()).collect()
}

#[test]
fn bad_requests_fail_alone_not_the_step() {
    let mut r = runner();
    // A delta for a request the worker never saw.
    let ghost = StepRequest {
        cached_requests: vec![CachedRequest {
            req_id: "ghost".into(),
            new_token_ids: vec![1],
            num_computed_tokens: 3,
            ..Default::default()
        }],
        scheduled: vec![ScheduledTokens {
            req_id: "ghost".into(),
            num_tokens: 1,
        }],
        ..Default::default()
    };
    assert_eq!(failed_ids(&r.execute_step(&ghost).unwrap()), ["ghost"]);
    // Scheduled but never sent.
    let unsent = StepRequest {
        scheduled: vec![ScheduledTokens {
            req_id: "nobody".into(),
            num_tokens: 1,
        }],
        ..Default::default()
    };
    let result = r.execute_step(&unsent).unwrap();
    assert_eq!(failed_ids(&result), ["nobody"]);
    assert!(result.failed[0].reason.contains("not held"), "{result:?}");
    // More tokens scheduled than known, blocks out of range, bad params.
    let mut d = Driver::new(0);
    let mut s = Seq::new("a", &PROMPT, greedy());
    let mut step = d.step(&mut [&mut s], &[0]);
    step.scheduled[0].num_tokens = 50;
    let result = r.execute_step(&step).unwrap();
    assert_eq!(failed_ids(&result), ["a"]);
    assert!(result.outputs.is_empty());
    assert!(
        r.input_batch().get("a").is_none(),
        "a failed request is forgotten"
    );
    let bad_block = StepRequest {
        new_requests: vec![NewRequest {
            req_id: "b".into(),
            prompt_token_ids: vec![1, 2],
            sampling: Some(greedy()),
            block_tables: one_table(vec![NUM_BLOCKS + 5]),
            num_computed_tokens: 0,
        }],
        scheduled: vec![ScheduledTokens {
            req_id: "b".into(),
            num_tokens: 2,
        }],
        ..Default::default()
    };
    let result = r.execute_step(&bad_block).unwrap();
    assert_eq!(failed_ids(&result), ["b"]);
    assert!(
        result.failed[0].reason.contains("outside the cache"),
        "{result:?}"
    );
    let bad_params = StepRequest {
        new_requests: vec![NewRequest {
            req_id: "c".into(),
            prompt_token_ids: vec![1],
            sampling: Some(SamplingParams {
                temperature: f32::NAN,
                ..greedy()
            }),
            block_tables: one_table(vec![0]),
            num_computed_tokens: 0,
        }],
        scheduled: vec![ScheduledTokens {
            req_id: "c".into(),
            num_tokens: 1,
        }],
        ..Default::default()
    };
    let result = r.execute_step(&bad_params).unwrap();
    assert_eq!(failed_ids(&result), ["c"]);
    assert!(
        result.failed[0].reason.contains("temperature"),
        "{result:?}"
    );
    // The runner still works.
    let mut d = Driver::new(0);
    let mut s = Seq::new("ok", &PROMPT, greedy());
    d.run(&mut r, &mut [&mut s], &[0]);
    assert_eq!(s.output().len(), 1);

    // Calls out of order.
    let mut fresh = ModelRunner::new(&InitRequest {
        device: "cpu".into(),
        world_size: 1,
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        fresh.execute_step(&StepRequest::default()),
        Err(WorkerError::NotReady(_))
    ));
    assert!(ModelRunner::new(&InitRequest {
        device: "tpu".into(),
        world_size: 1,
        ..Default::default()
    })
    .is_err());
}

/// A token id past the model's vocabulary in one request of a step (the
/// engine checks prompts, so this is a worker that disagrees with it):
/// that request fails, the other request of the same step gets exactly the
/// tokens it gets alone, and the runner goes on.
#[test]
fn one_bad_request_leaves_its_step_mates_alone() {
    let expected = one_shot_greedy(4);
    let mut r = runner();
    let mut d = Driver::new(0);
    let mut good = Seq::new("good", &PROMPT, greedy());
    let mut step = d.step(&mut [&mut good], &[0]);
    step.new_requests.push(NewRequest {
        req_id: "evil".into(),
        prompt_token_ids: vec![1, 999, 2],
        sampling: Some(greedy()),
        block_tables: one_table(vec![NUM_BLOCKS - 1]),
        num_computed_tokens: 0,
    });
    step.scheduled.push(ScheduledTokens {
        req_id: "evil".into(),
        num_tokens: 3,
    });
    let result = r.execute_step(&step).unwrap();
    assert_eq!(failed_ids(&result), ["evil"]);
    assert!(
        result.failed[0].reason.contains("token id 999"),
        "{result:?}"
    );
    assert_eq!(result.outputs.len(), 1);
    assert_eq!(result.outputs[0].req_id, "good");
    good.computed += PROMPT.len();
    good.tokens.extend(&result.outputs[0].sampled_token_ids);
    assert!(r.input_batch().get("evil").is_none());
    // The engine then lists the failed id as finished; that is harmless.
    let mut next = d.step(&mut [&mut good], &[1]);
    next.finished_req_ids.push("evil".into());
    let result = r.execute_step(&next).unwrap();
    assert!(result.failed.is_empty());
    Driver::update(&mut [&mut good], &next, &result);
    d.decode(&mut r, &mut [&mut good], 3);
    assert_eq!(good.output(), expected.as_slice());
}

/// `ids` as the block tables of a one-group KV cache.
fn one_table(ids: Vec<u32>) -> Vec<proto::worker::BlockTable> {
    vec![proto::worker::BlockTable { block_ids: ids }]
}
