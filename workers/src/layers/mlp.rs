//! The gated MLP of Llama-shaped models: `down(silu(gate(x)) * up(x))`,
//! gate and up merged into one column-parallel matrix, down row-parallel
//! with the residual added in its product.

use tch::Tensor;

use super::linear::{MergedColumnParallelLinear, RowParallelLinear};
use super::ForwardError;
use crate::parallel::TpGroup;
use crate::weights::{WeightError, Weights};

/// SwiGLU feed-forward block, for one tensor-parallel rank.
pub struct GatedMlp {
    /// gate and up projections as one matrix.
    gate_up_proj: MergedColumnParallelLinear,
    down_proj: RowParallelLinear,
}

impl GatedMlp {
    /// Loads `{prefix}.{gate,up,down}_proj.weight` for `hidden` ->
    /// `intermediate` -> `hidden`.
    pub fn load(
        weights: &Weights,
        prefix: &str,
        hidden: i64,
        intermediate: i64,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            gate_up_proj: MergedColumnParallelLinear::load(
                weights,
                &[
                    (&format!("{prefix}.gate_proj.weight"), intermediate),
                    (&format!("{prefix}.up_proj.weight"), intermediate),
                ],
                hidden,
                tp,
            )?,
            down_proj: RowParallelLinear::load(
                weights,
                &format!("{prefix}.down_proj.weight"),
                intermediate,
                hidden,
                tp,
            )?,
        })
    }

    /// `residual + mlp(x)` for `x` `[T, hidden]`.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, ForwardError> {
        let gate_up = self.gate_up_proj.forward(x)?;
        let inter = gate_up.size()[1] / 2;
        let gated = gate_up
            .f_narrow(1, 0, inter)?
            .f_silu()?
            .f_mul(&gate_up.f_narrow(1, inter, inter)?)?;
        self.down_proj.forward_add(&gated, residual)
    }
}
