//! The models: a [`CausalLm`] trait the runner holds, and a registry that
//! builds one from a [`ModelConfig`] by its [`Architecture`] (vLLM's
//! `ModelRegistry`). A model file assembles `crate::layers`; Llama, Mistral,
//! Qwen3, Mixtral and Qwen3-MoE are one decoder (`decoder.rs`) whose layers
//! read their differences (QK norm, sliding windows, sparse MLPs) from the
//! config, as vLLM runs Mistral with its Llama class.

pub mod decoder;

use std::sync::Arc;

use model_files::{Architecture, ModelConfig};
use tch::{Device, Tensor};

use crate::attention::AttentionBackend;
use crate::batch::ForwardBatch;
use crate::layers::moe::ExpertPlacement;
use crate::layers::ForwardError;
use crate::paged_kv::{KvCacheSpec, PagedKvCache};
use crate::parallel::TpGroup;
use crate::weights::{WeightError, Weights};

/// A causal language model loaded for one tensor-parallel rank.
pub trait CausalLm: Send {
    /// The config it was built from.
    fn config(&self) -> &ModelConfig;

    /// The device its weights live on.
    fn device(&self) -> Device;

    /// The KV cache this rank needs for `num_blocks` blocks of
    /// `block_size` tokens. With `hybrid`, layers are grouped by attention
    /// window (`kv_cache::KvCacheLayout::hybrid`) so the scheduler can hold
    /// only the blocks a window still sees; without, one group holds every
    /// layer (`--disable-hybrid-kv-cache-manager`).
    fn kv_cache_spec(&self, num_blocks: usize, block_size: usize, hybrid: bool) -> KvCacheSpec;

    /// Runs one step over the flat batch, writing its K/V into `cache`;
    /// returns f32 logits `[N, vocab]` for `batch.logits_indices` (on every
    /// rank). Fails (never panics) when a torch op or a collective does.
    fn forward(
        &self,
        batch: &ForwardBatch,
        cache: &mut PagedKvCache,
    ) -> Result<Tensor, ForwardError>;
}

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Weights(#[from] WeightError),
    /// The tensor-parallel size cannot split this model; `valid` lists
    /// the sizes that can, so the message says what to use instead.
    #[error(
        "tensor parallel size {world_size} cannot split this model: it does not divide \
         {what} ({count}){}; sizes that work: {}",
        kv_note(.what),
        join(.valid)
    )]
    Indivisible {
        what: &'static str,
        count: usize,
        world_size: usize,
        valid: Vec<usize>,
    },
}

fn kv_note(what: &str) -> &'static str {
    if what == "num_key_value_heads" {
        " and is not a multiple of it"
    } else {
        ""
    }
}

fn join(sizes: &[usize]) -> String {
    let s: Vec<String> = sizes.iter().map(usize::to_string).collect();
    s.join(", ")
}

/// Builds the model `config.architecture()` names for rank `tp.rank`,
/// loading every weight (names and shapes checked). `on_layer` is called
/// after each decoder layer, for a progress bar.
pub fn build_model(
    config: &ModelConfig,
    weights: &Weights,
    backend: Arc<dyn AttentionBackend>,
    placement: ExpertPlacement,
    tp: &TpGroup,
    on_layer: impl FnMut(usize, usize),
) -> Result<Box<dyn CausalLm>, ModelError> {
    if let Some((what, count)) = indivisible(config, placement, tp.world_size) {
        return Err(ModelError::Indivisible {
            what,
            count,
            world_size: tp.world_size,
            valid: valid_tp_sizes(config, placement),
        });
    }
    match config.architecture() {
        Architecture::Llama
        | Architecture::Qwen3
        | Architecture::Mistral
        | Architecture::Mixtral
        | Architecture::Qwen3Moe
        | Architecture::Llama4 => Ok(Box::new(decoder::DecoderModel::load(
            config, weights, backend, placement, tp, on_layer,
        )?)),
    }
}

/// The first count that tensor-parallel size `world_size` cannot split,
/// as `(name, count)`: query heads, intermediate size and vocabulary must
/// divide evenly; K/V heads must divide evenly or divide the size (then
/// they are replicated, see `layers::linear::kv_head_shard`); experts
/// split their intermediate size, or, placed whole, their count.
fn indivisible(
    config: &ModelConfig,
    placement: ExpertPlacement,
    world_size: usize,
) -> Option<(&'static str, usize)> {
    let kv = config.num_kv_heads();
    if kv % world_size != 0 && world_size % kv.max(1) != 0 {
        return Some(("num_key_value_heads", kv));
    }
    let experts = config.moe_spec().map(|moe| match placement {
        ExpertPlacement::SplitIntermediate => ("expert intermediate size", moe.intermediate_size),
        ExpertPlacement::WholeExperts => ("number of experts", moe.num_experts),
    });
    let shared = config
        .moe_spec()
        .and_then(|moe| moe.shared_expert_intermediate_size)
        .map(|n| ("shared expert intermediate size", n));
    [
        ("num_attention_heads", config.num_attention_heads),
        ("intermediate_size", config.mlp_intermediate_size()),
        ("vocab_size", config.vocab_size),
    ]
    .into_iter()
    .chain(experts)
    .chain(shared)
    .find(|&(_, count)| count % world_size != 0)
}

/// Every tensor-parallel size up to the number of query heads that can
/// split `config` with `placement`.
pub fn valid_tp_sizes(config: &ModelConfig, placement: ExpertPlacement) -> Vec<usize> {
    (1..=config.num_attention_heads.max(1))
        .filter(|&n| indivisible(config, placement, n).is_none())
        .collect()
}
