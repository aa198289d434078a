//! Compute kernels that torch does not offer. Today: the CPU product of
//! an int8 block-quantized matrix with f32 activations and f32 results
//! ([`q8_matmul`]), for the LM head of a quantized model. Pure Rust: the
//! CPU build never needs a C++ or CUDA compiler.

pub mod q8_matmul;
