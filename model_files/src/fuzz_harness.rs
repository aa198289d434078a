//! What the fuzz targets in `fuzz/` (cargo-fuzz, `scripts/fuzz.sh`) feed
//! arbitrary bytes to, and what CI replays the committed corpus through
//! (the test below), so a crash the fuzzer once found stays fixed on the
//! stable toolchain.
//!
//! Each function must return (any `Err` is fine) for every input: a panic,
//! an abort, a hang or an unbounded allocation is a bug in the code under
//! test, never in the harness. They are plain public functions (not behind
//! a cargo feature) so clippy and the unit tests always build them.

use std::path::Path;

use crate::gguf::{self, GgmlType, GgufFile};
use crate::ModelConfig;

/// At most this many tensors are decoded per input: a file may list many
/// tensor infos pointing at the same bytes, and decoding each is linear
/// anyway; the cap keeps one input's work near its size.
const MAX_TENSORS_DECODED: usize = 64;

/// A GGUF file: the container parser, then what the engine and the workers
/// do with an accepted file (the Llama config rebuilt from metadata, every
/// tensor dequantized).
pub fn gguf(data: &[u8]) {
    let Ok(file) = GgufFile::from_bytes(Path::new("fuzz.gguf"), data) else {
        return;
    };
    let _ = ModelConfig::from_gguf(&file);
    let _ = file.architecture();
    for info in file.tensors.iter().take(MAX_TENSORS_DECODED) {
        let _ = info.torch_shape();
        let _ = file.tensor_data(info);
        let _ = file.dequantize(&info.name);
    }
}

/// One dequantizer on raw block bytes: `data[0]` picks the ggml type,
/// `data[1]` nudges the element count off the exact fit (0 keeps it), the
/// rest is the tensor's bytes. The 4-bit types also go through their int4
/// re-expression ([`gguf::int4_groups`], what `--quantization gguf`
/// loads), which must accept exactly what the dequantizer accepts and
/// give the same weights, up to f32 rounding of each group's zero.
pub fn dequantize(data: &[u8]) {
    let [type_id, nudge, bytes @ ..] = data else {
        return;
    };
    let Some(ggml_type) = GgmlType::from_id(u32::from(*type_id)) else {
        return;
    };
    let exact = bytes.len() / ggml_type.type_size().max(1) * ggml_type.block_size();
    let n_elements = match *nudge {
        0 => exact,
        n if n % 2 == 1 => exact.saturating_add(usize::from(n)),
        n => exact.saturating_sub(usize::from(n)),
    };
    let dequantized = gguf::dequantize(ggml_type, bytes, n_elements);
    if !gguf::maps_to_int4(ggml_type) {
        return;
    }
    let groups = gguf::int4_groups(ggml_type, bytes, n_elements);
    assert_eq!(
        dequantized.is_ok(),
        groups.is_ok(),
        "{ggml_type:?}, {n_elements} elements: dequantize and int4_groups disagree on whether \
         the bytes are valid"
    );
    if let (Ok(weights), Ok(groups)) = (dequantized, groups) {
        assert_int4_matches(&weights, &groups);
    }
}

/// `(q - 8) * scale + zero` of every weight in `groups` equals `weights`
/// within a few f32 ulps of the group's terms (non-finite groups, which
/// arbitrary f16 scales make, are skipped).
fn assert_int4_matches(weights: &[f32], groups: &gguf::Int4Groups) {
    assert_eq!(groups.values.len(), weights.len(), "one value per weight");
    for (i, (&want, &q)) in weights.iter().zip(&groups.values).enumerate() {
        let group = i / gguf::INT4_GROUP_SIZE;
        let (scale, zero) = (groups.scales[group], groups.zeros[group]);
        assert!(q < 16, "weight {i}: value {q} is not 4-bit");
        let got = (f32::from(q) - 8.0) * scale + zero;
        if !(want.is_finite() && got.is_finite() && scale.is_finite() && zero.is_finite()) {
            continue;
        }
        let size = 8.0 * scale.abs() + zero.abs() + want.abs();
        assert!(
            (got - want).abs() <= 8.0 * f32::EPSILON * size,
            "weight {i}: int4 form gives {got}, the dequantizer {want} (scale {scale}, zero {zero})"
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::path::PathBuf;

    /// Every file of `fuzz/corpus/<target>/`: the seeds, the minimized
    /// corpus of past runs and every crash input found so far.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    use super::*;

    #[test]
    fn gguf_corpus_replays_without_panics() {
        for (path, bytes) in corpus("gguf") {
            eprintln!("{}", path.display());
            gguf(&bytes);
        }
    }

    #[test]
    fn a_file_in_memory_opens_like_one_on_disk() {
        let mut b = b"GGUF".to_vec();
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata entries
        let key = b"general.architecture";
        b.extend((key.len() as u64).to_le_bytes());
        b.extend(key);
        b.extend(8u32.to_le_bytes()); // string
        b.extend(5u64.to_le_bytes());
        b.extend(b"llama");
        let file = GgufFile::from_bytes(Path::new("mem.gguf"), &b).unwrap();
        assert_eq!(file.architecture().unwrap(), "llama");
        let err = GgufFile::from_bytes(Path::new("mem.gguf"), &b[..b.len() - 1]).unwrap_err();
        assert!(err.to_string().contains("mem.gguf"), "{err}");
    }

    #[test]
    fn dequantize_corpus_replays_without_panics() {
        for (path, bytes) in corpus("dequantize") {
            eprintln!("{}", path.display());
            dequantize(&bytes);
        }
    }
}
