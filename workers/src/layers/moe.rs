//! The mixture-of-experts MLP (Mixtral, Qwen3-MoE): a router picks
//! `top_k` experts per token, each a SwiGLU MLP, and their outputs are
//! summed with the routing weights.
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

use model_files::MoeSpec;
use tch::{Kind, TchError, Tensor};

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

/// The checkpoint's names for one sparse layer's weights.
pub struct MoeNames<'a> {
    /// The router, `[num_experts, hidden]`.
    pub router: String,
    /// Prefix of expert `j`'s weights: `{experts}.{j}.{gate}.weight`.
    pub experts: String,
    /// The gate, up and down projections' names within an expert
    /// (`w1`, `w3`, `w2` for Mixtral).
    pub gate_up_down: [&'a str; 3],
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
    spec: MoeSpec,
    tp: TpGroup,
}

impl FusedMoe {
    /// Loads the router and this rank's experts (or expert slices).
    pub fn load(
        weights: &Weights,
        names: &MoeNames<'_>,
        hidden: i64,
        spec: MoeSpec,
        placement: ExpertPlacement,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let experts = spec.num_experts;
        let inter = spec.intermediate_size as i64;
        let router = weights.get(&names.router, &[experts as i64, hidden], None)?;
        let (held, column, row) = match placement {
            ExpertPlacement::SplitIntermediate => {
                let slice = |dim| Shard {
                    dim,
                    rank: tp.rank,
                    world_size: tp.world_size,
                };
                (0..experts, Some(slice(0)), Some(slice(1)))
            }
            ExpertPlacement::WholeExperts => {
                let share = experts / tp.world_size.max(1);
                (tp.rank * share..(tp.rank + 1) * share, None, None)
            }
        };
        let first_expert = held.start as i64;
        let [gate, up, down] = names.gate_up_down;
        let mut w13 = Vec::with_capacity(held.len());
        let mut w2 = Vec::with_capacity(held.len());
        for j in held {
            let name = |part: &str| format!("{}.{j}.{part}.weight", names.experts);
            let g = weights.get(&name(gate), &[inter, hidden], column)?;
            let u = weights.get(&name(up), &[inter, hidden], column)?;
            w13.push(Tensor::cat(&[g, u], 0));
            w2.push(weights.get(&name(down), &[hidden, inter], row)?);
        }
        Ok(Self {
            router,
            w13: Tensor::stack(&w13, 0),
            w2: Tensor::stack(&w2, 0),
            first_expert,
            spec,
            tp: tp.clone(),
        })
    }

    /// `residual + moe(x)` for `x` `[T, hidden]`.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, ForwardError> {
        let logits = x.f_linear::<&Tensor>(&self.router, None)?;
        let (weights, ids) = route(&logits, self.spec.top_k, self.spec.renormalize, x.kind())?;
        let out = fused_moe(x, &weights, &ids, &self.w13, &self.w2, self.first_expert)?;
        let out = if self.tp.skips_collectives() {
            out
        } else {
            self.tp.comm.all_reduce_sum(&out)?
        };
        Ok(residual.f_add(&out)?)
    }
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

/// The fused-MoE operation: `out[t] = sum over j of weights[t, j] *
/// expert(ids[t, j])(x[t])`, each expert `e` a SwiGLU MLP with gate and up
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
    let rows = x.f_index_select(0, &tokens)?;
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
    let scale = weights
        .f_reshape([-1])?
        .f_index_select(0, &entries)?
        .f_unsqueeze(1)?;
    let weighted = Tensor::f_cat(&outputs, 0)?.f_mul(&scale)?;
    out.f_index_add(0, &tokens, &weighted)
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
        let ours = fused_moe(&x, &w, &ids, &w13, &w2, 0).unwrap();
        let want = reference(&x, &w, &ids, &w13, &w2);
        let diff = (&ours - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "max |diff| {diff}");
        // Whole experts on two "ranks" (0..3 and 3..5) sum to the same.
        let a = fused_moe(&x, &w, &ids, &w13.narrow(0, 0, 3), &w2.narrow(0, 0, 3), 0).unwrap();
        let b = fused_moe(&x, &w, &ids, &w13.narrow(0, 3, 2), &w2.narrow(0, 3, 2), 3).unwrap();
        let diff = (&(a + b) - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "expert shares: max |diff| {diff}");
        // A rank whose experts nobody picked adds zeros.
        let none = fused_moe(&x, &w, &ids, &w13.narrow(0, 0, 1), &w2.narrow(0, 0, 1), 99).unwrap();
        assert_eq!(none.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
