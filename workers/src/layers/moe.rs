//! The mixture-of-experts MLP (Mixtral, Qwen3-MoE, Llama 4): a router
//! picks `top_k` experts per token, each a SwiGLU MLP, and their outputs
//! are summed with the routing weights (Llama 4 scales each expert's input
//! by its weight instead, and adds a shared expert every token runs).
//!
//! [`fused_moe`] is the operation the GPU kernel will replace, and its
//! reference: tokens are grouped by expert, each active expert runs one
//! matrix product over its grouped rows, and the weighted rows are
//! scattered back, instead of transformers' loop that gathers each
//! expert's tokens through a one-hot mask.
//!
//! Under tensor parallelism the experts are split along their
//! intermediate dimension (vLLM's default): every rank holds a slice of
//! every expert and the partial outputs are summed with one all-reduce.
//! With expert parallelism (`--enable-expert-parallel`) each rank holds
//! whole experts (an even share) and computes only the rows routed to
//! them; the same all-reduce adds the shares.

use model_files::{MoeRouting, MoeSpec};
use tch::{Kind, TchError, Tensor};

use super::mlp::GatedMlp;
use super::ForwardError;
use crate::parallel::TpGroup;
use crate::weights::{Shard, WeightError, Weights};

/// How a tensor-parallel group divides the experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpertPlacement {
    /// Every rank holds every expert's slice of the intermediate dimension.
    #[default]
    SplitIntermediate,
    /// Each rank holds `num_experts / world_size` whole experts.
    WholeExperts,
}

/// How a checkpoint stores one sparse layer's experts.
pub enum ExpertLayout<'a> {
    /// A tensor per expert and projection, as `nn.Linear` weights:
    /// `{prefix}.{j}.{gate|up|down}.weight` (`w1`, `w3`, `w2` for Mixtral).
    PerExpert {
        prefix: String,
        gate_up_down: [&'a str; 3],
    },
    /// Every expert in two stacked tensors, input dimension first (Llama
    /// 4): `{prefix}.gate_up_proj` `[E, hidden, 2I]` (gate columns, then
    /// up) and `{prefix}.down_proj` `[E, I, hidden]`.
    Stacked { prefix: String },
}

/// The checkpoint's names for one sparse layer's weights.
pub struct MoeNames<'a> {
    /// The router, `[num_experts, hidden]`.
    pub router: String,
    pub experts: ExpertLayout<'a>,
    /// Prefix of the shared expert's `{gate,up,down}_proj`, when the spec
    /// has one.
    pub shared_expert: Option<String>,
}

/// Which side of an expert the routing weight multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleAt {
    /// The expert's output (Mixtral, Qwen3-MoE).
    Output,
    /// The expert's input (Llama 4).
    Input,
}

/// One sparse layer for one rank.
pub struct FusedMoe {
    /// `[num_experts, hidden]`, on every rank.
    router: Tensor,
    /// `[local experts, 2 * local intermediate, hidden]`: gate rows, then up.
    w13: Tensor,
    /// `[local experts, hidden, local intermediate]`.
    w2: Tensor,
    /// Global id of the first expert held (0 unless experts are placed
    /// whole).
    first_expert: i64,
    /// Every token's extra expert, split like a dense MLP.
    shared_expert: Option<GatedMlp>,
    spec: MoeSpec,
    tp: TpGroup,
}

impl FusedMoe {
    /// Loads the router, this rank's experts (or expert slices) and the
    /// shared expert.
    pub fn load(
        weights: &Weights,
        names: &MoeNames<'_>,
        hidden: i64,
        spec: MoeSpec,
        placement: ExpertPlacement,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let experts = spec.num_experts;
        let router = weights.get(&names.router, &[experts as i64, hidden], None)?;
        let held = match placement {
            ExpertPlacement::SplitIntermediate => 0..experts,
            ExpertPlacement::WholeExperts => {
                let share = experts / tp.world_size.max(1);
                tp.rank * share..(tp.rank + 1) * share
            }
        };
        let split = placement == ExpertPlacement::SplitIntermediate;
        let first_expert = held.start as i64;
        let (w13, w2) = match &names.experts {
            ExpertLayout::PerExpert {
                prefix,
                gate_up_down,
            } => load_per_expert(
                weights,
                prefix,
                *gate_up_down,
                hidden,
                &spec,
                held,
                split,
                tp,
            )?,
            ExpertLayout::Stacked { prefix } => {
                load_stacked(weights, prefix, hidden, &spec, held, split, tp)?
            }
        };
        let shared_expert = match (&names.shared_expert, spec.shared_expert_intermediate_size) {
            (Some(prefix), Some(inter)) => {
                Some(GatedMlp::load(weights, prefix, hidden, inter as i64, tp)?)
            }
            _ => None,
        };
        Ok(Self {
            router,
            w13,
            w2,
            first_expert,
            shared_expert,
            spec,
            tp: tp.clone(),
        })
    }

    /// `residual + moe(x)` for `x` `[T, hidden]`.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, ForwardError> {
        let logits = x.f_linear::<&Tensor>(&self.router, None)?;
        let k = self.spec.top_k;
        let (weights, ids, scale_at) = match self.spec.routing {
            MoeRouting::Softmax { renormalize } => {
                let (w, ids) = route(&logits, k, renormalize, x.kind())?;
                (w, ids, ScaleAt::Output)
            }
            MoeRouting::SigmoidScalesInput => {
                let (w, ids) = route_sigmoid(&logits, k)?;
                (w, ids, ScaleAt::Input)
            }
        };
        let routed = fused_moe(
            x,
            &weights,
            &ids,
            &self.w13,
            &self.w2,
            self.first_expert,
            scale_at,
        )?;
        let routed = if self.tp.skips_collectives() {
            routed
        } else {
            self.tp.comm.all_reduce_sum(&routed)?
        };
        let out = match &self.shared_expert {
            // shared(x) + routed, as transformers adds them.
            Some(mlp) => mlp.forward_add(x, &routed)?,
            None => routed,
        };
        Ok(residual.f_add(&out)?)
    }
}

/// `(w13, w2)` from one tensor per expert and projection.
#[allow(clippy::too_many_arguments)]
fn load_per_expert(
    weights: &Weights,
    prefix: &str,
    [gate, up, down]: [&str; 3],
    hidden: i64,
    spec: &MoeSpec,
    held: std::ops::Range<usize>,
    split: bool,
    tp: &TpGroup,
) -> Result<(Tensor, Tensor), WeightError> {
    let inter = spec.intermediate_size as i64;
    let slice = |dim| {
        split.then_some(Shard {
            dim,
            rank: tp.rank,
            world_size: tp.world_size,
        })
    };
    let mut w13 = Vec::with_capacity(held.len());
    let mut w2 = Vec::with_capacity(held.len());
    for j in held {
        let name = |part: &str| format!("{prefix}.{j}.{part}.weight");
        let g = weights.get(&name(gate), &[inter, hidden], slice(0))?;
        let u = weights.get(&name(up), &[inter, hidden], slice(0))?;
        w13.push(Tensor::cat(&[g, u], 0));
        w2.push(weights.get(&name(down), &[hidden, inter], slice(1))?);
    }
    Ok((Tensor::stack(&w13, 0), Tensor::stack(&w2, 0)))
}

/// `(w13, w2)` from Llama 4's stacked, input-first expert tensors.
fn load_stacked(
    weights: &Weights,
    prefix: &str,
    hidden: i64,
    spec: &MoeSpec,
    held: std::ops::Range<usize>,
    split: bool,
    tp: &TpGroup,
) -> Result<(Tensor, Tensor), WeightError> {
    let (experts, inter) = (spec.num_experts as i64, spec.intermediate_size as i64);
    let gate_up_name = format!("{prefix}.gate_up_proj");
    let down_name = format!("{prefix}.down_proj");
    let gate_up = weights.get(&gate_up_name, &[experts, hidden, 2 * inter], None)?;
    let down = weights.get(&down_name, &[experts, inter, hidden], None)?;
    let ws = if split { tp.world_size as i64 } else { 1 };
    if inter % ws != 0 {
        return Err(WeightError::Shard {
            file: weights.file(),
            tensor: gate_up_name,
            dim: 2,
            size: inter,
            world_size: ws as usize,
        });
    }
    let (len, offset) = (
        inter / ws,
        if split {
            tp.rank as i64 * (inter / ws)
        } else {
            0
        },
    );
    let (first, count) = (held.start as i64, held.len() as i64);
    let torch = |name: &str| {
        let name = name.to_string();
        move |source| WeightError::Torch {
            file: weights.file(),
            tensor: name,
            source,
        }
    };
    let w13 = (|| -> Result<Tensor, TchError> {
        let mine = gate_up.f_narrow(0, first, count)?;
        let gate = mine.f_narrow(2, offset, len)?;
        let up = mine.f_narrow(2, inter + offset, len)?;
        Tensor::f_cat(&[gate, up], 2)?
            .f_transpose(1, 2)?
            .f_contiguous()
    })()
    .map_err(torch(&gate_up_name))?;
    let w2 = (|| -> Result<Tensor, TchError> {
        down.f_narrow(0, first, count)?
            .f_narrow(1, offset, len)?
            .f_transpose(1, 2)?
            .f_contiguous()
    })()
    .map_err(torch(&down_name))?;
    Ok((w13, w2))
}

/// transformers' routing: softmax over the experts in f32, the `top_k`
/// largest, optionally renormalized to sum to one, cast to `kind`.
/// Returns `(weights [T, k] in kind, expert ids [T, k] int64)`.
pub fn route(
    logits: &Tensor,
    top_k: usize,
    renormalize: bool,
    kind: Kind,
) -> Result<(Tensor, Tensor), TchError> {
    let probs = logits.f_softmax(-1, Kind::Float)?;
    let (mut weights, ids) = probs.f_topk(top_k as i64, -1, true, true)?;
    if renormalize {
        weights = weights.f_div(&weights.f_sum_dim_intlist(-1, true, Kind::Float)?)?;
    }
    Ok((weights.f_to_kind(kind)?, ids))
}

/// Llama 4's routing: the `top_k` largest logits, each through a sigmoid
/// (in f32, cast back to the logits' dtype). Returns `(weights [T, k],
/// expert ids [T, k] int64)`.
pub fn route_sigmoid(logits: &Tensor, top_k: usize) -> Result<(Tensor, Tensor), TchError> {
    let (top, ids) = logits.f_topk(top_k as i64, -1, true, true)?;
    let weights = top
        .f_to_kind(Kind::Float)?
        .f_sigmoid()?
        .f_to_kind(logits.kind())?;
    Ok((weights, ids))
}

/// The fused-MoE operation: `out[t] = sum over j of weights[t, j] *
/// expert(ids[t, j])(x[t])` (or of `expert(ids[t, j])(weights[t, j] *
/// x[t])` when the weight scales the input), each expert `e` a SwiGLU MLP
/// with gate and up
/// rows stacked in `w13[e - first_expert]` (`[2I, H]`) and down
/// `w2[e - first_expert]` (`[H, I]`). Experts outside the ones held
/// contribute nothing (another rank holds them). The (token, slot) pairs
/// are sorted by expert, so each active expert runs one product over its
/// rows, and the weighted rows are added back into their tokens in expert
/// order (the order transformers adds them in).
pub fn fused_moe(
    x: &Tensor,
    weights: &Tensor,
    ids: &Tensor,
    w13: &Tensor,
    w2: &Tensor,
    first_expert: i64,
    scale_at: ScaleAt,
) -> Result<Tensor, TchError> {
    let top_k = ids.size().get(1).copied().unwrap_or(1).max(1);
    let held = w13.size()[0];
    let inter = w2.size()[2];
    let local = ids.f_reshape([-1])?.f_sub_scalar(first_expert)?;
    let mine = local
        .f_ge(0)?
        .f_logical_and(&local.f_lt(held)?)?
        .f_nonzero()?
        .f_squeeze_dim(1)?;
    let out = x.f_zeros_like()?;
    if mine.size()[0] == 0 {
        return Ok(out);
    }
    let (experts, order) = local
        .f_index_select(0, &mine)?
        .f_sort_stable(true, 0, false)?;
    // Entries (token * top_k + slot) grouped by expert, and their tokens.
    let entries = mine.f_index_select(0, &order)?;
    let tokens = entries.f_floor_divide_scalar(top_k)?;
    let counts = Vec::<i64>::try_from(&experts.f_bincount::<Tensor>(None, held)?)?;
    let scale = weights
        .f_reshape([-1])?
        .f_index_select(0, &entries)?
        .f_unsqueeze(1)?;
    let mut rows = x.f_index_select(0, &tokens)?;
    if scale_at == ScaleAt::Input {
        rows = rows.f_mul(&scale)?;
    }
    let mut outputs = Vec::new();
    let mut offset = 0;
    for (e, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let e = e as i64;
        let h = rows
            .f_narrow(0, offset, count)?
            .f_matmul(&w13.f_get(e)?.f_tr()?)?;
        let act = h
            .f_narrow(1, 0, inter)?
            .f_silu()?
            .f_mul(&h.f_narrow(1, inter, inter)?)?;
        outputs.push(act.f_matmul(&w2.f_get(e)?.f_tr()?)?);
        offset += count;
    }
    let mut expert_out = Tensor::f_cat(&outputs, 0)?;
    if scale_at == ScaleAt::Output {
        expert_out = expert_out.f_mul(&scale)?;
    }
    out.f_index_add(0, &tokens, &expert_out)
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    /// transformers' loop, written plainly: every token through each of its
    /// experts, weighted, summed.
    fn reference(x: &Tensor, w: &Tensor, ids: &Tensor, w13: &Tensor, w2: &Tensor) -> Tensor {
        let inter = w2.size()[2];
        let out = x.zeros_like();
        for t in 0..x.size()[0] {
            for j in 0..ids.size()[1] {
                let e = ids.int64_value(&[t, j]);
                let h = x.get(t).unsqueeze(0).matmul(&w13.get(e).tr());
                let act = h.narrow(1, 0, inter).silu() * h.narrow(1, inter, inter);
                let y = act.matmul(&w2.get(e).tr()).squeeze_dim(0) * w.get(t).get(j);
                let mut row = out.get(t);
                row += y;
            }
        }
        out
    }

    #[test]
    fn grouped_experts_equal_the_per_token_loop_and_shares_add_up() {
        tch::manual_seed(7);
        let (t, h, i, e, k) = (13, 8, 6, 5, 2);
        let opts = (Kind::Float, Device::Cpu);
        let x = Tensor::randn([t, h], opts);
        let w13 = Tensor::randn([e, 2 * i, h], opts);
        let w2 = Tensor::randn([e, h, i], opts);
        let logits = Tensor::randn([t, e], opts);
        let (w, ids) = route(&logits, k as usize, true, Kind::Float).unwrap();
        let sums = w.sum_dim_intlist(-1, false, Kind::Float);
        assert!(sums.allclose(&Tensor::ones([t], opts), 1e-6, 1e-6, false));
        let ours = fused_moe(&x, &w, &ids, &w13, &w2, 0, ScaleAt::Output).unwrap();
        let want = reference(&x, &w, &ids, &w13, &w2);
        let diff = (&ours - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "max |diff| {diff}");
        // Whole experts on two "ranks" (0..3 and 3..5) sum to the same.
        let share = |first: i64, count: i64| {
            let (w13, w2) = (w13.narrow(0, first, count), w2.narrow(0, first, count));
            fused_moe(&x, &w, &ids, &w13, &w2, first, ScaleAt::Output).unwrap()
        };
        let (a, b) = (share(0, 3), share(3, 2));
        let diff = (&(a + b) - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "expert shares: max |diff| {diff}");
        // Scaling inputs (Llama 4): each expert runs on weight * x.
        let scaled_in = fused_moe(&x, &w, &ids, &w13, &w2, 0, ScaleAt::Input).unwrap();
        let mut want_in = x.zeros_like();
        for j in 0..k {
            let e_ids = ids.narrow(1, j, 1);
            let w_j = w.narrow(1, j, 1);
            let ones = Tensor::ones([t, 1], opts);
            let y = reference(&(&x * &w_j), &ones, &e_ids, &w13, &w2);
            let _ = want_in.f_add_(&y).unwrap();
        }
        let diff = (&scaled_in - &want_in).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "input scaling: max |diff| {diff}");
        // A rank whose experts nobody picked adds zeros.
        let none = fused_moe(
            &x,
            &w,
            &ids,
            &w13.narrow(0, 0, 1),
            &w2.narrow(0, 0, 1),
            99,
            ScaleAt::Output,
        )
        .unwrap();
        assert_eq!(none.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
