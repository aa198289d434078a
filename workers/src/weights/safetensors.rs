//! safetensors files, memory-mapped: one `model.safetensors`, or shards
//! listed in `model.safetensors.index.json`.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata, SafeTensors};
use tch::{Kind, Tensor};

use super::{WeightError, WeightSource};

/// One mapped file with its parsed header.
struct Shard {
    path: PathBuf,
    mmap: Mmap,
    /// Where tensor data starts: 8 bytes of length plus the JSON header.
    data_start: usize,
    metadata: Metadata,
}

/// The safetensors files of an HF folder.
pub struct SafetensorsSource {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// Tensor name -> index into `shards`.
    index: HashMap<String, usize>,
}

#[derive(serde::Deserialize)]
struct IndexFile {
    weight_map: HashMap<String, String>,
}

impl SafetensorsSource {
    /// Opens `dir/model.safetensors.index.json` and its shards if present,
    /// else every `*.safetensors` file in `dir`. Headers are validated here.
    pub fn open(dir: &Path) -> Result<Self, WeightError> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.is_file() {
            let text = std::fs::read_to_string(&index_path).map_err(|source| WeightError::Io {
                file: index_path.clone(),
                source,
            })?;
            let index: IndexFile =
                serde_json::from_str(&text).map_err(|e| WeightError::Safetensors {
                    file: index_path.clone(),
                    reason: format!("bad index: {e}"),
                })?;
            let mut names: Vec<&String> = index.weight_map.values().collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else {
            let entries = std::fs::read_dir(dir).map_err(|source| WeightError::Io {
                file: dir.to_path_buf(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
                .collect();
            files.sort();
            files
        };
        if files.is_empty() {
            return Err(WeightError::Missing {
                file: dir.to_path_buf(),
                tensor: "*.safetensors".into(),
            });
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut index = HashMap::new();
        for path in files {
            let shard = map_shard(&path)?;
            for name in shard.metadata.tensors().keys() {
                index.insert(name.clone(), shards.len());
            }
            shards.push(shard);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            shards,
            index,
        })
    }
}

fn map_shard(path: &Path) -> Result<Shard, WeightError> {
    let file = File::open(path).map_err(|source| WeightError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the file is opened read-only and we never hand out references
    // that outlive `Shard`; a concurrent writer truncating a model file is
    // outside what any loader can defend against.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|source| WeightError::Io {
        file: path.to_path_buf(),
        source,
    })?;
    shard(path, mmap)
}

/// Validates the header of a mapped file.
fn shard(path: &Path, mmap: Mmap) -> Result<Shard, WeightError> {
    let (header_len, metadata) =
        SafeTensors::read_metadata(&mmap).map_err(|e| WeightError::Safetensors {
            file: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Shard {
        path: path.to_path_buf(),
        data_start: 8 + header_len,
        mmap,
        metadata,
    })
}

impl SafetensorsSource {
    /// The source [`SafetensorsSource::open`] makes of a folder holding one
    /// file with these contents (copied into an anonymous map): for the
    /// fuzz harness ([`crate::fuzz_harness`]), which has no files.
    pub(crate) fn from_bytes(name: &Path, bytes: &[u8]) -> Result<Self, WeightError> {
        let io = |source| WeightError::Io {
            file: name.to_path_buf(),
            source,
        };
        // memmap2 maps an empty input too (its map then reads as empty).
        let mut map = memmap2::MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        let shard = shard(name, map.make_read_only().map_err(io)?)?;
        let index = shard
            .metadata
            .tensors()
            .into_keys()
            .map(|n| (n, 0))
            .collect();
        Ok(Self {
            dir: name.to_path_buf(),
            shards: vec![shard],
            index,
        })
    }

    /// Tensor names and shapes, in the header's order.
    pub(crate) fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.shards
            .iter()
            .flat_map(|s| s.metadata.tensors())
            .map(|(name, info)| (name, info.shape.clone()))
            .collect()
    }
}

fn torch_kind(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

impl WeightSource for SafetensorsSource {
    fn file(&self) -> PathBuf {
        self.dir.clone()
    }

    fn load(&self, name: &str, _shape: &[i64]) -> Result<Tensor, WeightError> {
        let missing = || WeightError::Missing {
            file: self.dir.clone(),
            tensor: name.to_string(),
        };
        let shard = self
            .index
            .get(name)
            .and_then(|&i| self.shards.get(i))
            .ok_or_else(missing)?;
        let info = shard.metadata.info(name).ok_or_else(missing)?;
        let kind = torch_kind(info.dtype).ok_or_else(|| WeightError::Dtype {
            file: shard.path.clone(),
            tensor: name.to_string(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let (start, end) = info.data_offsets;
        let bytes = shard
            .mmap
            .get(shard.data_start + start..shard.data_start + end)
            .ok_or_else(|| WeightError::Safetensors {
                file: shard.path.clone(),
                reason: format!("tensor `{name}` lies outside the file"),
            })?;
        let shape: Vec<i64> = info.shape.iter().map(|&d| d as i64).collect();
        Tensor::f_from_data_size(bytes, &shape, kind).map_err(|source| WeightError::Torch {
            file: shard.path.clone(),
            tensor: name.to_string(),
            source,
        })
    }
}
