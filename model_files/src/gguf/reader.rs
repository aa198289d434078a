//! Parsing and validating a memory-mapped GGUF file: header, metadata,
//! tensor infos and data placement, all checked once in [`GgufFile::open`]
//! so later accessors cannot fail on a malformed file.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};

use super::dequant;
use super::error::GgufError;
use super::int4::{self, Int4Groups};
use super::types::GgmlType;
use super::value::GgufValue;

/// The four bytes every GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";
/// Alignment of the data section when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Arrays of arrays are legal but nobody nests deeply; the cap keeps a
/// corrupt file from exhausting the stack through recursion.
const MAX_ARRAY_DEPTH: u32 = 8;
/// Smallest encodings, used to reject counts the remaining bytes cannot
/// hold before anything is allocated: a metadata entry is at least an empty
/// key (8) and a type (4) and a one-byte value; a tensor info at least an
/// empty name (8), a dimension count (4), a type (4) and an offset (8).
const MIN_KV_BYTES: u64 = 13;
const MIN_TENSOR_INFO_BYTES: u64 = 24;

/// One tensor's entry in the file: where its bytes are and how to read them.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// The GGUF tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` varies fastest (ggml's `ne`).
    pub dims: Vec<u64>,
    /// Element encoding of the data.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements, the product of `dims` (1 for a scalar).
    /// Saturates instead of overflowing; [`GgufFile::open`] rejects tensors
    /// where that could happen.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |n, &d| n.saturating_mul(d))
    }

    /// The row-major (torch, numpy) shape: `dims` reversed, because GGUF
    /// lists the fastest-varying dimension first. Dimensions are at most
    /// `i64::MAX` in files [`GgufFile::open`] accepts.
    pub fn torch_shape(&self) -> Vec<i64> {
        self.dims
            .iter()
            .rev()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect()
    }
}

/// An open, fully validated GGUF file, memory-mapped so tensor bytes are
/// read straight from the page cache without copying.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    mmap: Mmap,
    /// Tensor name to position in `tensors`.
    index: HashMap<String, usize>,
    /// GGUF format version (2 or 3).
    pub version: u32,
    /// All metadata, sorted by key.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
}

impl GgufFile {
    /// Memory-maps and validates `path`: magic, version, every metadata
    /// entry, every tensor info, `general.alignment`, and that every
    /// tensor's data lies inside the file, so a corrupt download fails here
    /// with the file and key or tensor named rather than later in a model.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only and lives as long as `self`. Model
        // files are not modified while being served; if another process
        // truncates the file anyway, reads fault (SIGBUS) as with any mmap
        // reader such as llama.cpp. We accept that for zero-copy loading.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = Parser::new(&path, &mmap).parse()?;
        Ok(GgufFile {
            path,
            mmap,
            index: parsed.index,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
        })
    }

    /// Validates `bytes` as [`GgufFile::open`] validates a file's
    /// contents, naming `path` in errors. The bytes are copied into an
    /// anonymous map, so the fuzz harness ([`crate::fuzz_harness`]) drives
    /// exactly the parser and accessors that `open` hands out, with no file.
    pub(crate) fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, GgufError> {
        let parsed = Parser::new(path, bytes).parse()?;
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        // A file that parsed holds at least its magic, so the map is never
        // empty (a zero-length anonymous map is an error).
        let mut map = MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(bytes);
        let mmap = map.make_read_only().map_err(io)?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            mmap,
            index: parsed.index,
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
        })
    }

    /// The path the file was opened from, for the caller's own messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// A required string value (`MissingKey` / `WrongType` otherwise).
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        self.require(key)?
            .as_str()
            .ok_or_else(|| self.wrong_type(key, "a string"))
    }

    /// A required non-negative integer value of any integer width.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.require(key)?
            .as_u64()
            .ok_or_else(|| self.wrong_type(key, "a non-negative integer"))
    }

    /// A required float value (`F32` or `F64`).
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        self.require(key)?
            .as_f64()
            .ok_or_else(|| self.wrong_type(key, "a float"))
    }

    /// `general.architecture`, which prefixes the model's hyperparameter
    /// keys (e.g. `llama.block_count`).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")
    }

    /// The info of a tensor by name (`MissingTensor` otherwise).
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.index
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_owned(),
            })
    }

    /// The raw bytes of a tensor of this file (validated by `open`). An
    /// info from another file that does not fit this one yields an empty
    /// slice rather than a panic.
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let range = usize::try_from(info.offset).ok().and_then(|start| {
            let len = usize::try_from(info.n_bytes).ok()?;
            Some(start..start.checked_add(len)?)
        });
        range.and_then(|r| self.mmap.get(r)).unwrap_or(&[])
    }

    /// A tensor decoded to f32, row-major in [`TensorInfo::torch_shape`]
    /// order (which is the file's element order).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let info = self.tensor(name)?;
        let n_elements = self.element_count(name, info)?;
        dequant::dequantize(info.ggml_type, self.tensor_data(info), n_elements)
            .map_err(|e| GgufError::from_dequant(self.path.clone(), name, e))
    }

    /// The 4-bit tensor `name` in torch's int4 group format (see
    /// [`crate::gguf::int4_groups`]); other types are an error.
    pub fn int4_groups(&self, name: &str) -> Result<Int4Groups, GgufError> {
        let info = self.tensor(name)?;
        let n_elements = self.element_count(name, info)?;
        int4::int4_groups(info.ggml_type, self.tensor_data(info), n_elements)
            .map_err(|e| GgufError::from_dequant(self.path.clone(), name, e))
    }

    /// `info`'s element count as a `usize`, or why this platform cannot
    /// address it.
    fn element_count(&self, name: &str, info: &TensorInfo) -> Result<usize, GgufError> {
        usize::try_from(info.n_elements()).map_err(|_| GgufError::BadTensor {
            path: self.path.clone(),
            tensor: name.to_owned(),
            reason: "too many elements for this platform".to_owned(),
        })
    }

    fn require(&self, key: &str) -> Result<&GgufValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            path: self.path.clone(),
            key: key.to_owned(),
        })
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> GgufError {
        GgufError::WrongType {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
        }
    }
}

/// What [`Parser::parse`] extracts; the mmap stays with the caller.
struct Parsed {
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
}

/// A bounds-checked little-endian cursor over the file bytes. Every read
/// names what it reads, so truncation errors say where the file ends.
struct Parser<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(path: &'a Path, bytes: &'a [u8]) -> Self {
        Parser {
            path,
            bytes,
            pos: 0,
        }
    }

    fn parse(mut self) -> Result<Parsed, GgufError> {
        if self.array::<4>(|| "magic".to_owned())? != *MAGIC {
            return Err(GgufError::BadMagic {
                path: self.path.to_path_buf(),
            });
        }
        let version = self.u32(|| "version".to_owned())?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                path: self.path.to_path_buf(),
                version,
            });
        }
        let n_tensors = self.u64(|| "tensor count".to_owned())?;
        let n_kv = self.u64(|| "metadata count".to_owned())?;
        self.check_count(n_kv, MIN_KV_BYTES, || {
            format!("{n_kv} metadata entries declared")
        })?;

        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = self.string(|| format!("key of metadata entry #{i}"))?;
            let type_id = self.u32(|| format!("type of metadata key '{key}'"))?;
            let value = self.value(type_id, &key, 0)?;
            match metadata.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    return Err(GgufError::BadMetadata {
                        path: self.path.to_path_buf(),
                        key: slot.key().clone(),
                        reason: "appears twice".to_owned(),
                    })
                }
            }
        }
        let alignment = self.alignment(&metadata)?;

        self.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, || {
            format!("{n_tensors} tensor infos declared")
        })?;
        let mut tensors = Vec::new();
        let mut index = HashMap::new();
        for i in 0..n_tensors {
            let info = self.tensor_info(i, alignment)?;
            if index.insert(info.name.clone(), tensors.len()).is_some() {
                return Err(self.bad_tensor(&info.name, "name appears twice".to_owned()));
            }
            tensors.push(info);
        }

        // Tensor offsets are relative to the aligned start of the data
        // section, which follows the last tensor info.
        let data_start = align_up(self.pos as u64, alignment);
        let file_len = self.bytes.len() as u64;
        for info in &mut tensors {
            let start = data_start.and_then(|s| s.checked_add(info.offset));
            match start.and_then(|s| Some((s, s.checked_add(info.n_bytes)?))) {
                Some((start, end)) if end <= file_len => info.offset = start,
                _ => {
                    return Err(GgufError::Truncated {
                        path: self.path.to_path_buf(),
                        what: format!(
                            "data of tensor '{}' ({} bytes at data offset {}) lies beyond the end of the {file_len}-byte file",
                            info.name, info.n_bytes, info.offset
                        ),
                    })
                }
            }
        }
        Ok(Parsed {
            version,
            metadata,
            tensors,
            index,
        })
    }

    /// `general.alignment`: any integer type, a power of two.
    fn alignment(&self, metadata: &BTreeMap<String, GgufValue>) -> Result<u64, GgufError> {
        const KEY: &str = "general.alignment";
        match metadata.get(KEY) {
            None => Ok(DEFAULT_ALIGNMENT),
            Some(v) => {
                v.as_u64()
                    .filter(|a| a.is_power_of_two())
                    .ok_or_else(|| GgufError::BadMetadata {
                        path: self.path.to_path_buf(),
                        key: KEY.to_owned(),
                        reason: format!("{v:?} is not a power-of-two integer"),
                    })
            }
        }
    }

    /// One tensor info, with its offset still relative to the data section.
    fn tensor_info(&mut self, i: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
        let name = self.string(|| format!("name of tensor #{i}"))?;
        let n_dims = self.u32(|| format!("dimension count of tensor '{name}'"))?;
        if n_dims > MAX_DIMS {
            return Err(self.bad_tensor(&name, format!("{n_dims} dimensions (at most {MAX_DIMS})")));
        }
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            dims.push(self.u64(|| format!("dimensions of tensor '{name}'"))?);
        }
        let type_id = self.u32(|| format!("type of tensor '{name}'"))?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            path: self.path.to_path_buf(),
            tensor: name.clone(),
            type_id,
        })?;
        let offset = self.u64(|| format!("data offset of tensor '{name}'"))?;
        if offset % alignment != 0 {
            return Err(self.bad_tensor(
                &name,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        let n_bytes =
            tensor_bytes(&dims, ggml_type).map_err(|reason| self.bad_tensor(&name, reason))?;
        Ok(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        })
    }

    /// A metadata value of type `type_id` belonging to `key`; `depth` counts
    /// enclosing arrays.
    fn value(&mut self, type_id: u32, key: &str, depth: u32) -> Result<GgufValue, GgufError> {
        let what = || format!("value of metadata key '{key}'");
        Ok(match type_id {
            0 => GgufValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => GgufValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => GgufValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => GgufValue::Bool(self.array::<1>(what)? != [0]),
            8 => GgufValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::BadMetadata {
                        path: self.path.to_path_buf(),
                        key: key.to_owned(),
                        reason: format!("arrays nested more than {MAX_ARRAY_DEPTH} deep"),
                    });
                }
                let elem_type = self.u32(|| format!("array type of metadata key '{key}'"))?;
                let count = self.u64(|| format!("array length of metadata key '{key}'"))?;
                let min_size =
                    min_value_bytes(elem_type).ok_or_else(|| GgufError::UnknownValueType {
                        path: self.path.to_path_buf(),
                        key: key.to_owned(),
                        type_id: elem_type,
                    })?;
                self.check_count(count, min_size, || {
                    format!("array of {count} elements in metadata key '{key}'")
                })?;
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(elem_type, key, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(what)?)),
            _ => {
                return Err(GgufError::UnknownValueType {
                    path: self.path.to_path_buf(),
                    key: key.to_owned(),
                    type_id,
                })
            }
        })
    }

    /// Rejects a count of items of at least `min_size` bytes each that the
    /// rest of the file cannot hold, before anything is allocated for them.
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: impl FnOnce() -> String,
    ) -> Result<(), GgufError> {
        let remaining = self.bytes.len().saturating_sub(self.pos) as u64;
        if count > remaining / min_size {
            return Err(self.truncated(what()));
        }
        Ok(())
    }

    /// A GGUF string: u64 length, then UTF-8 bytes.
    fn string(&mut self, what: impl Fn() -> String) -> Result<String, GgufError> {
        let len = self.u64(&what)?;
        let bytes = usize::try_from(len)
            .ok()
            .and_then(|len| self.bytes.get(self.pos..self.pos.checked_add(len)?))
            .ok_or_else(|| self.truncated(what()))?;
        self.pos += bytes.len();
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| GgufError::InvalidUtf8 {
                path: self.path.to_path_buf(),
                what: what(),
            })
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// The next `N` bytes.
    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], GgufError> {
        let bytes = self
            .bytes
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<N>)
            .ok_or_else(|| self.truncated(what()))?;
        self.pos += N;
        Ok(*bytes)
    }

    fn truncated(&self, what: String) -> GgufError {
        GgufError::Truncated {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn bad_tensor(&self, tensor: &str, reason: String) -> GgufError {
        GgufError::BadTensor {
            path: self.path.to_path_buf(),
            tensor: tensor.to_owned(),
            reason,
        }
    }
}

/// Bytes of the smallest encoding of a value of `type_id` (an empty string
/// or array still has its length), or `None` for an unknown type.
fn min_value_bytes(type_id: u32) -> Option<u64> {
    Some(match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

/// The data size of a tensor, after checking its shape: each dimension a
/// valid torch size, the row length a whole number of blocks, no overflow.
fn tensor_bytes(dims: &[u64], ggml_type: GgmlType) -> Result<u64, String> {
    if let Some(d) = dims.iter().find(|&&d| i64::try_from(d).is_err()) {
        return Err(format!("dimension {d} is too large"));
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format!("element count of dimensions {dims:?} overflows"))?;
    let block_size = ggml_type.block_size() as u64;
    let row = dims.first().copied().unwrap_or(1);
    if row % block_size != 0 {
        return Err(format!(
            "row length {row} is not a multiple of the {ggml_type:?} block size {block_size}"
        ));
    }
    (n_elements / block_size)
        .checked_mul(ggml_type.type_size() as u64)
        .ok_or_else(|| format!("byte size of dimensions {dims:?} overflows"))
}

/// `pos` rounded up to a multiple of `alignment` (a power of two).
fn align_up(pos: u64, alignment: u64) -> Option<u64> {
    Some(pos.checked_add(alignment - 1)? & !(alignment - 1))
}
