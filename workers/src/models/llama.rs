//! Llama (and SmolLM2, which is Llama-shaped): embeddings, decoder layers of
//! grouped-query attention over the paged KV cache and a SwiGLU MLP, final
//! RMSNorm, tied or untied LM head.
//!
//! Follows HF's `modeling_llama.py` op for op so logits match transformers;
//! weight names are HF's, whatever the container.

use std::sync::Arc;

use model_files::LlamaConfig;
use tch::{Device, Tensor};

use crate::attention::AttentionBackend;
use crate::batch::ForwardBatch;
use crate::layers::embedding::{ParallelLmHead, VocabParallelEmbedding};
use crate::layers::linear::{kv_head_shard, MergedColumnParallelLinear, RowParallelLinear};
use crate::layers::norm::RmsNorm;
use crate::layers::rotary::RotaryEmbedding;
use crate::paged_kv::{KvCacheSpec, PagedKvCache};
use crate::parallel::{CommError, TpGroup};
use crate::weights::{Shard, WeightError, Weights};

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

/// The first count that tensor-parallel size `world_size` cannot split,
/// as `(name, count)`: query heads, intermediate size and vocabulary must
/// divide evenly; K/V heads must divide evenly or divide the size (then
/// they are replicated, see [`kv_head_shard`]).
fn indivisible(config: &LlamaConfig, world_size: usize) -> Option<(&'static str, usize)> {
    let kv = config.num_kv_heads();
    if kv % world_size != 0 && world_size % kv.max(1) != 0 {
        return Some(("num_key_value_heads", kv));
    }
    [
        ("num_attention_heads", config.num_attention_heads),
        ("intermediate_size", config.intermediate_size),
        ("vocab_size", config.vocab_size),
    ]
    .into_iter()
    .find(|&(_, count)| count % world_size != 0)
}

/// Every tensor-parallel size up to the number of query heads that can
/// split `config`.
pub fn valid_tp_sizes(config: &LlamaConfig) -> Vec<usize> {
    (1..=config.num_attention_heads.max(1))
        .filter(|&n| indivisible(config, n).is_none())
        .collect()
}

struct Attention {
    /// q, k and v projections as one matrix.
    qkv_proj: MergedColumnParallelLinear,
    o_proj: RowParallelLinear,
    /// Heads on this rank.
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
    scale: f64,
}

impl Attention {
    fn load(
        weights: &Weights,
        prefix: &str,
        cfg: &LlamaConfig,
        tp: &TpGroup,
    ) -> Result<Self, ModelError> {
        let hidden = cfg.hidden_size as i64;
        let head_dim = cfg.head_dim() as i64;
        let heads = cfg.num_attention_heads as i64;
        let kv_heads = cfg.num_kv_heads() as i64;
        let ws = tp.world_size as i64;
        let q_shard = Shard {
            dim: 0,
            rank: tp.rank,
            world_size: tp.world_size,
        };
        let kv_shard = kv_head_shard(cfg.num_kv_heads(), tp);
        Ok(Self {
            qkv_proj: MergedColumnParallelLinear::load_parts(
                weights,
                &[
                    (
                        &format!("{prefix}.q_proj.weight"),
                        heads * head_dim,
                        q_shard,
                    ),
                    (
                        &format!("{prefix}.k_proj.weight"),
                        kv_heads * head_dim,
                        kv_shard,
                    ),
                    (
                        &format!("{prefix}.v_proj.weight"),
                        kv_heads * head_dim,
                        kv_shard,
                    ),
                ],
                hidden,
            )?,
            o_proj: RowParallelLinear::load(
                weights,
                &format!("{prefix}.o_proj.weight"),
                heads * head_dim,
                hidden,
                tp,
            )?,
            num_heads: heads / ws,
            // One replicated head when the ranks outnumber the K/V heads.
            num_kv_heads: (kv_heads / ws).max(1),
            head_dim,
            scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }
}

struct Mlp {
    /// gate and up projections as one matrix.
    gate_up_proj: MergedColumnParallelLinear,
    down_proj: RowParallelLinear,
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// A loaded Llama model for one tensor-parallel rank.
pub struct LlamaModel {
    config: LlamaConfig,
    embed_tokens: VocabParallelEmbedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: ParallelLmHead,
    rotary: RotaryEmbedding,
    backend: Arc<dyn AttentionBackend>,
    tp: TpGroup,
    device: Device,
}

impl LlamaModel {
    /// Loads every weight (checking names and shapes) for rank `tp.rank`.
    /// `on_layer` is called after each decoder layer, for a progress bar.
    pub fn load(
        config: &LlamaConfig,
        weights: &Weights,
        backend: Arc<dyn AttentionBackend>,
        tp: &TpGroup,
        mut on_layer: impl FnMut(usize, usize),
    ) -> Result<Self, ModelError> {
        if let Some((what, count)) = indivisible(config, tp.world_size) {
            return Err(ModelError::Indivisible {
                what,
                count,
                world_size: tp.world_size,
                valid: valid_tp_sizes(config),
            });
        }
        let hidden = config.hidden_size as i64;
        let inter = config.intermediate_size as i64;
        let vocab = config.vocab_size as i64;
        let eps = config.rms_norm_eps;
        let embed_tokens =
            VocabParallelEmbedding::load(weights, "model.embed_tokens.weight", vocab, hidden, tp)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(DecoderLayer {
                input_layernorm: RmsNorm::load(
                    weights,
                    &format!("{p}.input_layernorm.weight"),
                    hidden,
                    eps,
                )?,
                self_attn: Attention::load(weights, &format!("{p}.self_attn"), config, tp)?,
                post_attention_layernorm: RmsNorm::load(
                    weights,
                    &format!("{p}.post_attention_layernorm.weight"),
                    hidden,
                    eps,
                )?,
                mlp: Mlp {
                    gate_up_proj: MergedColumnParallelLinear::load(
                        weights,
                        &[
                            (&format!("{p}.mlp.gate_proj.weight"), inter),
                            (&format!("{p}.mlp.up_proj.weight"), inter),
                        ],
                        hidden,
                        tp,
                    )?,
                    down_proj: RowParallelLinear::load(
                        weights,
                        &format!("{p}.mlp.down_proj.weight"),
                        inter,
                        hidden,
                        tp,
                    )?,
                },
            });
            on_layer(i + 1, config.num_hidden_layers);
        }
        let norm = RmsNorm::load(weights, "model.norm.weight", hidden, eps)?;
        let lm_head = if config.tie_word_embeddings {
            ParallelLmHead::tied(&embed_tokens, tp)
        } else {
            ParallelLmHead::load(weights, "lm_head.weight", vocab, hidden, tp)?
        };
        Ok(Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(config, weights.device()),
            backend,
            tp: tp.clone(),
            device: weights.device(),
        })
    }

    /// The config the model was built from.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device its weights live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The KV cache layout this rank needs for `num_blocks` blocks.
    pub fn kv_cache_spec(&self, num_blocks: usize, block_size: usize) -> KvCacheSpec {
        KvCacheSpec {
            num_layers: self.config.num_hidden_layers,
            num_blocks,
            block_size,
            num_kv_heads: (self.config.num_kv_heads() / self.tp.world_size).max(1),
            head_dim: self.config.head_dim(),
        }
    }

    /// Runs one step over the flat batch, writing its K/V into `cache`;
    /// returns f32 logits `[N, vocab]` for `batch.logits_indices` (on
    /// every rank). Errors only when a collective with the other ranks
    /// fails.
    pub fn forward(
        &self,
        batch: &ForwardBatch,
        cache: &mut PagedKvCache,
    ) -> Result<Tensor, CommError> {
        let _guard = tch::no_grad_guard();
        let mut hidden = self.embed_tokens.forward(&batch.input_ids)?;
        let kind = hidden.kind();
        let (cos, sin) = self.rotary.cos_sin(&batch.positions, kind);
        let tokens = hidden.size()[0];
        for (layer, layer_cache) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let x = layer.input_layernorm.forward(&hidden);
            let a = &layer.self_attn;
            // [T, q heads + 2 kv heads, d]: rotate q and k together, v as is.
            let qkv =
                a.qkv_proj
                    .forward(&x)
                    .view([tokens, a.num_heads + 2 * a.num_kv_heads, a.head_dim]);
            let rotated =
                RotaryEmbedding::apply(&qkv.narrow(1, 0, a.num_heads + a.num_kv_heads), &cos, &sin);
            let q = rotated.narrow(1, 0, a.num_heads);
            let k = rotated.narrow(1, a.num_heads, a.num_kv_heads);
            let v = qkv.narrow(1, a.num_heads + a.num_kv_heads, a.num_kv_heads);
            let attn = self
                .backend
                .forward(&q, &k, &v, layer_cache, &batch.attn, a.scale);
            hidden = a.o_proj.forward_add(&attn, &hidden)?;
            let x = layer.post_attention_layernorm.forward(&hidden);
            let m = &layer.mlp;
            let gate_up = m.gate_up_proj.forward(&x);
            let inter = gate_up.size()[1] / 2;
            let gated = gate_up.narrow(1, 0, inter).silu() * gate_up.narrow(1, inter, inter);
            hidden = m.down_proj.forward_add(&gated, &hidden)?;
        }
        let last = hidden.index_select(0, &batch.logits_indices);
        self.lm_head.forward(&self.norm.forward(&last))
    }
}
