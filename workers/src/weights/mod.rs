//! One interface over every weight container: the model asks for a tensor by
//! its HF name and full shape, optionally a tensor-parallel shard of it, and
//! gets it on the right device and dtype, or an error naming the file and
//! the tensor.
//!
//! Formats: safetensors (single or sharded through
//! `model.safetensors.index.json`, memory-mapped), GGUF (dequantized to f32,
//! or its 4-bit tensors kept 4-bit as [`Int4Weight`]; names mapped to HF's,
//! llama.cpp's q/k permutation undone), and dummy
//! (seeded random weights from a config, for benchmarks at real shapes).
//! Shapes are checked here, once, so the forward pass never meets a bad one.

mod dummy;
mod gguf;
mod safetensors;

use std::path::PathBuf;

use model_files::gguf::INT4_GROUP_SIZE;
use tch::{Device, Kind, Tensor};

pub use self::dummy::DummySource;
pub use self::gguf::GgufSource;
pub use self::safetensors::SafetensorsSource;

/// Why a weight could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum WeightError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: not a valid safetensors file: {reason}")]
    Safetensors { file: PathBuf, reason: String },
    #[error("{file}: tensor `{tensor}` is missing")]
    Missing { file: PathBuf, tensor: String },
    #[error("{file}: tensor `{tensor}` has shape {got:?}, the model config expects {expected:?}")]
    Shape {
        file: PathBuf,
        tensor: String,
        expected: Vec<i64>,
        got: Vec<i64>,
    },
    #[error("{file}: tensor `{tensor}` has unsupported dtype {dtype}")]
    Dtype {
        file: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error("{file}: tensor `{tensor}` of size {size} on dim {dim} cannot be split into {world_size} equal shards")]
    Shard {
        file: PathBuf,
        tensor: String,
        dim: usize,
        size: i64,
        world_size: usize,
    },
    #[error(transparent)]
    Gguf(#[from] model_files::gguf::GgufError),
    #[error("{file}: torch failed on tensor `{tensor}`: {source}")]
    Torch {
        file: PathBuf,
        tensor: String,
        source: tch::TchError,
    },
}

/// One slice of a tensor for tensor parallelism: rank `rank` of
/// `world_size` equal parts along `dim`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub dim: usize,
    pub rank: usize,
    pub world_size: usize,
}

/// How linear layers hold their weights (vLLM's `--quantization`, resolved
/// against the checkpoint and device by the loader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantization {
    /// Every weight in the model's dtype.
    None,
    /// A GGUF checkpoint's quantization kept where torch has a kernel for
    /// it: 4-bit tensors stay 4-bit ([`Int4Weight`], exactly the file's
    /// values); other quantized tensors (Q8_0, Q5_x, Q6_K) are re-quantized
    /// to int8 with one scale per output row (not exact: a row's scale
    /// replaces its blocks' scales). Float tensors stay in the model's
    /// dtype.
    Gguf,
    /// Linear weights quantized at load to int8, one scale per output row.
    Int8,
}

/// A 4-bit weight matrix `[out, in]` in torch's int4 group format:
/// `w = (value - 8) * scale + zero`, one scale and zero per
/// [`INT4_GROUP_SIZE`] consecutive inputs of a row. Plain CPU tensors; the
/// linear layer packs them for the kernel.
pub struct Int4Weight {
    /// `[out, in]` uint8, each in `0..16`.
    pub values: Tensor,
    /// `[out, in / INT4_GROUP_SIZE]` f32.
    pub scales: Tensor,
    /// `[out, in / INT4_GROUP_SIZE]` f32.
    pub zeros: Tensor,
}

impl Int4Weight {
    /// The same rows of all three, e.g. after llama.cpp's q/k row
    /// permutation is undone.
    pub fn map_rows(&self, f: impl Fn(&Tensor) -> Tensor) -> Self {
        Self {
            values: f(&self.values),
            scales: f(&self.scales),
            zeros: f(&self.zeros),
        }
    }
}

/// A weight container. Implementations return the whole tensor in its
/// stored (or dequantized) dtype on the CPU; `Weights` checks, shards and
/// moves it.
pub trait WeightSource: Send + Sync {
    /// The file (or description) errors should name.
    fn file(&self) -> PathBuf;
    /// The full tensor called `name` (HF naming). `shape` is what the model
    /// expects; only the dummy source uses it to make one.
    fn load(&self, name: &str, shape: &[i64]) -> Result<Tensor, WeightError>;
    /// `name` in [`Int4Weight`] form, if the container stores it in a
    /// format that maps onto it exactly (GGUF's Q4_0, Q4_1, Q4_K).
    fn load_int4(&self, _name: &str) -> Result<Option<Int4Weight>, WeightError> {
        Ok(None)
    }
    /// Whether the container stores `name` in quantized blocks (false for
    /// float tensors and for names it does not hold).
    fn stored_quantized(&self, _name: &str) -> bool {
        false
    }
}

/// What the model loads through: a source plus the target device, dtype and
/// how linear weights are held.
pub struct Weights {
    source: Box<dyn WeightSource>,
    device: Device,
    kind: Kind,
    quantization: Quantization,
}

impl Weights {
    /// Wraps a source; floating tensors are converted to `kind` on `device`;
    /// every weight is held in `kind` (see [`Self::with_quantization`]).
    pub fn new(source: Box<dyn WeightSource>, device: Device, kind: Kind) -> Self {
        Self {
            source,
            device,
            kind,
            quantization: Quantization::None,
        }
    }

    /// Holds linear weights as `quantization` says.
    pub fn with_quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = quantization;
        self
    }

    /// How linear layers hold their weights.
    pub fn quantization(&self) -> Quantization {
        self.quantization
    }

    /// Whether the container stores `name` in quantized blocks.
    pub fn stored_quantized(&self, name: &str) -> bool {
        self.source.stored_quantized(name)
    }

    /// `name` (full shape `[out, in]`) as an [`Int4Weight`], sharded like
    /// [`Self::get`], when quantization is [`Quantization::Gguf`] and the
    /// container has that form; `None` otherwise. A column shard must
    /// split whole groups.
    pub fn get_int4(
        &self,
        name: &str,
        shape: &[i64],
        shard: Option<Shard>,
    ) -> Result<Option<Int4Weight>, WeightError> {
        if self.quantization != Quantization::Gguf {
            return Ok(None);
        }
        let Some(weight) = self.source.load_int4(name)? else {
            return Ok(None);
        };
        let got = weight.values.size();
        if got != shape {
            return Err(self.shape_error(name, shape, got));
        }
        let Some(s) = shard.filter(|s| s.world_size > 1) else {
            return Ok(Some(weight));
        };
        let group = if s.dim == 1 {
            INT4_GROUP_SIZE as i64
        } else {
            1
        };
        let len = self.shard_len(name, shape, s, group)?;
        let dim = s.dim as i64;
        let narrow = |t: &Tensor, len: i64| {
            t.f_narrow(dim, len * s.rank as i64, len)
                .and_then(|t| t.f_contiguous())
        };
        let torch_error = |source| WeightError::Torch {
            file: self.source.file(),
            tensor: name.to_string(),
            source,
        };
        Ok(Some(Int4Weight {
            values: narrow(&weight.values, len).map_err(torch_error)?,
            scales: narrow(&weight.scales, len / group).map_err(torch_error)?,
            zeros: narrow(&weight.zeros, len / group).map_err(torch_error)?,
        }))
    }

    /// The length of `shard` along its dimension of `shape`, which must
    /// split into equal shards of a multiple of `unit` (a quantization
    /// group along the inputs).
    fn shard_len(
        &self,
        name: &str,
        shape: &[i64],
        shard: Shard,
        unit: i64,
    ) -> Result<i64, WeightError> {
        let size = shape.get(shard.dim).copied().unwrap_or(0);
        let parts = shard.world_size as i64;
        if size % (parts * unit) != 0 {
            return Err(WeightError::Shard {
                file: self.source.file(),
                tensor: name.to_string(),
                dim: shard.dim,
                size,
                world_size: shard.world_size,
            });
        }
        Ok(size / parts)
    }

    fn shape_error(&self, name: &str, expected: &[i64], got: Vec<i64>) -> WeightError {
        WeightError::Shape {
            file: self.source.file(),
            tensor: name.to_string(),
            expected: expected.to_vec(),
            got,
        }
    }

    /// The file (or description) errors name.
    pub fn file(&self) -> PathBuf {
        self.source.file()
    }

    /// The target dtype of the model's parameters.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The target device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Loads `name`, checks it has `shape`, takes `shard` of it if given,
    /// and converts it to the target dtype and device.
    pub fn get(
        &self,
        name: &str,
        shape: &[i64],
        shard: Option<Shard>,
    ) -> Result<Tensor, WeightError> {
        let tensor = self.source.load(name, shape)?;
        let got = tensor.size();
        if got != shape {
            return Err(self.shape_error(name, shape, got));
        }
        let torch_error = |source| WeightError::Torch {
            file: self.source.file(),
            tensor: name.to_string(),
            source,
        };
        let tensor = match shard {
            Some(s) if s.world_size > 1 => {
                let len = self.shard_len(name, shape, s, 1)?;
                // f_narrow: a dimension the tensor lacks is an error, not a
                // panic.
                tensor
                    .f_narrow(s.dim as i64, len * s.rank as i64, len)
                    .map_err(torch_error)?
            }
            _ => tensor,
        };
        tensor
            .f_to_device(self.device)
            .and_then(|t| t.f_to_kind(self.kind))
            .and_then(|t| t.f_contiguous())
            .map_err(torch_error)
    }
}
