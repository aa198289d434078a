//! One interface over every weight container: the model asks for a tensor by
//! its HF name and full shape, optionally a tensor-parallel shard of it, and
//! gets it on the right device and dtype, or an error naming the file and
//! the tensor.
//!
//! Formats: safetensors (single or sharded through
//! `model.safetensors.index.json`, memory-mapped), GGUF (dequantized to f32,
//! names mapped to HF's, llama.cpp's q/k permutation undone), and dummy
//! (seeded random weights from a config, for benchmarks at real shapes).
//! Shapes are checked here, once, so the forward pass never meets a bad one.

mod dummy;
mod gguf;
mod safetensors;

use std::path::PathBuf;

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

/// A weight container. Implementations return the whole tensor in its
/// stored (or dequantized) dtype on the CPU; `Weights` checks, shards and
/// moves it.
pub trait WeightSource: Send + Sync {
    /// The file (or description) errors should name.
    fn file(&self) -> PathBuf;
    /// The full tensor called `name` (HF naming). `shape` is what the model
    /// expects; only the dummy source uses it to make one.
    fn load(&self, name: &str, shape: &[i64]) -> Result<Tensor, WeightError>;
}

/// What the model loads through: a source plus the target device and dtype.
pub struct Weights {
    source: Box<dyn WeightSource>,
    device: Device,
    kind: Kind,
}

impl Weights {
    /// Wraps a source; floating tensors are converted to `kind` on `device`.
    pub fn new(source: Box<dyn WeightSource>, device: Device, kind: Kind) -> Self {
        Self {
            source,
            device,
            kind,
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
            return Err(WeightError::Shape {
                file: self.source.file(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                got,
            });
        }
        let torch_error = |source| WeightError::Torch {
            file: self.source.file(),
            tensor: name.to_string(),
            source,
        };
        let tensor = match shard {
            Some(s) if s.world_size > 1 => {
                let size = shape.get(s.dim).copied().unwrap_or(0);
                let parts = s.world_size as i64;
                if size % parts != 0 {
                    return Err(WeightError::Shard {
                        file: self.source.file(),
                        tensor: name.to_string(),
                        dim: s.dim,
                        size,
                        world_size: s.world_size,
                    });
                }
                let len = size / parts;
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
