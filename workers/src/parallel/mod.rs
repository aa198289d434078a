//! Tensor-parallel identity of this worker (its rank among `world_size`)
//! and the collective operations layers need.
//!
//! Layers call the [`Communicator`] trait and never know which transport
//! runs it: [`SingleRank`] for a group of one (every collective is the
//! identity), [`TcpCommunicator`] across worker processes (or threads) on
//! one host, so tensor parallelism runs and is tested on CPUs. A collective
//! that cannot finish (a peer died, timed out or disagreed on the shape)
//! returns a [`CommError`]; it never hangs and never panics, so one dead
//! rank fails the step on every rank and the executor fails the group.

mod tcp;
mod wire;

use std::sync::Arc;

use tch::Tensor;

pub use tcp::{parse_communicator_id, TcpCommunicator, TcpOptions};

/// Why a collective (or forming the group) failed.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    /// The communicator id is not one this build understands.
    #[error("bad communicator id `{id}`: {reason}")]
    BadId { id: String, reason: String },
    /// The ranks could not find each other in time.
    #[error("rank {rank}: forming the group of {world_size} at {addr} failed: {reason}")]
    Rendezvous {
        rank: usize,
        world_size: usize,
        addr: String,
        reason: String,
    },
    /// Reading from or writing to a peer failed: it exited, closed the
    /// connection or did not answer within the timeout.
    #[error("rank {rank}: {op} with rank {peer} failed: {source}")]
    Peer {
        rank: usize,
        peer: usize,
        op: &'static str,
        source: std::io::Error,
    },
    /// A peer sent something other than what this collective expects
    /// (ranks running different steps, or different shapes).
    #[error("rank {rank}: {op} got a mismatched message from rank {peer}: {reason}")]
    Mismatch {
        rank: usize,
        peer: usize,
        op: &'static str,
        reason: String,
    },
    /// The tensor's dtype has no wire encoding.
    #[error("tensors of kind {0:?} cannot be sent")]
    UnsupportedKind(tch::Kind),
    /// The tensor has more dimensions than the wire header allows.
    #[error("tensors of {dims} dimensions cannot be sent (at most {max})")]
    TooManyDims { dims: usize, max: usize },
    #[error("torch failed in a collective: {0}")]
    Torch(#[from] tch::TchError),
}

/// Collective operations across the ranks of one tensor-parallel group.
/// Every rank must call the same collectives in the same order.
pub trait Communicator: Send + Sync {
    /// Sum of `t` over all ranks, returned on every rank (bit-identical on
    /// every rank, so replicated activations never drift apart).
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor, CommError>;
    /// Concatenation of every rank's `t` along `dim`, in rank order.
    fn all_gather(&self, t: &Tensor, dim: i64) -> Result<Tensor, CommError>;
    /// `root`'s `t` on every rank (other ranks' `t` gives the shape only
    /// by convention; its values are ignored).
    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor, CommError>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<(), CommError>;
}

/// The communicator of a group of one: nothing to exchange.
pub struct SingleRank;

impl Communicator for SingleRank {
    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor, CommError> {
        Ok(t.shallow_clone())
    }
    fn all_gather(&self, t: &Tensor, _dim: i64) -> Result<Tensor, CommError> {
        Ok(t.shallow_clone())
    }
    fn broadcast(&self, t: &Tensor, _root: usize) -> Result<Tensor, CommError> {
        Ok(t.shallow_clone())
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
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

    /// Joins the group named by `communicator_id` (`tcp://host:port`,
    /// where rank 0 listens) as `rank` of `world_size`; a group of one
    /// needs no id. Blocks until every rank has joined or the rendezvous
    /// times out.
    pub fn connect(
        rank: usize,
        world_size: usize,
        communicator_id: &str,
        options: TcpOptions,
    ) -> Result<Self, CommError> {
        if world_size == 1 {
            return Ok(Self::single());
        }
        let addr = parse_communicator_id(communicator_id)?;
        let comm = TcpCommunicator::connect(rank, world_size, addr, options)?;
        Ok(Self {
            rank,
            world_size,
            comm: Arc::new(comm),
        })
    }
}
