//! The worker's side of a step: the persistent [`InputBatch`] of the
//! requests it holds, the [`ModelRunner`] that turns a `StepRequest` into
//! flat varlen model inputs, runs the model and samples, and the errors a
//! worker reports ([`WorkerError`]).
//!
//! Input preparation (`input_batch`), the forward pass and memory sizing
//! (`model_runner`), device memory queries (`device_memory`) and sampling
//! (`crate::sampler`) live apart, unlike vLLM's one `gpu_model_runner.py`.
//! Nothing here knows gRPC: `crate::grpc` serves a runner, the engine's
//! uniproc executor calls one directly.

pub mod bitmasks;
pub(crate) mod device_memory;
pub mod input_batch;
pub mod model_runner;

pub use bitmasks::{BitmaskMailbox, BitmaskSource, NoBitmasks};
pub use input_batch::{InputBatch, RequestState};
pub use model_runner::ModelRunner;

use crate::batch::BatchError;
use crate::layers::ForwardError;
use crate::loader::LoadError;
use crate::parallel::CommError;
use crate::sampler::SamplerError;

/// Why a worker refused or failed a call. Bad input is an error, never a
/// panic.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A call came before the one it depends on (load before init, a step
    /// before the KV cache...).
    #[error("{0}")]
    NotReady(&'static str),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Joining the tensor-parallel group or a collective failed (a peer
    /// rank died or hung).
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error("request `{req_id}`: {context}")]
    UnknownRequest {
        req_id: String,
        context: &'static str,
    },
    #[error(
        "request `{req_id}`: {num_tokens} tokens scheduled from {start} but only {known} are known"
    )]
    ScheduledPastKnownTokens {
        req_id: String,
        start: usize,
        num_tokens: usize,
        known: usize,
    },
    #[error(transparent)]
    Source(#[from] model_files::source::SourceError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error("memory profiling failed: {0}")]
    Memory(String),
    #[error(transparent)]
    Torch(#[from] tch::TchError),
    /// The forward pass failed (a torch op or a collective).
    #[error("forward pass: {0}")]
    Forward(#[from] ForwardError),
}

impl WorkerError {
    /// Whether the caller sent something wrong (as opposed to the worker
    /// failing): maps to gRPC `INVALID_ARGUMENT`.
    pub fn is_invalid_argument(&self) -> bool {
        matches!(
            self,
            Self::InvalidArgument(_)
                | Self::UnknownRequest { .. }
                | Self::ScheduledPastKnownTokens { .. }
                | Self::Batch(
                    BatchError::EmptyChunk { .. }
                        | BatchError::TokenOutOfRange { .. }
                        | BatchError::BlockTableTooShort { .. }
                        | BatchError::BlockOutOfRange { .. }
                        | BatchError::TooLong { .. }
                        | BatchError::Empty
                )
                | Self::Source(_)
                | Self::Comm(CommError::BadId { .. } | CommError::NcclUnavailable(_))
        )
    }
}
