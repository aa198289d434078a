//! The GGUF reader against gguf-py: every dequantizer bit for bit, and every
//! metadata value type, on the fixture `scripts/fixtures/gguf_quants.py`
//! writes.

// Helpers outside #[test] fns unwrap too: a failed fixture setup is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use model_files::gguf::{dequantize, DequantError, GgmlType, GgufError, GgufFile, GgufValue};

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/generated/gguf"
);

fn fixture_path(name: &str) -> PathBuf {
    let path = Path::new(FIXTURES).join(name);
    assert!(
        path.exists(),
        "missing fixture {}: run `.venv/bin/python scripts/fixtures/gguf_quants.py` (or scripts/test.sh)",
        path.display()
    );
    path
}

fn open_fixture() -> GgufFile {
    GgufFile::open(fixture_path("quants.gguf")).unwrap()
}

#[test]
fn every_type_dequantizes_bit_exact_with_gguf_py() {
    let file = open_fixture();
    let names: Vec<&str> = file.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"]
    );
    for info in &file.tensors {
        assert_eq!(format!("{:?}", info.ggml_type).to_lowercase(), info.name);
        assert_eq!(info.offset % 64, 0, "{} is not 64-byte aligned", info.name);
        let expected_shape: &[i64] = if info.name == "f32" {
            &[3, 2, 256]
        } else {
            &[3, 512]
        };
        assert_eq!(info.torch_shape(), expected_shape, "{}", info.name);
        assert_eq!(info.n_elements(), 1536);

        let expected: Vec<u32> =
            std::fs::read(fixture_path(&format!("expected/{}.f32", info.name)))
                .unwrap()
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
        let got = file.dequantize(&info.name).unwrap();
        assert_eq!(got.len(), expected.len(), "{}", info.name);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                g.to_bits(),
                *e,
                "{} element {i}: got {g:e}, gguf-py {:e}",
                info.name,
                f32::from_bits(*e)
            );
        }
    }
}

#[test]
fn metadata_round_trips_every_value_type() {
    let file = open_fixture();
    use GgufValue::*;
    let expected = [
        ("general.architecture", String("test".into())),
        ("general.alignment", U32(64)),
        ("test.u8", U8(200)),
        ("test.i8", I8(-100)),
        ("test.u16", U16(60000)),
        ("test.i16", I16(-30000)),
        ("test.u32", U32(4_000_000_000)),
        ("test.i32", I32(-2_000_000_000)),
        ("test.u64", U64((1 << 63) + 5)),
        ("test.i64", I64(-(1 << 62))),
        ("test.f32", F32(0.1)),
        ("test.f64", F64(0.1)),
        ("test.bool", Bool(true)),
        ("test.string", String("héllo ✓".into())),
        ("test.empty_string", String("".into())),
        ("test.array_i32", Array(vec![I32(1), I32(-2), I32(3)])),
        ("test.array_u8", Array(vec![U8(0), U8(255)])),
        ("test.array_f32", Array(vec![F32(0.5), F32(-1.25)])),
        ("test.array_bool", Array(vec![Bool(true), Bool(false)])),
        (
            "test.array_string",
            Array(vec![
                String("a".into()),
                String("".into()),
                String("ü".into()),
            ]),
        ),
        (
            "test.array_nested",
            Array(vec![Array(vec![I32(1), I32(2)]), Array(vec![I32(3)])]),
        ),
    ];
    for (key, value) in &expected {
        assert_eq!(file.get(key), Some(value), "{key}");
    }
    assert_eq!(file.metadata.len(), expected.len());
    assert_eq!(file.version, 3);
}

#[test]
fn typed_getters_name_the_file_and_key() {
    let file = open_fixture();
    assert_eq!(file.architecture().unwrap(), "test");
    assert_eq!(file.get_u64("test.u16").unwrap(), 60000);
    assert_eq!(file.get_u64("test.u64").unwrap(), (1 << 63) + 5);
    assert_eq!(file.get_f64("test.f32").unwrap(), f64::from(0.1f32));
    assert_eq!(file.get_str("test.string").unwrap(), "héllo ✓");

    let path = file.path().display().to_string();
    let err = file.get_u64("test.i8").unwrap_err();
    assert!(matches!(err, GgufError::WrongType { ref key, .. } if key == "test.i8"));
    let msg = err.to_string();
    assert!(msg.contains(&path) && msg.contains("test.i8"), "{msg}");

    let err = file.get_str("llama.block_count").unwrap_err();
    assert!(matches!(err, GgufError::MissingKey { .. }));
    assert!(err.to_string().contains("llama.block_count"));

    let err = file.dequantize("nope").unwrap_err();
    assert!(matches!(err, GgufError::MissingTensor { .. }));
    let msg = err.to_string();
    assert!(msg.contains(&path) && msg.contains("'nope'"), "{msg}");
}

#[test]
fn free_dequantize_checks_lengths_and_types() {
    assert_eq!(
        dequantize(GgmlType::Q4_K, &[0; 143], 256),
        Err(DequantError::BadLength {
            ggml_type: GgmlType::Q4_K,
            n_elements: 256,
            expected: 144,
            actual: 143,
        })
    );
    assert!(matches!(
        dequantize(GgmlType::Q8_0, &[0; 34], 31),
        Err(DequantError::NotBlockMultiple { block_size: 32, .. })
    ));
    assert_eq!(
        dequantize(GgmlType::IQ2_XXS, &[0; 66], 256),
        Err(DequantError::Unsupported(GgmlType::IQ2_XXS))
    );
    assert_eq!(dequantize(GgmlType::Q6_K, &[], 0), Ok(vec![]));
}
