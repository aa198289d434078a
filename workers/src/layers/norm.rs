//! RMSNorm computed as HF's `LlamaRMSNorm`: in f32, then cast back, then
//! scaled, so low-precision runs round the way transformers does.

use tch::{Kind, Tensor};

use crate::weights::{WeightError, Weights};

/// Root-mean-square layer norm with a learned scale.
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// Loads the scale `name` of shape `[hidden]`.
    pub fn load(weights: &Weights, name: &str, hidden: i64, eps: f64) -> Result<Self, WeightError> {
        Ok(Self {
            weight: weights.get(name, &[hidden], None)?,
            eps,
        })
    }

    /// Normalizes over the last dimension.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x32 = x.to_kind(Kind::Float);
        let variance = x32.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let normed = x32 * (variance + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}
