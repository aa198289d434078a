//! Shared by the parity tests: fixture paths and logits comparison.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::PathBuf;

use tch::Tensor;

/// `tests/fixtures/generated`, written by `scripts/fixtures/*.py`.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/generated"
    ))
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
    let ours: Vec<f32> = Vec::try_from(ours.to_kind(tch::Kind::Float).flatten(0, -1)).unwrap();
    assert_eq!(ours.len(), expected.len(), "vocab size differs");
    ours.iter()
        .zip(expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}
