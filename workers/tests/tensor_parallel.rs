//! Tensor parallelism on CPU: every rank a thread of this process, joined
//! by the TCP communicator, each loading its shard of the weights.
//!
//! - Tiny random Llama (8 heads, 4 K/V heads): at tp 2, 4 and 8 (8 ranks
//!   replicate the 4 K/V heads) the logits of a mixed-length prefill and
//!   of decode steps are within 1e-4 of transformers, like tp 1, and the
//!   greedy tokens equal tp 1's.
//! - SmolLM2 (9 heads, 3 K/V heads): tp 3 gives transformers' 32 greedy
//!   tokens for every fixture prompt; tp 2 is refused with
//!   `ModelError::Indivisible`, naming the sizes that work.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{floats, ids, max_abs_diff, read_json};
use model_files::ModelSource;
use tch::{Device, Kind, Tensor};
use workers::attention::BackendChoice;
use workers::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use workers::layers::moe::ExpertPlacement;
use workers::loader::{load_model, LoadError, LoadFormat, LoadOptions, QuantizationChoice};
use workers::models::{CausalLm, ModelError};
use workers::paged_kv::PagedKvCache;
use workers::parallel::{TcpOptions, TpGroup};

const TOL: f32 = 1e-4;

/// Runs `f(group)` on `n` threads, one rank each; results in rank order.
fn on_ranks<T: Send + 'static>(
    n: usize,
    f: impl Fn(TpGroup) -> T + Send + Sync + Clone + 'static,
) -> Vec<T> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let id = format!("tcp://127.0.0.1:{port}");
    let options = TcpOptions {
        rendezvous_timeout: Duration::from_secs(60),
        op_timeout: Duration::from_secs(60),
    };
    let handles: Vec<_> = (0..n)
        .map(|rank| {
            let (f, id) = (f.clone(), id.clone());
            std::thread::spawn(move || f(TpGroup::connect(rank, n, &id, options).unwrap()))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn cpu_f32() -> LoadOptions {
    LoadOptions {
        format: LoadFormat::Auto,
        device: Device::Cpu,
        kind: Kind::Float,
        seed: 0,
        attention_backend: BackendChoice::Auto,
        hf_overrides: None,
        quantization: QuantizationChoice::None,
        expert_placement: ExpertPlacement::SplitIntermediate,
    }
}

fn load(model: &str, tp: &TpGroup) -> Result<Box<dyn CausalLm>, LoadError> {
    load_placed(model, ExpertPlacement::SplitIntermediate, tp)
}

fn load_placed(
    model: &str,
    placement: ExpertPlacement,
    tp: &TpGroup,
) -> Result<Box<dyn CausalLm>, LoadError> {
    let source = ModelSource::resolve(model).unwrap();
    let options = LoadOptions {
        expert_placement: placement,
        ..cpu_f32()
    };
    load_model(&source, &options, tp, |_, _| {})
}

fn tiny_path(family: &str) -> String {
    common::fixtures()
        .join(family)
        .to_str()
        .unwrap()
        .to_string()
}

fn limits(model: &dyn CausalLm, num_blocks: usize, block_size: usize) -> BatchLimits {
    BatchLimits {
        vocab_size: model.config().vocab_size,
        num_blocks,
        block_size,
        max_positions: model.config().max_position_embeddings,
        num_groups: 1,
    }
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    (0..t.size()[0])
        .map(|i| Vec::<f32>::try_from(t.get(i)).unwrap())
        .collect()
}

/// What one rank computed on the tiny Llama: the last-position prefill
/// logits of four sequences, then `DECODE` greedy steps for all four
/// (tokens and logits of every step).
struct TinyRun {
    prefill: Vec<Vec<f32>>,
    greedy: Vec<Vec<u32>>,
}

const DECODE: usize = 8;
const BLOCK: usize = 4;

fn tiny_run(
    family: &str,
    placement: ExpertPlacement,
    tp: TpGroup,
    prompts: Vec<Vec<u32>>,
) -> TinyRun {
    let model = load_placed(&tiny_path(family), placement, &tp).unwrap();
    let num_blocks = 64;
    let mut kv = PagedKvCache::new(
        model.kv_cache_spec(num_blocks, BLOCK, false),
        Kind::Float,
        Device::Cpu,
    )
    .unwrap();
    let lim = limits(&*model, num_blocks, BLOCK);
    let tables: Vec<Vec<u32>> = (0..prompts.len() as u32)
        .map(|i| (i * 8..i * 8 + 8).collect())
        .collect();
    let mut chunks: Vec<SequenceChunk> = prompts
        .iter()
        .zip(&tables)
        .map(|(p, t)| SequenceChunk {
            token_ids: p.clone(),
            num_computed: 0,
            block_tables: vec![t.clone()],
            want_logits: true,
        })
        .collect();
    let mut greedy = vec![Vec::new(); prompts.len()];
    let mut prefill = Vec::new();
    for step in 0..=DECODE {
        let batch = ForwardBatch::build(&chunks, lim, Device::Cpu).unwrap();
        let logits = model.forward(&batch, &mut kv).unwrap();
        if step == 0 {
            prefill = rows(&logits);
        }
        let next: Vec<i64> = Vec::try_from(logits.argmax(-1, false)).unwrap();
        for (i, c) in chunks.iter_mut().enumerate() {
            let token = next[i] as u32;
            greedy[i].push(token);
            c.num_computed += c.token_ids.len();
            c.token_ids = vec![token];
        }
    }
    TinyRun { prefill, greedy }
}

/// `family` at tensor-parallel sizes `sizes` on the CPU communicator:
/// every rank's prefill logits within tolerance of transformers, its greedy
/// tokens those of tp 1, and all ranks bit-identical.
fn tp_matches_transformers_and_tp_1(family: &str, placement: ExpertPlacement, sizes: &[usize]) {
    let v = read_json(&format!("{family}_expected.json"));
    let seqs = v["sequences"].as_array().unwrap();
    // Lengths 7, 13, 1, 20.
    let prompts: Vec<Vec<u32>> = seqs[..4].iter().map(|s| ids(&s["ids"])).collect();
    let expected: Vec<Vec<f32>> = seqs[..4]
        .iter()
        .map(|s| floats(s["logits"].as_array().unwrap().last().unwrap()))
        .collect();
    let single = tiny_run(family, placement, TpGroup::single(), prompts.clone());
    for &n in sizes {
        let (p, f) = (prompts.clone(), family.to_string());
        let runs = on_ranks(n, move |tp| tiny_run(&f, placement, tp, p.clone()));
        for (rank, run) in runs.iter().enumerate() {
            let what = format!("{family} {placement:?} tp {n} rank {rank}");
            for (i, want) in expected.iter().enumerate() {
                let diff = max_abs_diff(&Tensor::from_slice(&run.prefill[i]), want);
                assert!(diff <= TOL, "{what} seq {i}: max |Δ| {diff}");
            }
            assert_eq!(run.greedy, single.greedy, "{what}: greedy tokens");
            // Every rank holds the same logits, bit for bit.
            assert_eq!(run.prefill, runs[0].prefill, "{what}");
        }
    }
}

#[test]
fn tiny_llama_tp_2_4_8_match_transformers_and_tp_1() {
    tp_matches_transformers_and_tp_1("tiny_llama", ExpertPlacement::default(), &[2, 4, 8]);
}

/// Mixtral (4 experts), Qwen3-MoE (8 experts, one dense layer) and Llama
/// 4 (4 stacked experts and a shared one on two of four layers) at tp 2
/// and 4, experts split along their intermediate dimension and placed
/// whole (`--enable-expert-parallel`).
#[test]
fn moe_tp_2_4_both_expert_placements_match_transformers_and_tp_1() {
    for family in ["tiny_mixtral", "tiny_qwen3_moe", "tiny_llama4"] {
        for placement in [
            ExpertPlacement::SplitIntermediate,
            ExpertPlacement::WholeExperts,
        ] {
            tp_matches_transformers_and_tp_1(family, placement, &[2, 4]);
        }
    }
}

#[test]
fn experts_that_do_not_split_are_refused_with_the_sizes_that_work() {
    // Mixtral's 4 experts cannot be placed whole on 8 ranks.
    let errs = on_ranks(8, |tp| {
        load_placed(
            &tiny_path("tiny_mixtral"),
            ExpertPlacement::WholeExperts,
            &tp,
        )
        .err()
        .map(|e| e.to_string())
    });
    for e in errs {
        let msg = e.expect("tp 8 with whole experts must be refused");
        assert!(msg.contains("number of experts (4)"), "{msg}");
        assert!(msg.contains("sizes that work: 1, 2, 4"), "{msg}");
    }
}

#[test]
fn smollm2_tp_3_greedy_equals_transformers() {
    let expected = read_json("smollm2_expected.json");
    let cases: Vec<(Vec<u32>, Vec<u32>)> = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (ids(&c["prompt_ids"]), ids(&c["greedy"])))
        .collect();
    let prompts: Vec<Vec<u32>> = cases.iter().map(|c| c.0.clone()).collect();
    let want_len = cases[0].1.len();
    let runs = on_ranks(3, move |tp| {
        let model = load("smollm2", &tp).unwrap();
        let (num_blocks, block) = (64, 16);
        let lim = limits(&*model, num_blocks, block);
        let mut out = Vec::new();
        for prompt in &prompts {
            let mut kv = PagedKvCache::new(
                model.kv_cache_spec(num_blocks, block, false),
                Kind::Float,
                Device::Cpu,
            )
            .unwrap();
            let mut chunk = SequenceChunk {
                token_ids: prompt.clone(),
                num_computed: 0,
                block_tables: vec![(0..num_blocks as u32).rev().collect()],
                want_logits: true,
            };
            let mut greedy = Vec::new();
            while greedy.len() < want_len {
                let batch =
                    ForwardBatch::build(std::slice::from_ref(&chunk), lim, Device::Cpu).unwrap();
                let logits = model.forward(&batch, &mut kv).unwrap().get(0);
                let token = logits.argmax(-1, false).int64_value(&[]) as u32;
                greedy.push(token);
                chunk.num_computed += chunk.token_ids.len();
                chunk.token_ids = vec![token];
            }
            out.push(greedy);
        }
        out
    });
    for (rank, run) in runs.iter().enumerate() {
        for (n, (greedy, case)) in run.iter().zip(&cases).enumerate() {
            assert_eq!(
                greedy, &case.1,
                "rank {rank} prompt {n}: greedy tokens differ"
            );
        }
    }
}

#[test]
fn smollm2_tp_2_is_refused_clearly() {
    let errs = on_ranks(2, |tp| load("smollm2", &tp).err());
    for e in errs {
        let Some(LoadError::Model(ModelError::Indivisible {
            what,
            count,
            world_size,
            valid,
        })) = &e
        else {
            panic!("expected Indivisible, got {:?}", e.map(|e| e.to_string()));
        };
        assert_eq!((*what, *count, *world_size), ("num_key_value_heads", 3, 2));
        assert_eq!(valid, &[1, 3]);
        let msg = e.as_ref().unwrap().to_string();
        assert!(msg.contains("tensor parallel size 2"), "{msg}");
        assert!(msg.contains("sizes that work: 1, 3"), "{msg}");
    }
}
