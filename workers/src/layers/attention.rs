//! The self-attention block of a decoder layer: merged q/k/v projection,
//! rotary on q and k (unless the layer has none: Llama 4's NoPE layers),
//! the layer's QK norm (Qwen3's learned one before rotary, Llama 4's
//! weightless one after), Llama 4's query temperature on NoPE layers,
//! paged attention through the step's backend (with the layer's window),
//! and the row-parallel output projection that adds the residual.

use model_files::{ModelConfig, QkNorm};
use tch::{Kind, Tensor};

use super::linear::{kv_head_shard, MergedColumnParallelLinear, RowParallelLinear};
use super::norm::RmsNorm;
use super::rotary::RopeTables;
use super::ForwardError;
use crate::attention::{AttentionBackend, AttentionLayer, AttentionMetadata};
use crate::paged_kv::LayerKvCache;
use crate::parallel::TpGroup;
use crate::weights::{Shard, WeightError, Weights};

/// What every layer of one step shares: the backend, its metadata, the
/// rotary tables of the step's positions and, for models with attention
/// temperature tuning, each position's query scale.
pub struct StepContext<'a> {
    pub backend: &'a dyn AttentionBackend,
    pub meta: &'a AttentionMetadata,
    pub rope: &'a RopeTables,
    /// `[T, 1, 1]` f32, from [`attention_temperature`].
    pub temperature: Option<&'a Tensor>,
}

/// Llama 4's query scale for NoPE layers at `positions` `[T]`:
/// `1 + attn_scale * ln(1 + floor((p + 1) / floor_scale))`, `[T, 1, 1]` f32.
pub fn attention_temperature(
    positions: &Tensor,
    (floor_scale, attn_scale): (f64, f64),
) -> Result<Tensor, ForwardError> {
    Ok(positions
        .f_to_kind(Kind::Float)?
        .f_add_scalar(1.0)?
        .f_div_scalar(floor_scale)?
        .f_floor()?
        .f_log1p()?
        .f_mul_scalar(attn_scale)?
        .f_add_scalar(1.0)?
        .f_view([-1, 1, 1])?)
}

/// A layer's QK norm, loaded.
enum QkNormLayer {
    None,
    RmsBeforeRope { q: RmsNorm, k: RmsNorm },
    L2AfterRope { eps: f64 },
}

/// One layer's attention, for one tensor-parallel rank.
pub struct Attention {
    /// q, k and v projections as one matrix.
    qkv_proj: MergedColumnParallelLinear,
    o_proj: RowParallelLinear,
    qk_norm: QkNormLayer,
    use_rope: bool,
    /// Scales queries by the step's temperature (Llama 4's NoPE layers).
    temperature_tuning: bool,
    /// Heads on this rank.
    num_heads: i64,
    num_kv_heads: i64,
    head_dim: i64,
    layer: AttentionLayer,
}

impl Attention {
    /// Loads `{prefix}.{q,k,v,o}_proj` (and `{q,k}_norm` when the layer has
    /// a learned QK norm) for layer `layer_idx`.
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
        let qk_norm = match cfg.qk_norm(layer_idx) {
            QkNorm::None => QkNormLayer::None,
            QkNorm::RmsBeforeRope => QkNormLayer::RmsBeforeRope {
                q: norm("q_norm")?,
                k: norm("k_norm")?,
            },
            QkNorm::L2AfterRope => QkNormLayer::L2AfterRope {
                eps: cfg.rms_norm_eps,
            },
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
            qk_norm,
            use_rope: cfg.uses_rope(layer_idx),
            temperature_tuning: cfg.attn_temperature(layer_idx).is_some(),
            num_heads: heads / ws,
            // One replicated head when the ranks outnumber the K/V heads.
            num_kv_heads: (kv_heads / ws).max(1),
            head_dim,
            layer: AttentionLayer {
                scale: 1.0 / (head_dim as f64).sqrt(),
                window: cfg.attention_window(layer_idx),
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
        // q and k heads side by side, so rotary and an L2 norm run once.
        let mut qk = match &self.qk_norm {
            QkNormLayer::RmsBeforeRope { q, k } => Tensor::f_cat(
                &[
                    q.forward(&qkv.f_narrow(1, 0, heads)?)?,
                    k.forward(&qkv.f_narrow(1, heads, kv_heads)?)?,
                ],
                1,
            )?,
            _ => qkv.f_narrow(1, 0, heads + kv_heads)?,
        };
        if self.use_rope {
            qk = step.rope.apply(&qk)?;
        }
        if let QkNormLayer::L2AfterRope { eps } = self.qk_norm {
            qk = qk.f_rms_norm([self.head_dim], None::<&Tensor>, eps)?;
        }
        let mut q = qk.f_narrow(1, 0, heads)?;
        let k = qk.f_narrow(1, heads, kv_heads)?;
        if let (true, Some(t)) = (self.temperature_tuning, step.temperature) {
            // In f32, as transformers scales them, then back.
            q = q.f_to_kind(Kind::Float)?.f_mul(t)?.f_to_kind(q.kind())?;
        }
        let attn = step
            .backend
            .forward(&q, &k, &v, cache, step.meta, &self.layer)?;
        self.o_proj.forward_add(&attn, residual)
    }
}
