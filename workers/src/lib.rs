//! Worker-side model execution: weight loading, the models, attention
//! backends, the paged KV cache tensors, and (issue 4) the gRPC worker with
//! its persistent input batch and sampler.
//!
//! Rooms: `weights/` hides safetensors vs GGUF vs dummy behind one
//! `Weights` interface; `layers/` has the parallel linear, embedding, norm
//! and rotary layers models are built from; `models/` one file per
//! architecture; `attention/` the `AttentionBackend` trait and its torch
//! reference; `paged_kv` the cache tensors; `batch` the validated flat
//! varlen input of a forward pass; `loader` picks the format for a model
//! source. It knows nothing of HTTP or scheduling policy: it runs the
//! steps it is given.

pub mod attention;
pub mod batch;
pub mod fuzz_harness;
pub mod grpc;
pub mod layers;
pub mod loader;
pub mod models;
pub mod paged_kv;
pub mod parallel;
pub mod progress;
pub mod runner;
pub mod sampler;
pub mod weights;
