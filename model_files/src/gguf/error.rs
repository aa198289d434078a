//! The reader's error type: every variant names the file, and the key or
//! tensor involved, because a user with several model files needs to know
//! which one is broken and where.

use std::path::PathBuf;

use super::dequant::DequantError;
use super::types::GgmlType;

/// Why a GGUF file could not be opened or a tensor not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, stat-ed or memory-mapped.
    #[error("{}: {source}", path.display())]
    Io {
        /// The GGUF file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file ends before something it declares (or claims a count too
    /// large for the bytes left, e.g. a corrupt array length).
    #[error("{}: file is truncated: {what}", path.display())]
    Truncated {
        /// The GGUF file.
        path: PathBuf,
        /// What was being read, naming the key or tensor.
        what: String,
    },
    /// The first four bytes are not `GGUF`.
    #[error("{}: not a GGUF file (bad magic)", path.display())]
    BadMagic {
        /// The file.
        path: PathBuf,
    },
    /// Only GGUF versions 2 and 3 (64-bit counts) are read.
    #[error("{}: unsupported GGUF version {version} (expected 2 or 3)", path.display())]
    UnsupportedVersion {
        /// The GGUF file.
        path: PathBuf,
        /// The version field as read little-endian.
        version: u32,
    },
    /// A metadata value (or array element) has a type id outside 0..=12.
    #[error("{}: metadata key '{key}' has unknown value type {type_id}", path.display())]
    UnknownValueType {
        /// The GGUF file.
        path: PathBuf,
        /// The key whose value could not be read.
        key: String,
        /// The type id found.
        type_id: u32,
    },
    /// A tensor declares a ggml type id that ggml does not assign.
    #[error("{}: tensor '{tensor}' has unknown ggml type id {type_id}", path.display())]
    UnknownTensorType {
        /// The GGUF file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// The type id found.
        type_id: u32,
    },
    /// The tensor's type is valid but we have no dequantizer for it.
    #[error("{}: tensor '{tensor}' has type {ggml_type:?}, which cannot be dequantized", path.display())]
    UnsupportedTensorType {
        /// The GGUF file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Its type.
        ggml_type: GgmlType,
    },
    /// A tensor's info is inconsistent (shape, offset, duplicate name, ...).
    #[error("{}: tensor '{tensor}': {reason}", path.display())]
    BadTensor {
        /// The GGUF file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// A metadata entry is malformed (duplicate key, invalid alignment,
    /// arrays nested too deep).
    #[error("{}: metadata key '{key}': {reason}", path.display())]
    BadMetadata {
        /// The GGUF file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A key, string value or tensor name is not UTF-8.
    #[error("{}: {what} is not valid UTF-8", path.display())]
    InvalidUtf8 {
        /// The GGUF file.
        path: PathBuf,
        /// Which string, naming the key or tensor (by index when it is the
        /// name itself that is unreadable).
        what: String,
    },
    /// A required metadata key is absent.
    #[error("{}: missing metadata key '{key}'", path.display())]
    MissingKey {
        /// The GGUF file.
        path: PathBuf,
        /// The key asked for.
        key: String,
    },
    /// A metadata key holds a value of another type than asked for.
    #[error("{}: metadata key '{key}' is not {expected}", path.display())]
    WrongType {
        /// The GGUF file.
        path: PathBuf,
        /// The key asked for.
        key: String,
        /// The type asked for, in words.
        expected: &'static str,
    },
    /// No tensor of that name in the file.
    #[error("{}: no tensor named '{tensor}'", path.display())]
    MissingTensor {
        /// The GGUF file.
        path: PathBuf,
        /// The name asked for.
        tensor: String,
    },
}

impl GgufError {
    /// Attaches file and tensor to a dequantization failure, keeping an
    /// unsupported type distinguishable from a malformed tensor.
    pub(super) fn from_dequant(path: PathBuf, tensor: &str, err: DequantError) -> Self {
        match err {
            DequantError::Unsupported(ggml_type) => GgufError::UnsupportedTensorType {
                path,
                tensor: tensor.to_owned(),
                ggml_type,
            },
            other => GgufError::BadTensor {
                path,
                tensor: tensor.to_owned(),
                reason: other.to_string(),
            },
        }
    }
}
