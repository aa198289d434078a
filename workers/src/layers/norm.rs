//! RMSNorm as HF's `LlamaRMSNorm` computes it (in f32 whatever the input
//! dtype), through torch's `rms_norm`: one fused kernel on CUDA instead of
//! eight launches. In half precision it scales before the cast back, where
//! HF casts first; both agree within rounding.

use tch::Tensor;

use super::ForwardError;
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

    /// Normalizes over the last dimension (which must be the weight's
    /// size: the hidden size, or one head's for a QK norm).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ForwardError> {
        let hidden = self.weight.size()[0];
        Ok(x.f_rms_norm([hidden], Some(&self.weight), self.eps)?)
    }
}
