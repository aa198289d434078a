//! Column- and row-parallel linear layers (Megatron style).
//!
//! Column-parallel splits the output features across ranks (q/k/v,
//! gate/up): each rank computes its slice, no communication. Row-parallel
//! splits the input features (o_proj, down_proj): each rank computes a
//! partial sum over its slice, then an all-reduce adds them.
//!
//! Projections that read the same input are merged into one matrix (q/k/v,
//! gate/up), as vLLM's `QKVParallelLinear` and `MergedColumnParallelLinear`
//! do, and a row-parallel output adds its residual inside the matrix
//! product: on a GPU each kernel launch costs more than a small model's
//! arithmetic, so fewer, larger launches are what makes decode fast.
//!
//! The matrix is a [`LinearWeight`]: dense, or quantized as the checkpoint
//! and `--quantization` allow ([`load_weight`]).

use tch::Tensor;

use super::linear_weight::LinearWeight;
use super::ForwardError;
use crate::parallel::TpGroup;
use crate::weights::{Int4Weight, Quantization, Shard, WeightError, Weights};

/// Column-parallel projections of the same input as one matrix (one part
/// is plain column-parallel): W's output rows split across ranks, this
/// rank's rows of each part stacked in order, so one product yields every
/// part's output side by side; callers take them apart with `narrow`.
pub struct MergedColumnParallelLinear {
    weight: LinearWeight,
}

impl MergedColumnParallelLinear {
    /// Loads `parts` as `(name, out_features)`, each `[out_features,
    /// in_features]` in full, keeping this rank's rows of each.
    pub fn load(
        weights: &Weights,
        parts: &[(&str, i64)],
        in_features: i64,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let shard = Shard {
            dim: 0,
            rank: tp.rank,
            world_size: tp.world_size,
        };
        let parts: Vec<_> = parts.iter().map(|&(n, out)| (n, out, shard)).collect();
        Self::load_parts(weights, &parts, in_features)
    }

    /// Like [`Self::load`], each part with its own split: q/k/v, where the
    /// K/V heads may be fewer than the ranks ([`kv_head_shard`]).
    pub fn load_parts(
        weights: &Weights,
        parts: &[(&str, i64, Shard)],
        in_features: i64,
    ) -> Result<Self, WeightError> {
        Ok(Self {
            weight: load_weight(weights, parts, in_features, Feeds::Hidden)?,
        })
    }

    /// `x W^T` for every part at once: `[tokens, sum of parts' features]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ForwardError> {
        Ok(self.weight.matmul(x)?)
    }
}

/// `y = x W^T` with W's input columns split across ranks, then summed.
pub struct RowParallelLinear {
    weight: LinearWeight,
    tp: TpGroup,
}

impl RowParallelLinear {
    /// Loads `name` of full shape `[out_features, in_features]`, keeping this
    /// rank's columns.
    pub fn load(
        weights: &Weights,
        name: &str,
        in_features: i64,
        out_features: i64,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let shard = Shard {
            dim: 1,
            rank: tp.rank,
            world_size: tp.world_size,
        };
        Ok(Self {
            weight: load_weight(
                weights,
                &[(name, out_features, shard)],
                in_features,
                Feeds::Hidden,
            )?,
            tp: tp.clone(),
        })
    }

    /// `x` holds this rank's slice of the input features; returns the full
    /// output, reduced over ranks (an error if a peer fails).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ForwardError> {
        let partial = self.weight.matmul(x)?;
        if self.tp.skips_collectives() {
            Ok(partial)
        } else {
            Ok(self.tp.comm.all_reduce_sum(&partial)?)
        }
    }

    /// `residual + x W^T` for a 2-D `x`; with one rank (and no
    /// communicator to run) a single GEMM that accumulates onto the
    /// residual.
    pub fn forward_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, ForwardError> {
        if self.tp.skips_collectives() {
            Ok(self.weight.matmul_add(x, residual)?)
        } else {
            Ok(residual.f_add(&self.forward(x)?)?)
        }
    }
}

/// The parts `(name, out_features, shard)` of one matrix (each `[out,
/// in_features]` in full), stacked by output rows, in the form
/// `weights.quantization()` asks for: with GGUF quantization, packed int4
/// when every part has a 4-bit form, else as [`dense_weight`] says; with
/// int8, quantized here; else dense in the model's dtype.
pub fn load_weight(
    weights: &Weights,
    parts: &[(&str, i64, Shard)],
    in_features: i64,
    feeds: Feeds,
) -> Result<LinearWeight, WeightError> {
    let torch_error = |source| WeightError::Torch {
        file: weights.file(),
        tensor: parts.first().map(|p| p.0).unwrap_or_default().to_string(),
        source,
    };
    let mut int4 = Vec::with_capacity(parts.len());
    for &(name, out_features, shard) in parts {
        match weights.get_int4(name, &[out_features, in_features], Some(shard))? {
            Some(part) => int4.push(part),
            None => break,
        }
    }
    if !int4.is_empty() && int4.len() == parts.len() {
        let cat = |f: fn(&Int4Weight) -> &Tensor| {
            Tensor::f_cat(&int4.iter().map(f).collect::<Vec<_>>(), 0)
        };
        let merged = Int4Weight {
            values: cat(|w| &w.values).map_err(torch_error)?,
            scales: cat(|w| &w.scales).map_err(torch_error)?,
            zeros: cat(|w| &w.zeros).map_err(torch_error)?,
        };
        return LinearWeight::int4(&merged).map_err(torch_error);
    }
    let mut stacked = Vec::with_capacity(parts.len());
    for &(name, out_features, shard) in parts {
        stacked.push(weights.get(name, &[out_features, in_features], Some(shard))?);
    }
    let dense = Tensor::f_cat(&stacked, 0).map_err(torch_error)?;
    let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
    dense_weight(weights, &names, dense, feeds).map_err(torch_error)
}

/// What a matrix's product feeds, which decides how precise it must stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feeds {
    /// The next layer, whose input a quantized product rounds to bf16
    /// anyway.
    Hidden,
    /// The vocabulary logits. Under `--quantization gguf` these stay in
    /// f32, never bf16: torch's int8 product returns bf16, whose logits
    /// at SmolLM2's scale (16 to 32) are 0.125 apart and tie (tried on its
    /// Q8_0 head: the last-position logits moved 0.65 from transformers',
    /// past the stated 0.6, and greedy steps flipped on exact ties). One-row
    /// products read an int8 block copy through our own kernel, which
    /// returns f32 ([`LinearWeight::logits`]).
    Logits,
}

/// A matrix that has no 4-bit form (`dense`, stacked from the tensors
/// `names`), in the form the quantization mode asks for: int8 with
/// `--quantization int8`; with `gguf`, int8 when every part is stored in
/// quantized blocks (Q8_0, Q5_x, Q6_K, ...: re-quantized with one scale
/// per row, not exact) and it feeds a hidden layer; else as it is.
pub fn dense_weight(
    weights: &Weights,
    names: &[&str],
    dense: Tensor,
    feeds: Feeds,
) -> Result<LinearWeight, tch::TchError> {
    let quantized_in_file = || names.iter().all(|name| weights.stored_quantized(name));
    match weights.quantization() {
        Quantization::Int8 => LinearWeight::int8(dense),
        Quantization::Gguf if feeds == Feeds::Hidden && quantized_in_file() => {
            LinearWeight::int8(dense)
        }
        Quantization::Gguf if feeds == Feeds::Logits => LinearWeight::logits(dense),
        Quantization::None | Quantization::Gguf => Ok(LinearWeight::Dense(dense)),
    }
}

/// Which K/V heads rank `tp.rank` holds, as vLLM's `QKVParallelLinear`
/// splits them: with at least as many K/V heads as ranks, an even share
/// (`kv_heads / world_size` each); with fewer, one head each, replicated
/// over `world_size / kv_heads` consecutive ranks (rank r holds head
/// `r * kv_heads / world_size`), which keeps every query head on the same
/// rank as its K/V head. As a [`Shard`] of the `[kv_heads * head_dim, _]`
/// k and v weights. The caller has checked that one count divides the
/// other.
pub fn kv_head_shard(kv_heads: usize, tp: &TpGroup) -> Shard {
    if kv_heads >= tp.world_size {
        Shard {
            dim: 0,
            rank: tp.rank,
            world_size: tp.world_size,
        }
    } else {
        Shard {
            dim: 0,
            rank: tp.rank * kv_heads / tp.world_size,
            world_size: kv_heads,
        }
    }
}
