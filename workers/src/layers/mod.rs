//! Building blocks the model files are made of: parallel linear layers,
//! embeddings, RMSNorm, rotary embeddings, and the attention and gated MLP
//! blocks built from them. Each has a `load` that takes its weights
//! (sharded for its rank) and a `forward` that returns a [`ForwardError`]
//! instead of panicking: every op on the step path is torch's fallible
//! `f_` form, so a CUDA out-of-memory error inside a step fails the step,
//! not the runner.

pub mod attention;
pub mod embedding;
pub mod linear;
pub mod linear_weight;
pub mod mlp;
pub mod moe;
pub mod norm;
pub mod rotary;

use crate::parallel::CommError;

/// Why a forward pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A torch op failed (out of memory, a device error, a shape the
    /// checks upstream missed).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A collective with the other ranks failed.
    #[error(transparent)]
    Comm(#[from] CommError),
    /// The cache or the batch was built for another model: no tensor or
    /// block table for this layer.
    #[error("the KV cache has no place for layer {layer} (built for another model)")]
    CacheLayout { layer: usize },
}
