//! One file per model architecture, built from `crate::layers`.

pub mod llama;
