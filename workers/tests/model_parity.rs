//! Logits of our models against transformers on tiny random checkpoints,
//! one per family: Llama (GQA 8/4, llama3 rope scaling, untied
//! embeddings), Qwen3 (QK norm, tied embeddings), Mistral (a sliding
//! window of 8 tokens, GQA 8/2), Mixtral (4 experts, top-2) and Qwen3-MoE
//! (8 experts, top-2 unnormalized, one dense layer), through the paths a serving engine uses:
//! a batch mixing sequences of different lengths, a prompt prefilled in
//! several chunks (crossing the window), decode steps over a
//! non-contiguous block table, and 32 greedy steps, also across a
//! preemption (the cache dropped and the sequence recomputed elsewhere).
//! Tolerance: max |Δlogit| ≤ 1e-4 (f32); in half precision on a GPU, a
//! fraction of the logits' scale (`common::Target`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;

use common::{floats, ids, max_abs_diff, read_json, scale, Target};
use model_files::ModelSource;
use tch::Tensor;
use workers::attention::BackendChoice;
use workers::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use workers::layers::moe::ExpertPlacement;
use workers::loader::{load_model, LoadFormat, LoadOptions};
use workers::models::CausalLm;
use workers::paged_kv::PagedKvCache;
use workers::parallel::TpGroup;

/// The tiny checkpoints (`scripts/fixtures/llama_parity.py`,
/// `scripts/fixtures/model_families.py`).
const FAMILIES: [&str; 6] = [
    "tiny_llama",
    "tiny_qwen3",
    "tiny_mistral",
    "tiny_mixtral",
    "tiny_qwen3_moe",
    "tiny_llama4",
];

const TOL: f32 = 1e-4;
const BLOCK: usize = 4;
const NUM_BLOCKS: usize = 64;

struct Case {
    ids: Vec<u32>,
    /// Expected logits at every position.
    logits: Vec<Vec<f32>>,
}

fn cases(family: &str) -> Vec<Case> {
    let v = read_json(&format!("{family}_expected.json"));
    v["sequences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Case {
            ids: ids(&s["ids"]),
            logits: s["logits"].as_array().unwrap().iter().map(floats).collect(),
        })
        .collect()
}

/// Asserts `ours` is within tolerance of the expected logits row.
fn check(ours: &tch::Tensor, expected: &[f32], what: &str) {
    let tol = Target::from_env().tol(TOL, scale(expected));
    let diff = max_abs_diff(ours, expected);
    assert!(diff <= tol, "{what}: max |Δ| {diff} > {tol}");
}

fn load(folder: &str) -> Box<dyn CausalLm> {
    let path = common::fixtures().join(folder);
    let source = ModelSource::resolve(path.to_str().unwrap()).unwrap();
    let target = Target::from_env();
    let options = LoadOptions {
        format: LoadFormat::Auto,
        device: target.device,
        kind: target.kind,
        seed: 0,
        attention_backend: BackendChoice::Auto,
        hf_overrides: None,
        expert_placement: ExpertPlacement::SplitIntermediate,
    };
    load_model(&source, &options, &TpGroup::single(), |_, _| {}).unwrap()
}

fn cache(model: &dyn CausalLm) -> PagedKvCache {
    let target = Target::from_env();
    PagedKvCache::new(
        model.kv_cache_spec(NUM_BLOCKS, BLOCK),
        target.kind,
        target.device,
    )
    .unwrap()
}

fn limits(model: &dyn CausalLm) -> BatchLimits {
    BatchLimits {
        vocab_size: model.config().vocab_size,
        num_blocks: NUM_BLOCKS,
        block_size: BLOCK,
        max_positions: model.config().max_position_embeddings,
    }
}

/// `blocks` consecutive block ids starting at `first`.
fn table(first: u32, blocks: u32) -> Vec<u32> {
    (first..first + blocks).collect()
}

#[test]
fn mixed_length_batch_matches_transformers() {
    let runs = FAMILIES
        .iter()
        .map(|f| (*f, *f))
        .chain([("tiny_llama_sharded", "tiny_llama")]);
    for (folder, family) in runs {
        let cases = cases(family);
        let model = load(folder);
        let mut kv = cache(&*model);
        // Sequences of length 7, 13, 1, 20 prefilled together.
        let chunks: Vec<SequenceChunk> = cases[..4]
            .iter()
            .enumerate()
            .map(|(i, c)| SequenceChunk {
                token_ids: c.ids.clone(),
                num_computed: 0,
                block_table: table(i as u32 * 8, 8),
                want_logits: true,
            })
            .collect();
        let batch =
            ForwardBatch::build(&chunks, limits(&*model), Target::from_env().device).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap();
        for (i, c) in cases[..4].iter().enumerate() {
            let row = batch.logits_rows[i].unwrap() as i64;
            check(
                &logits.get(row),
                c.logits.last().unwrap(),
                &format!("{folder} seq {i}"),
            );
        }
    }
}

#[test]
fn chunked_prefill_matches_transformers() {
    for family in FAMILIES {
        chunked_prefill(family);
    }
}

fn chunked_prefill(family: &str) {
    let cases = cases(family);
    let model = load(family);
    let mut kv = cache(&*model);
    let long = &cases[5]; // 40 tokens
    let other = &cases[1]; // 13 tokens, prefilled alongside the first chunk
    let bounds = [0usize, 9, 16, 31, 40];
    for w in bounds.windows(2) {
        let (start, end) = (w[0], w[1]);
        let mut chunks = vec![SequenceChunk {
            token_ids: long.ids[start..end].to_vec(),
            num_computed: start,
            block_table: table(0, 10),
            want_logits: true,
        }];
        if start == 0 {
            chunks.push(SequenceChunk {
                token_ids: other.ids.clone(),
                num_computed: 0,
                block_table: table(20, 4),
                want_logits: true,
            });
        }
        let batch =
            ForwardBatch::build(&chunks, limits(&*model), Target::from_env().device).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap();
        check(
            &logits.get(0),
            &long.logits[end - 1],
            &format!("{family} chunk ending at {end}"),
        );
        if start == 0 {
            check(
                &logits.get(1),
                other.logits.last().unwrap(),
                &format!("{family} co-scheduled prefill"),
            );
        }
    }
}

#[test]
fn decode_over_non_contiguous_blocks_matches_transformers() {
    for family in FAMILIES {
        decode_over_non_contiguous_blocks(family);
    }
}

fn decode_over_non_contiguous_blocks(family: &str) {
    let cases = cases(family);
    let model = load(family);
    let mut kv = cache(&*model);
    // Two sequences decoding side by side, blocks scattered and interleaved.
    let seqs = [
        (&cases[3], vec![17u32, 3, 40, 9, 22, 5]),
        (&cases[4], vec![8u32, 30, 1, 63]),
    ];
    let prompt = 6usize;
    let first = seqs
        .iter()
        .map(|(c, t)| SequenceChunk {
            token_ids: c.ids[..prompt].to_vec(),
            num_computed: 0,
            block_table: t.clone(),
            want_logits: true,
        })
        .collect::<Vec<_>>();
    let batch = ForwardBatch::build(&first, limits(&*model), Target::from_env().device).unwrap();
    let _ = model.forward(&batch, &mut kv).unwrap();
    // Teacher-forced decode: one token per sequence per step.
    for pos in prompt..12 {
        let chunks = seqs
            .iter()
            .map(|(c, t)| SequenceChunk {
                token_ids: vec![c.ids[pos]],
                num_computed: pos,
                block_table: t.clone(),
                want_logits: true,
            })
            .collect::<Vec<_>>();
        let batch =
            ForwardBatch::build(&chunks, limits(&*model), Target::from_env().device).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap();
        for (i, (c, _)) in seqs.iter().enumerate() {
            check(
                &logits.get(i as i64),
                &c.logits[pos],
                &format!("{family} seq {i} decode at {pos}"),
            );
        }
    }
}

#[test]
fn sharded_and_single_files_load_the_same_model() {
    let dir = common::fixtures();
    assert!(Path::new(&dir.join("tiny_llama_sharded/model.safetensors.index.json")).is_file());
    let a = load("tiny_llama");
    let b = load("tiny_llama_sharded");
    let chunk = SequenceChunk {
        token_ids: vec![5, 6, 7],
        num_computed: 0,
        block_table: vec![0],
        want_logits: true,
    };
    let run = |m: &dyn CausalLm| {
        let mut kv = cache(m);
        let batch = ForwardBatch::build(
            std::slice::from_ref(&chunk),
            limits(m),
            Target::from_env().device,
        )
        .unwrap();
        m.forward(&batch, &mut kv).unwrap()
    };
    assert!(run(&*a).equal(&run(&*b)));
}

/// One forward over `chunks`, logits `[N, vocab]`.
fn run(model: &dyn CausalLm, kv: &mut PagedKvCache, chunks: &[SequenceChunk]) -> Tensor {
    let batch = ForwardBatch::build(chunks, limits(model), Target::from_env().device).unwrap();
    model.forward(&batch, kv).unwrap()
}

fn argmax(logits: &Tensor) -> u32 {
    logits.argmax(-1, false).int64_value(&[]) as u32
}

/// 32 greedy steps after a 20-token prompt equal transformers' (which
/// decodes with its own KV cache; for Llama 4 it recomputes the whole
/// sequence each step), over scattered blocks; and again with a
/// preemption after 10 steps: the cache is dropped and prompt plus output
/// so far are recomputed in one chunk into other blocks, as a resumed
/// request is.
#[test]
fn greedy_decode_and_resume_after_preemption_match_transformers() {
    for family in &FAMILIES[1..] {
        let v = read_json(&format!("{family}_expected.json"));
        let prompt = ids(&v["greedy"]["prompt"]);
        let expected = ids(&v["greedy"]["tokens"]);
        assert_eq!(expected.len(), 32);
        let model = load(family);
        for preempt_at in [None, Some(10)] {
            let mut kv = cache(&*model);
            // Blocks 50, 3, 41, 7, ... : never two neighbours in a row.
            let mut table: Vec<u32> = (0..16).map(|i| (i * 37 + 50) % 64).collect();
            let mut tokens = prompt.clone();
            let mut computed = 0;
            let mut ours = Vec::new();
            while ours.len() < expected.len() {
                if preempt_at == Some(ours.len()) && computed > 0 {
                    kv = cache(&*model);
                    table = (0..16).map(|i| (i * 29 + 11) % 64).collect();
                    computed = 0;
                }
                let chunk = SequenceChunk {
                    token_ids: tokens[computed..].to_vec(),
                    num_computed: computed,
                    block_table: table.clone(),
                    want_logits: true,
                };
                let logits = run(model.as_ref(), &mut kv, &[chunk]);
                computed = tokens.len();
                let next = argmax(&logits.get(0));
                ours.push(next);
                tokens.push(next);
            }
            assert_eq!(
                ours, expected,
                "{family}, preempted at {preempt_at:?}: greedy tokens differ"
            );
        }
    }
}
