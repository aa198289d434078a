//! Random weights at a model's real shapes, for benchmarks and for
//! architectures whose checkpoints we do not have. Deterministic per
//! (seed, tensor name), so two processes (tensor-parallel ranks) agree.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

use super::{WeightError, WeightSource};

/// Makes each requested tensor from a seeded normal distribution (std
/// 0.02, as HF's `initializer_range`), and norm weights as ones.
pub struct DummySource {
    seed: u64,
}

impl DummySource {
    /// A source whose tensors depend only on `seed` and their names.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }
}

impl WeightSource for DummySource {
    fn file(&self) -> PathBuf {
        PathBuf::from(format!("<dummy weights, seed {}>", self.seed))
    }

    fn load(&self, name: &str, shape: &[i64]) -> Result<Tensor, WeightError> {
        if name.contains("norm") {
            return Ok(Tensor::ones(shape, (Kind::Float, Device::Cpu)));
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (self.seed, name).hash(&mut hasher);
        tch::manual_seed((hasher.finish() >> 1) as i64);
        Ok(Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.02)
    }
}
