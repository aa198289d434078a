//! Logits of our Llama against transformers on a tiny random checkpoint
//! (GQA 8/4 heads, llama3 rope scaling, untied embeddings), through the
//! paths a serving engine uses: a batch mixing sequences of different
//! lengths, a prompt prefilled in several chunks, and decode steps over a
//! non-contiguous block table. Tolerance: max |Δlogit| ≤ 1e-4 (f32); in
//! half precision on a GPU, a fraction of the logits' scale (`common::Target`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::Path;

use common::{floats, ids, max_abs_diff, read_json, scale, Target};
use model_files::ModelSource;
use workers::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use workers::loader::{load_model, LoadFormat, LoadOptions};
use workers::models::llama::LlamaModel;
use workers::paged_kv::PagedKvCache;
use workers::parallel::TpGroup;

const TOL: f32 = 1e-4;
const BLOCK: usize = 4;
const NUM_BLOCKS: usize = 64;

struct Case {
    ids: Vec<u32>,
    /// Expected logits at every position.
    logits: Vec<Vec<f32>>,
}

fn cases() -> Vec<Case> {
    let v = read_json("tiny_llama_expected.json");
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

fn load(folder: &str) -> LlamaModel {
    let path = common::fixtures().join(folder);
    let source = ModelSource::resolve(path.to_str().unwrap()).unwrap();
    let target = Target::from_env();
    let options = LoadOptions {
        format: LoadFormat::Auto,
        device: target.device,
        kind: target.kind,
        seed: 0,
    };
    load_model(&source, &options, &TpGroup::single(), |_, _| {}).unwrap()
}

fn cache(model: &LlamaModel) -> PagedKvCache {
    let target = Target::from_env();
    PagedKvCache::new(
        model.kv_cache_spec(NUM_BLOCKS, BLOCK),
        target.kind,
        target.device,
    )
    .unwrap()
}

fn limits(model: &LlamaModel) -> BatchLimits {
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
    let cases = cases();
    for folder in ["tiny_llama", "tiny_llama_sharded"] {
        let model = load(folder);
        let mut kv = cache(&model);
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
            ForwardBatch::build(&chunks, limits(&model), Target::from_env().device).unwrap();
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
    let cases = cases();
    let model = load("tiny_llama");
    let mut kv = cache(&model);
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
            ForwardBatch::build(&chunks, limits(&model), Target::from_env().device).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap();
        check(
            &logits.get(0),
            &long.logits[end - 1],
            &format!("chunk ending at {end}"),
        );
        if start == 0 {
            check(
                &logits.get(1),
                other.logits.last().unwrap(),
                "co-scheduled prefill",
            );
        }
    }
}

#[test]
fn decode_over_non_contiguous_blocks_matches_transformers() {
    let cases = cases();
    let model = load("tiny_llama");
    let mut kv = cache(&model);
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
    let batch = ForwardBatch::build(&first, limits(&model), Target::from_env().device).unwrap();
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
            ForwardBatch::build(&chunks, limits(&model), Target::from_env().device).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap();
        for (i, (c, _)) in seqs.iter().enumerate() {
            check(
                &logits.get(i as i64),
                &c.logits[pos],
                &format!("seq {i} decode at {pos}"),
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
    let run = |m: &LlamaModel| {
        let mut kv = cache(m);
        let batch = ForwardBatch::build(
            std::slice::from_ref(&chunk),
            limits(m),
            Target::from_env().device,
        )
        .unwrap();
        m.forward(&batch, &mut kv).unwrap()
    };
    assert!(run(&a).equal(&run(&b)));
}
