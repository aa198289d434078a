//! Torch-free readers of model artifacts on disk, shared by the engine
//! process (tokenizer, chat template, limits) and the worker processes
//! (weights).
//!
//! Owns: the GGUF container format (header, metadata, tensor infos, block
//! dequantization to f32), the HF `config.json` of the architectures we
//! serve, and how a `--model` argument (an alias, an HF folder or a `.gguf`
//! file) resolves to files. It must not know about torch, so the engine can
//! read a GGUF's tokenizer without linking libtorch's model code, and so the
//! dequantizers are tested in plain Rust.
//!
//! This crate is not in the first DESIGN.md table: the engine needs GGUF
//! metadata and the workers need GGUF tensors, and neither may depend on the
//! other, so the format lives here once.

pub mod config;
pub mod fuzz_harness;
pub mod gguf;
pub mod source;

pub use config::{
    Architecture, AttentionWindow, ModelConfig, MoeRouting, MoeSpec, QkNorm, RopeScaling,
};
pub use source::{ModelFormat, ModelSource};
