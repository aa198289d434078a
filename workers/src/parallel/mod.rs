//! Tensor-parallel identity of this worker (its rank among `world_size`)
//! and the collective operations layers need.
//!
//! Layers call the [`Communicator`] trait and never know which transport
//! runs it: [`SingleRank`] for a group of one (every collective is the
//! identity), [`TcpCommunicator`] across worker processes (or threads) on
//! one host, so tensor parallelism runs and is tested on CPUs, and, in a
//! build with the `nccl` feature, `NcclCommunicator` for CUDA tensors
//! (NCCL loaded at run time; its unique id travels over the TCP
//! rendezvous). [`CommunicatorKind`] (`--tp-communicator`) picks one. A
//! collective that cannot finish (a peer died, timed out or disagreed on
//! the shape) returns a [`CommError`]; the TCP communicator never hangs
//! and never panics, so one dead rank fails the step on every rank and the
//! executor fails the group. (NCCL has no timeout: a dead peer leaves the
//! others' kernels waiting, and it is the executor, which polls its
//! children, that fails and kills the group.)

#[cfg(feature = "nccl")]
mod nccl;
mod tcp;
mod wire;

use std::sync::Arc;

use tch::{Device, Tensor};

#[cfg(feature = "nccl")]
pub use nccl::{nccl_library_path, nccl_version, NcclCommunicator, NcclVersion};
pub use tcp::{parse_communicator_id, TcpCommunicator, TcpOptions};

/// Whether this build has the NCCL communicator (cargo feature `nccl`).
pub const NCCL_BUILT: bool = cfg!(feature = "nccl");

/// Which communicator a tensor-parallel group uses
/// (`engine serve --tp-communicator`, `InitRequest.communicator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommunicatorKind {
    /// NCCL for a CUDA group of several ranks in a build with NCCL, TCP
    /// for other groups of several, [`SingleRank`] for a group of one.
    #[default]
    Auto,
    /// The CPU communicator (CUDA tensors go through host memory).
    Tcp,
    /// NCCL, even for a group of one (every collective then runs through
    /// NCCL: how a single GPU tests it).
    Nccl,
}

impl CommunicatorKind {
    /// The name `--tp-communicator` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Tcp => "tcp",
            Self::Nccl => "nccl",
        }
    }

    /// Why this communicator cannot run on `device` in this build, if it
    /// cannot: NCCL needs a CUDA device and the `nccl` cargo feature.
    pub fn check(self, device: Device) -> Result<(), String> {
        match (self, device) {
            (Self::Nccl, Device::Cuda(_)) if !NCCL_BUILT => {
                Err("this build has no NCCL communicator (rebuild with `--features nccl`)".into())
            }
            (Self::Nccl, Device::Cuda(_)) => Ok(()),
            (Self::Nccl, Device::Cpu) => {
                Err("NCCL runs on CUDA devices only, not on the CPU (use --device cuda)".into())
            }
            (Self::Nccl, other) => Err(format!(
                "NCCL runs on CUDA devices only, not {other:?} (use --device cuda)"
            )),
            (Self::Auto | Self::Tcp, _) => Ok(()),
        }
    }
}

impl std::fmt::Display for CommunicatorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CommunicatorKind {
    type Err = String;
    /// `auto` (or empty: what an `InitRequest` without the field says),
    /// `tcp` or `nccl`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "" | "auto" => Ok(Self::Auto),
            "tcp" => Ok(Self::Tcp),
            "nccl" => Ok(Self::Nccl),
            other => Err(format!("unknown communicator `{other}` (auto, tcp, nccl)")),
        }
    }
}

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
    /// The NCCL communicator cannot be used: this build has no `nccl`
    /// feature, the device is not CUDA, or `libnccl.so.2` (or one of its
    /// functions) could not be loaded.
    #[error("NCCL communicator unavailable: {0}")]
    NcclUnavailable(String),
    /// An NCCL call returned an error (`code` is its `ncclResult_t`).
    #[error("rank {rank}: NCCL {op} failed: {message} (ncclResult_t {code})")]
    Nccl {
        rank: usize,
        op: &'static str,
        code: i32,
        message: String,
    },
    /// A tensor given to a collective is not on the communicator's device.
    #[error("rank {rank}: {op} got a tensor on {got:?}; this communicator runs on {want:?}")]
    WrongDevice {
        rank: usize,
        op: &'static str,
        got: Device,
        want: Device,
    },
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
    /// What runs the collectives (`none`, `tcp`, `nccl`), for logs.
    fn name(&self) -> &'static str;
    /// Whether every collective returns its input unchanged ([`SingleRank`]),
    /// so layers may skip them; a one-rank NCCL group says no, so its
    /// collectives really run.
    fn is_identity(&self) -> bool {
        false
    }
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
    fn name(&self) -> &'static str {
        "none"
    }
    fn is_identity(&self) -> bool {
        true
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

    /// Whether collectives can be skipped: a group of one on
    /// [`SingleRank`]. Layers take their single-rank fast paths then.
    pub fn skips_collectives(&self) -> bool {
        self.comm.is_identity()
    }

    /// Joins the group named by `communicator_id` (`tcp://host:port`,
    /// where rank 0 listens) as `rank` of `world_size` over the CPU
    /// communicator; a group of one needs no id. Blocks until every rank
    /// has joined or the rendezvous times out.
    pub fn connect(
        rank: usize,
        world_size: usize,
        communicator_id: &str,
        options: TcpOptions,
    ) -> Result<Self, CommError> {
        Self::join(
            rank,
            world_size,
            communicator_id,
            CommunicatorKind::Tcp,
            Device::Cpu,
            options,
        )
    }

    /// Joins the group with the communicator `kind` names for tensors on
    /// `device` (see [`CommunicatorKind`]). NCCL bootstraps over the TCP
    /// rendezvous at `communicator_id` (not needed for a group of one) and
    /// makes `device` the thread's current CUDA device. Blocks until every
    /// rank has joined; asking for NCCL on a CPU, or in a build without
    /// it, is [`CommError::NcclUnavailable`].
    pub fn join(
        rank: usize,
        world_size: usize,
        communicator_id: &str,
        kind: CommunicatorKind,
        device: Device,
        options: TcpOptions,
    ) -> Result<Self, CommError> {
        kind.check(device).map_err(CommError::NcclUnavailable)?;
        let nccl = match (kind, device) {
            (CommunicatorKind::Nccl, Device::Cuda(index)) => Some(index),
            (CommunicatorKind::Auto, Device::Cuda(index)) if NCCL_BUILT && world_size > 1 => {
                Some(index)
            }
            _ => None,
        };
        let comm: Arc<dyn Communicator> = match nccl {
            Some(index) => join_nccl(rank, world_size, communicator_id, index, options)?,
            None if world_size == 1 => Arc::new(SingleRank),
            None => {
                let addr = parse_communicator_id(communicator_id)?;
                Arc::new(TcpCommunicator::connect(rank, world_size, addr, options)?)
            }
        };
        Ok(Self {
            rank,
            world_size,
            comm,
        })
    }
}

/// An NCCL group on CUDA device `index`: rank 0's unique id reaches the
/// others through the TCP rendezvous (a group of one needs none).
#[cfg(feature = "nccl")]
fn join_nccl(
    rank: usize,
    world_size: usize,
    communicator_id: &str,
    index: usize,
    options: TcpOptions,
) -> Result<Arc<dyn Communicator>, CommError> {
    let comm = if world_size == 1 {
        NcclCommunicator::connect(rank, world_size, index, &SingleRank)?
    } else {
        let addr = parse_communicator_id(communicator_id)?;
        let bootstrap = TcpCommunicator::connect(rank, world_size, addr, options)?;
        NcclCommunicator::connect(rank, world_size, index, &bootstrap)?
    };
    Ok(Arc::new(comm))
}

#[cfg(not(feature = "nccl"))]
fn join_nccl(
    _rank: usize,
    _world_size: usize,
    _communicator_id: &str,
    _index: usize,
    _options: TcpOptions,
) -> Result<Arc<dyn Communicator>, CommError> {
    Err(CommError::NcclUnavailable(
        "this build has no NCCL communicator (rebuild with `--features nccl`)".into(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn join(
        world_size: usize,
        id: &str,
        kind: CommunicatorKind,
        device: Device,
    ) -> Result<TpGroup, CommError> {
        TpGroup::join(0, world_size, id, kind, device, TcpOptions::default())
    }

    #[test]
    fn parses_communicator_kinds() {
        for kind in [
            CommunicatorKind::Auto,
            CommunicatorKind::Tcp,
            CommunicatorKind::Nccl,
        ] {
            assert_eq!(kind.as_str().parse::<CommunicatorKind>().unwrap(), kind);
        }
        // An InitRequest from before the field existed.
        assert_eq!(
            "".parse::<CommunicatorKind>().unwrap(),
            CommunicatorKind::Auto
        );
        assert!("mpi".parse::<CommunicatorKind>().is_err());
    }

    #[test]
    fn one_rank_without_nccl_skips_collectives() {
        for kind in [CommunicatorKind::Auto, CommunicatorKind::Tcp] {
            assert!(join(1, "", kind, Device::Cpu).unwrap().skips_collectives());
        }
    }

    #[test]
    fn several_cpu_ranks_use_the_tcp_rendezvous() {
        for kind in [CommunicatorKind::Auto, CommunicatorKind::Tcp] {
            let err = join(2, "nowhere", kind, Device::Cpu).err();
            assert!(matches!(err, Some(CommError::BadId { .. })), "{err:?}");
        }
    }

    #[test]
    fn nccl_on_the_cpu_is_unavailable() {
        let err = join(1, "", CommunicatorKind::Nccl, Device::Cpu).err();
        assert!(
            matches!(err, Some(CommError::NcclUnavailable(_))),
            "{err:?}"
        );
        assert!(CommunicatorKind::Nccl.check(Device::Cpu).is_err());
        assert!(CommunicatorKind::Auto.check(Device::Cpu).is_ok());
    }

    #[cfg(not(feature = "nccl"))]
    #[test]
    fn nccl_without_the_feature_is_unavailable() {
        let err = join(1, "", CommunicatorKind::Nccl, Device::Cuda(0))
            .err()
            .unwrap();
        assert!(matches!(err, CommError::NcclUnavailable(_)), "{err}");
        assert!(err.to_string().contains("--features nccl"), "{err}");
    }
}
