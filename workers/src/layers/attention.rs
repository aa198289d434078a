//! The self-attention block of a decoder layer: merged q/k/v projection,
//! optional per-head RMSNorm of q and k (Qwen3), rotary on q and k, paged
//! attention through the step's backend (with the layer's sliding window),
//! and the row-parallel output projection that adds the residual.

use model_files::ModelConfig;
use tch::Tensor;

use super::linear::{kv_head_shard, MergedColumnParallelLinear, RowParallelLinear};
use super::norm::RmsNorm;
use super::rotary::RotaryEmbedding;
use super::ForwardError;
use crate::attention::{AttentionBackend, AttentionLayer, AttentionMetadata};
use crate::paged_kv::LayerKvCache;
use crate::parallel::TpGroup;
use crate::weights::{Shard, WeightError, Weights};

/// What every layer of one step shares: the backend, its metadata and
/// the rotary tables of the step's positions.
pub struct StepContext<'a> {
    pub backend: &'a dyn AttentionBackend,
    pub meta: &'a AttentionMetadata,
    /// `cos` and signed `sin` from [`RotaryEmbedding::cos_sin`].
    pub rope: (&'a Tensor, &'a Tensor),
}

/// One layer's attention, for one tensor-parallel rank.
pub struct Attention {
    /// q, k and v projections as one matrix.
    qkv_proj: MergedColumnParallelLinear,
    o_proj: RowParallelLinear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// Heads on this rank.
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
    layer: AttentionLayer,
}

impl Attention {
    /// Loads `{prefix}.{q,k,v,o}_proj` (and `{q,k}_norm` when the config
    /// has QK norm) for layer `layer_idx`.
    pub fn load(
        weights: &Weights,
        prefix: &str,
        cfg: &ModelConfig,
        layer_idx: usize,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
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
        let norm = |name: &str| {
            RmsNorm::load(
                weights,
                &format!("{prefix}.{name}.weight"),
                head_dim,
                cfg.rms_norm_eps,
            )
        };
        let (q_norm, k_norm) = if cfg.qk_norm() {
            (Some(norm("q_norm")?), Some(norm("k_norm")?))
        } else {
            (None, None)
        };
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
            q_norm,
            k_norm,
            num_heads: heads / ws,
            // One replicated head when the ranks outnumber the K/V heads.
            num_kv_heads: (kv_heads / ws).max(1),
            head_dim,
            layer: AttentionLayer {
                scale: 1.0 / (head_dim as f64).sqrt(),
                sliding_window: cfg.sliding_window_for(layer_idx),
            },
        })
    }

    /// `residual + attention(x)`, writing this step's K/V into `cache`.
    pub fn forward_add(
        &self,
        x: &Tensor,
        residual: &Tensor,
        cache: &mut LayerKvCache,
        step: &StepContext<'_>,
    ) -> Result<Tensor, ForwardError> {
        let tokens = x.size()[0];
        let (heads, kv_heads) = (self.num_heads, self.num_kv_heads);
        // [T, q heads + 2 kv heads, d]
        let qkv =
            self.qkv_proj
                .forward(x)?
                .f_view([tokens, heads + 2 * kv_heads, self.head_dim])?;
        let v = qkv.f_narrow(1, heads + kv_heads, kv_heads)?;
        let (cos, sin) = step.rope;
        let (q, k) = match (&self.q_norm, &self.k_norm) {
            (Some(q_norm), Some(k_norm)) => {
                let q = q_norm.forward(&qkv.f_narrow(1, 0, heads)?)?;
                let k = k_norm.forward(&qkv.f_narrow(1, heads, kv_heads)?)?;
                (
                    RotaryEmbedding::apply(&q, cos, sin)?,
                    RotaryEmbedding::apply(&k, cos, sin)?,
                )
            }
            _ => {
                // Rotate q and k together, v as is.
                let rotated =
                    RotaryEmbedding::apply(&qkv.f_narrow(1, 0, heads + kv_heads)?, cos, sin)?;
                (
                    rotated.f_narrow(1, 0, heads)?,
                    rotated.f_narrow(1, heads, kv_heads)?,
                )
            }
        };
        let attn = step
            .backend
            .forward(&q, &k, &v, cache, step.meta, &self.layer)?;
        self.o_proj.forward_add(&attn, residual)
    }
}
