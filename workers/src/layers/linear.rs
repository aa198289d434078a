//! Column- and row-parallel linear layers (Megatron style).
//!
//! Column-parallel splits the output features across ranks (q/k/v,
//! gate/up): each rank computes its slice, no communication. Row-parallel
//! splits the input features (o_proj, down_proj): each rank computes a
//! partial sum over its slice, then an all-reduce adds them.

use tch::Tensor;

use crate::parallel::TpGroup;
use crate::weights::{Shard, WeightError, Weights};

/// `y = x W^T` with W's output rows split across ranks.
pub struct ColumnParallelLinear {
    weight: Tensor,
}

impl ColumnParallelLinear {
    /// Loads `name` of full shape `[out_features, in_features]`, keeping this
    /// rank's rows.
    pub fn load(
        weights: &Weights,
        name: &str,
        in_features: i64,
        out_features: i64,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let shard = Shard {
            dim: 0,
            rank: tp.rank,
            world_size: tp.world_size,
        };
        let weight = weights.get(name, &[out_features, in_features], Some(shard))?;
        Ok(Self { weight })
    }

    /// This rank's slice of the output features.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear::<&Tensor>(&self.weight, None)
    }
}

/// `y = x W^T` with W's input columns split across ranks, then summed.
pub struct RowParallelLinear {
    weight: Tensor,
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
        let weight = weights.get(name, &[out_features, in_features], Some(shard))?;
        Ok(Self {
            weight,
            tp: tp.clone(),
        })
    }

    /// `x` holds this rank's slice of the input features; returns the full
    /// output, reduced over ranks.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let partial = x.linear::<&Tensor>(&self.weight, None);
        if self.tp.world_size == 1 {
            partial
        } else {
            self.tp.comm.all_reduce_sum(&partial)
        }
    }
}
