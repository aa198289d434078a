//! The single contract between the engine and its workers:
//! `proto/worker.proto`, compiled by tonic/prost. Reading that file tells
//! the system. Besides the generated code, this crate holds only what
//! defines a valid message, so both sides check it alike ([`sampling`]).

pub mod sampling;

/// Messages and the `Worker` service of `engine.worker.v1`.
#[allow(clippy::all, missing_docs)] // generated code
pub mod worker {
    tonic::include_proto!("engine.worker.v1");
}
