//! The Llama-shaped decoder: embeddings, decoder layers of grouped-query
//! attention over the paged KV cache and a SwiGLU MLP (or a mixture of
//! experts), final RMSNorm, tied or untied LM head. It runs Llama, Mistral
//! (sliding-window layers), Qwen3 (QK norm), Mixtral and Qwen3-MoE (sparse
//! MLPs) and Llama 4's text model (chunked and NoPE layers, interleaved
//! rotary, sigmoid-routed experts with a shared one): `layers::attention`,
//! `layers::moe` and the config decide the differences, as vLLM's Llama
//! class also runs Mistral.
//!
//! Follows HF's `modeling_llama.py` (and `modeling_llama4.py`) op for op
//! so logits match transformers; weight names are HF's, whatever the
//! container.

use std::sync::Arc;

use kv_cache::KvCacheLayout;
use model_files::{Architecture, ModelConfig};
use tch::{Device, Tensor};

use super::{CausalLm, ModelError};
use crate::attention::AttentionBackend;
use crate::batch::ForwardBatch;
use crate::layers::attention::{attention_temperature, Attention, StepContext};
use crate::layers::embedding::{ParallelLmHead, VocabParallelEmbedding};
use crate::layers::mlp::GatedMlp;
use crate::layers::moe::{ExpertLayout, ExpertPlacement, FusedMoe, MoeNames};
use crate::layers::norm::RmsNorm;
use crate::layers::rotary::RotaryEmbedding;
use crate::layers::ForwardError;
use crate::paged_kv::{KvCacheSpec, PagedKvCache};
use crate::parallel::TpGroup;
use crate::weights::{WeightError, Weights};

/// A layer's feed-forward block.
enum FeedForward {
    Dense(GatedMlp),
    Sparse(FusedMoe),
}

impl FeedForward {
    /// Loads layer `layer`'s MLP under `prefix` (`model.layers.{i}`),
    /// sparse where the config says so, with the checkpoint's names
    /// (Llama 4 calls it `feed_forward`).
    fn load(
        weights: &Weights,
        prefix: &str,
        config: &ModelConfig,
        layer: usize,
        placement: ExpertPlacement,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let hidden = config.hidden_size as i64;
        let mlp = match config.architecture() {
            Architecture::Llama4 => format!("{prefix}.feed_forward"),
            _ => format!("{prefix}.mlp"),
        };
        let Some(spec) = config.moe_for_layer(layer) else {
            let inter = config.mlp_intermediate_size() as i64;
            return Ok(Self::Dense(GatedMlp::load(
                weights, &mlp, hidden, inter, tp,
            )?));
        };
        let names = match config.architecture() {
            Architecture::Mixtral => MoeNames {
                router: format!("{prefix}.block_sparse_moe.gate.weight"),
                experts: ExpertLayout::PerExpert {
                    prefix: format!("{prefix}.block_sparse_moe.experts"),
                    gate_up_down: ["w1", "w3", "w2"],
                },
                shared_expert: None,
            },
            Architecture::Llama4 => MoeNames {
                router: format!("{mlp}.router.weight"),
                experts: ExpertLayout::Stacked {
                    prefix: format!("{mlp}.experts"),
                },
                shared_expert: Some(format!("{mlp}.shared_expert")),
            },
            _ => MoeNames {
                router: format!("{mlp}.gate.weight"),
                experts: ExpertLayout::PerExpert {
                    prefix: format!("{mlp}.experts"),
                    gate_up_down: ["gate_proj", "up_proj", "down_proj"],
                },
                shared_expert: None,
            },
        };
        Ok(Self::Sparse(FusedMoe::load(
            weights, &names, hidden, spec, placement, tp,
        )?))
    }

    fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, ForwardError> {
        match self {
            Self::Dense(mlp) => mlp.forward_add(x, residual),
            Self::Sparse(moe) => moe.forward_add(x, residual),
        }
    }
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: FeedForward,
}

/// A loaded Llama-shaped model for one tensor-parallel rank.
pub struct DecoderModel {
    config: ModelConfig,
    embed_tokens: VocabParallelEmbedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: ParallelLmHead,
    rotary: RotaryEmbedding,
    /// `(floor_scale, attn_scale)` when some layer tunes its attention
    /// temperature (Llama 4's NoPE layers).
    temperature: Option<(f64, f64)>,
    backend: Arc<dyn AttentionBackend>,
    tp: TpGroup,
    device: Device,
}

impl DecoderModel {
    /// Loads every weight (checking names and shapes) for rank `tp.rank`;
    /// the registry (`models::build_model`) has checked that `tp` splits
    /// the config.
    pub fn load(
        config: &ModelConfig,
        weights: &Weights,
        backend: Arc<dyn AttentionBackend>,
        placement: ExpertPlacement,
        tp: &TpGroup,
        mut on_layer: impl FnMut(usize, usize),
    ) -> Result<Self, ModelError> {
        let hidden = config.hidden_size as i64;
        let vocab = config.vocab_size as i64;
        let eps = config.rms_norm_eps;
        let root = config.weight_prefix();
        let embed_name = format!("{root}model.embed_tokens.weight");
        let embed_tokens = VocabParallelEmbedding::load(weights, &embed_name, vocab, hidden, tp)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("{root}model.layers.{i}");
            let norm =
                |name: &str| RmsNorm::load(weights, &format!("{p}.{name}.weight"), hidden, eps);
            layers.push(DecoderLayer {
                input_layernorm: norm("input_layernorm")?,
                self_attn: Attention::load(weights, &format!("{p}.self_attn"), config, i, tp)?,
                post_attention_layernorm: norm("post_attention_layernorm")?,
                mlp: FeedForward::load(weights, &p, config, i, placement, tp)?,
            });
            on_layer(i + 1, config.num_hidden_layers);
        }
        let norm = RmsNorm::load(weights, &format!("{root}model.norm.weight"), hidden, eps)?;
        let lm_head = if config.tie_word_embeddings {
            ParallelLmHead::tied(&embed_tokens, weights, &embed_name, tp)?
        } else {
            ParallelLmHead::load(weights, &format!("{root}lm_head.weight"), vocab, hidden, tp)?
        };
        Ok(Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rotary: RotaryEmbedding::new(config, weights.device()),
            temperature: (0..config.num_hidden_layers).find_map(|i| config.attn_temperature(i)),
            backend,
            tp: tp.clone(),
            device: weights.device(),
        })
    }
}

impl CausalLm for DecoderModel {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn device(&self) -> Device {
        self.device
    }

    fn kv_cache_spec(&self, num_blocks: usize, block_size: usize, hybrid: bool) -> KvCacheSpec {
        let layers = self.config.num_hidden_layers;
        let layout = if hybrid {
            let windows: Vec<_> = (0..layers)
                .map(|i| self.config.attention_window(i))
                .collect();
            KvCacheLayout::hybrid(&windows)
        } else {
            KvCacheLayout::uniform(layers)
        };
        KvCacheSpec {
            num_blocks,
            block_size,
            num_kv_heads: (self.config.num_kv_heads() / self.tp.world_size).max(1),
            head_dim: self.config.head_dim(),
            layout,
        }
    }

    fn forward(
        &self,
        batch: &ForwardBatch,
        cache: &mut PagedKvCache,
    ) -> Result<Tensor, ForwardError> {
        let _guard = tch::no_grad_guard();
        let mut hidden = self.embed_tokens.forward(&batch.input_ids)?;
        let rope = self.rotary.tables(&batch.positions, hidden.kind())?;
        let temperature = self
            .temperature
            .map(|t| attention_temperature(&batch.positions, t))
            .transpose()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let place = cache.spec.layout.place(i);
            let (Some(layer_cache), Some(meta)) = (
                place.and_then(|p| cache.layers.get_mut(p.slot)),
                place.and_then(|p| batch.attn.get(p.group)),
            ) else {
                return Err(ForwardError::CacheLayout { layer: i });
            };
            let step = StepContext {
                backend: self.backend.as_ref(),
                meta,
                rope: &rope,
                temperature: temperature.as_ref(),
            };
            let x = layer.input_layernorm.forward(&hidden)?;
            hidden = layer
                .self_attn
                .forward_add(&x, &hidden, layer_cache, &step)?;
            let x = layer.post_attention_layernorm.forward(&hidden)?;
            hidden = layer.mlp.forward_add(&x, &hidden)?;
        }
        let last = hidden.f_index_select(0, &batch.logits_indices)?;
        self.lm_head.forward(&self.norm.forward(&last)?)
    }
}
