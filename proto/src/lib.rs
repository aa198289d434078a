//! The single contract between the engine and its workers:
//! `proto/worker.proto`, compiled by tonic/prost. Reading that file tells
//! the system; this crate holds no logic.

#![allow(clippy::all, missing_docs)] // generated code

/// Messages and the `Worker` service of `engine.worker.v1`.
pub mod worker {
    tonic::include_proto!("engine.worker.v1");
}
