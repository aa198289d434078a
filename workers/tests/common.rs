//! Shared by the parity tests: fixture paths and logits comparison.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;

use tch::{Device, Kind, Tensor};

/// `tests/fixtures/generated`, written by `scripts/fixtures/*.py`;
/// `$ENGINE_FIXTURES` points elsewhere (a GPU machine runs these test
/// binaries away from the checkout they were built in).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("ENGINE_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/generated"
        )),
    }
}

/// Where and in what precision the parity tests run: CPU f32 by default
/// (CI); `ENGINE_TEST_DEVICE=cuda` and `ENGINE_TEST_DTYPE=bf16|f16|f32`
/// on a GPU (scripts/gpu_check.sh).
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub device: Device,
    pub kind: Kind,
}

impl Target {
    pub fn from_env() -> Self {
        let device = match std::env::var("ENGINE_TEST_DEVICE").as_deref() {
            Ok("cuda") => Device::Cuda(0),
            Ok("cpu") | Err(_) => Device::Cpu,
            Ok(other) => panic!("ENGINE_TEST_DEVICE={other}: expected cpu or cuda"),
        };
        let kind = match std::env::var("ENGINE_TEST_DTYPE").as_deref() {
            Ok("bf16") => Kind::BFloat16,
            Ok("f16") => Kind::Half,
            Ok("f32") | Err(_) => Kind::Float,
            Ok(other) => panic!("ENGINE_TEST_DTYPE={other}: expected f32, bf16 or f16"),
        };
        Self { device, kind }
    }

    /// The tolerance on |Δlogit| against an f32 reference whose largest
    /// |logit| is `scale`: the test's own `f32_tol` in f32; in half
    /// precision a fraction of the logits' scale, since every layer rounds
    /// to 8 (bf16) or 11 (f16) significant bits: 8% for bf16 (SmolLM2 in
    /// bf16 on CPU: under 4%), 1% for f16.
    pub fn tol(&self, f32_tol: f32, scale: f32) -> f32 {
        match self.kind {
            Kind::BFloat16 => 0.08 * scale.max(1.0),
            Kind::Half => 0.01 * scale.max(1.0),
            _ => f32_tol,
        }
    }

    pub fn is_exact(&self) -> bool {
        self.kind == Kind::Float
    }
}

/// Largest |x| of a logits row: the scale half-precision tolerances use.
pub fn scale(row: &[f32]) -> f32 {
    row.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Reads a JSON fixture or fails saying how to make it.
pub fn read_json(name: &str) -> serde_json::Value {
    let path = fixtures().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "fixture {} is missing ({e}): run `.venv/bin/python scripts/fixtures/llama_parity.py` \
             or scripts/test.sh",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// Largest absolute difference between our logits row and the expected one.
pub fn max_abs_diff(ours: &Tensor, expected: &[f32]) -> f32 {
    let ours = ours
        .to_device(Device::Cpu)
        .to_kind(Kind::Float)
        .flatten(0, -1);
    let ours: Vec<f32> = Vec::try_from(ours).unwrap();
    assert_eq!(ours.len(), expected.len(), "vocab size differs");
    ours.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
