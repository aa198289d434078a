//! Tensor-parallel identity of this worker (its rank among `world_size`)
//! and the collective operations layers need.
//!
//! Layers are written for any world size now; this issue runs world size
//! 1, where every collective is the identity. The NCCL and CPU
//! communicators arrive with tensor parallelism (issue 7) behind the same
//! trait.

use std::sync::Arc;

use tch::Tensor;

/// Collective operations across the ranks of one tensor-parallel group.
pub trait Communicator: Send + Sync {
    /// Sum of `t` over all ranks, returned on every rank.
    fn all_reduce_sum(&self, t: &Tensor) -> Tensor;
    /// Concatenation of every rank's `t` along `dim`, in rank order.
    fn all_gather(&self, t: &Tensor, dim: i64) -> Tensor;
}

/// The communicator of a group of one: nothing to exchange.
pub struct SingleRank;

impl Communicator for SingleRank {
    fn all_reduce_sum(&self, t: &Tensor) -> Tensor {
        t.shallow_clone()
    }
    fn all_gather(&self, t: &Tensor, _dim: i64) -> Tensor {
        t.shallow_clone()
    }
}

/// This worker's place in its tensor-parallel group.
#[derive(Clone)]
pub struct TpGroup {
    pub rank: usize,
    pub world_size: usize,
    pub comm: Arc<dyn Communicator>,
}

impl TpGroup {
    /// A group of one (no tensor parallelism).
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            comm: Arc::new(SingleRank),
        }
    }
}
