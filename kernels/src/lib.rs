//! C++/CUDA ops built against the libtorch headers (paged attention, fused
//! MoE, norms, rotary), each with a CPU reference, behind the `cuda` feature.
//!
//! Empty until a later issue fills it: the CPU build must never need nvcc, so
//! the reference attention backend lives in `workers` as plain torch ops.
