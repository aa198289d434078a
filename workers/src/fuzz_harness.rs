//! What the `safetensors` fuzz target in `fuzz/` (`scripts/fuzz.sh`) feeds
//! arbitrary bytes to, and what CI replays the committed corpus through
//! (the test below) on the stable toolchain.
//!
//! The function must return for every input (an `Err` is fine): a panic,
//! an abort or an unbounded allocation is a bug in the loader.

use std::path::Path;

use tch::{Device, Kind};

use crate::weights::{SafetensorsSource, Shard, Weights};

/// At most this many tensors are loaded per input (each load is linear in
/// its bytes; the cap keeps one input's work near its size).
const MAX_TENSORS_LOADED: usize = 64;

/// A `model.safetensors` file through the loader path a model uses: the
/// header validated as [`SafetensorsSource::open`] does, then every tensor
/// loaded as stored, and through [`Weights::get`] checked against its own
/// shape, converted to f32 and split in two along its first dimension (a
/// tensor-parallel shard).
pub fn safetensors(data: &[u8]) {
    let Ok(source) = SafetensorsSource::from_bytes(Path::new("fuzz.safetensors"), data) else {
        return;
    };
    let tensors = source.tensor_shapes();
    let weights = Weights::new(Box::new(source), Device::Cpu, Kind::Float);
    for (name, shape) in tensors.iter().take(MAX_TENSORS_LOADED) {
        let shape: Vec<i64> = shape
            .iter()
            .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
            .collect();
        let _ = weights.get(name, &shape, None);
        let half = Shard {
            dim: 0,
            rank: 1,
            world_size: 2,
        };
        let _ = weights.get(name, &shape, Some(half));
    }
}

/// Loads one tensor as stored, for the replay test's own check.
#[cfg(test)]
fn load_raw(data: &[u8], name: &str) -> Option<tch::Tensor> {
    use crate::weights::WeightSource;
    SafetensorsSource::from_bytes(Path::new("t"), data)
        .ok()?
        .load(name, &[])
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::PathBuf;

    /// Every file of `fuzz/corpus/<target>/`: seeds, the minimized corpus
    /// of past runs and every crash input found so far.
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

    #[test]
    fn safetensors_corpus_replays_without_panics() {
        for (path, bytes) in corpus("safetensors") {
            eprintln!("{}", path.display());
            safetensors(&bytes);
        }
    }

    /// A safetensors file with one F32 tensor `w` of `shape` and `values`.
    fn file(shape: &str, values: &[f32]) -> Vec<u8> {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":{shape},"data_offsets":[0,{}]}}}}"#,
            values.len() * 4
        );
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        for v in values {
            file.extend_from_slice(&v.to_le_bytes());
        }
        file
    }

    #[test]
    fn a_valid_file_loads_from_bytes() {
        let t = load_raw(&file("[2]", &[1.5, -2.0]), "w").unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![1.5, -2.0]);
        assert!(load_raw(&[], "w").is_none());
    }

    #[test]
    fn sharding_a_tensor_without_that_dimension_is_an_error() {
        // Found writing the fuzz harness: `Weights::get` narrowed with
        // tch's panicking `narrow`, so a scalar asked for as a shard
        // aborted the process.
        let bytes = file("[]", &[3.0]);
        safetensors(&bytes);
        let source = SafetensorsSource::from_bytes(Path::new("t"), &bytes).unwrap();
        let weights = Weights::new(Box::new(source), Device::Cpu, Kind::Float);
        let half = Shard {
            dim: 0,
            rank: 0,
            world_size: 2,
        };
        let err = weights.get("w", &[], Some(half)).unwrap_err();
        assert!(
            matches!(err, crate::weights::WeightError::Torch { .. }),
            "{err}"
        );
    }
}
