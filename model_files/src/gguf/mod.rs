//! GGUF, llama.cpp's single-file model format: header, typed metadata,
//! tensor infos, and block dequantization to f32.
//!
//! Owns reading and validating the container ([`GgufFile::open`] checks
//! every byte of structure up front and memory-maps the data), the ggml type
//! table ([`GgmlType`]), and the reference dequantizers ([`dequantize`]),
//! which are bit-exact with ggml's `dequantize_row_*` so a GGUF model served
//! here computes with the same weights as llama.cpp, and the 4-bit formats'
//! re-expression in torch's int4 group format ([`int4_groups`]). It knows nothing about
//! model architectures: callers interpret metadata keys and tensor names.

mod dequant;
mod error;
mod int4;
mod reader;
mod types;
mod value;

pub use dequant::{dequantize, DequantError};
pub use error::GgufError;
pub use int4::{int4_groups, maps_to_int4, Int4Groups, INT4_GROUP_SIZE};
pub use reader::{GgufFile, TensorInfo};
pub use types::GgmlType;
pub use value::GgufValue;
