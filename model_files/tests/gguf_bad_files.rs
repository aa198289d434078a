//! Corrupt and hostile GGUF files: each must give an error whose message
//! names the file (and the key or tensor), never a panic or a huge
//! allocation. Files are built byte by byte so each test breaks one field.

// Helpers outside #[test] fns unwrap too: a failed fixture setup is a test failure.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use model_files::gguf::{GgmlType, GgufError, GgufFile, GgufValue};

const STRING: u32 = 8;
const ARRAY: u32 = 9;
const U32: u32 = 4;
const F32_TYPE: u32 = 0;
const F16_TYPE: u32 = 1;

fn gguf_string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

fn kv(key: &[u8], type_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = gguf_string(key);
    out.extend_from_slice(&type_id.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn array_header(elem_type: u32, count: u64) -> Vec<u8> {
    let mut out = elem_type.to_le_bytes().to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out
}

fn u32_array(values: &[u32]) -> Vec<u8> {
    let mut out = array_header(U32, values.len() as u64);
    values
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

fn tensor_info(name: &[u8], dims: &[u64], type_id: u32, offset: u64) -> Vec<u8> {
    let mut out = gguf_string(name);
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    dims.iter()
        .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
    out.extend_from_slice(&type_id.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out
}

/// A small valid file: two metadata entries, an F32 4x2 tensor `w` holding
/// 0..8 and an F16 tensor `h` of 32 ones. Tests change fields, then build.
#[derive(Clone)]
struct Gguf {
    magic: [u8; 4],
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<Vec<u8>>,
    infos: Vec<Vec<u8>>,
    data: Vec<u8>,
}

/// Byte offsets where each section of a built file ends.
struct Layout {
    header: usize,
    metadata: usize,
    infos: usize,
    data_start: usize,
}

impl Gguf {
    fn valid() -> Self {
        let mut data: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        data.extend((0..32).flat_map(|_| half::f16::ONE.to_le_bytes()));
        Gguf {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![
                kv(b"general.architecture", STRING, &gguf_string(b"test")),
                kv(b"test.arr", ARRAY, &u32_array(&[1, 2, 3])),
            ],
            infos: vec![
                tensor_info(b"w", &[4, 2], F32_TYPE, 0),
                tensor_info(b"h", &[32], F16_TYPE, 32),
            ],
            data,
        }
    }

    fn build(&self) -> (Vec<u8>, Layout) {
        let mut out = self.magic.to_vec();
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(
            &self
                .n_tensors
                .unwrap_or(self.infos.len() as u64)
                .to_le_bytes(),
        );
        out.extend_from_slice(&self.n_kv.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        let header = out.len();
        self.kvs.iter().for_each(|kv| out.extend_from_slice(kv));
        let metadata = out.len();
        self.infos
            .iter()
            .for_each(|info| out.extend_from_slice(info));
        let infos = out.len();
        out.resize(infos.next_multiple_of(32), 0);
        let data_start = out.len();
        out.extend_from_slice(&self.data);
        (
            out,
            Layout {
                header,
                metadata,
                infos,
                data_start,
            },
        )
    }
}

/// Writes `bytes` to a temporary `model.gguf` and opens it.
fn open(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, Result<GgufFile, GgufError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    let result = GgufFile::open(&path);
    (dir, path, result)
}

/// Opens `bytes`, expecting an error whose message names the file and
/// contains every one of `needles`.
fn open_err(bytes: &[u8], needles: &[&str]) -> GgufError {
    let (_dir, path, result) = open(bytes);
    let err = result.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "no path in: {msg}"
    );
    for needle in needles {
        assert!(msg.contains(needle), "{needle:?} not in: {msg}");
    }
    err
}

#[test]
fn the_valid_base_file_opens_and_decodes() {
    let (bytes, layout) = Gguf::valid().build();
    let (_dir, path, result) = open(&bytes);
    let file = result.unwrap();
    assert_eq!(file.path(), path);
    assert_eq!(file.version, 3);
    assert_eq!(file.architecture().unwrap(), "test");
    assert_eq!(
        file.get("test.arr"),
        Some(&GgufValue::Array(vec![
            GgufValue::U32(1),
            GgufValue::U32(2),
            GgufValue::U32(3)
        ]))
    );
    let w = file.tensor("w").unwrap();
    assert_eq!(
        (w.offset, w.n_bytes, w.torch_shape()),
        (layout.data_start as u64, 32, vec![2, 4])
    );
    assert_eq!(
        file.dequantize("w").unwrap(),
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    );
    assert_eq!(file.dequantize("h").unwrap(), [1.0; 32]);
}

#[test]
fn every_truncation_is_a_truncated_error() {
    let (bytes, _) = Gguf::valid().build();
    for len in 0..bytes.len() {
        let err = open_err(&bytes[..len], &["truncated"]);
        assert!(
            matches!(err, GgufError::Truncated { .. }),
            "cut at {len}: {err:?}"
        );
    }
}

#[test]
fn truncation_names_what_was_being_read() {
    let (bytes, layout) = Gguf::valid().build();
    open_err(&bytes[..2], &["magic"]);
    open_err(&bytes[..layout.header - 3], &["metadata count"]);
    open_err(&bytes[..layout.header + 30], &["general.architecture"]);
    open_err(&bytes[..layout.metadata - 2], &["test.arr"]);
    open_err(&bytes[..layout.metadata + 12], &["2 tensor infos declared"]);
    open_err(&bytes[..layout.metadata + 60], &["tensor 'h'"]);
    open_err(&bytes[..layout.infos - 1], &["tensor 'h'"]);
    open_err(&bytes[..layout.data_start + 10], &["tensor 'w'"]);
    open_err(&bytes[..bytes.len() - 1], &["tensor 'h'"]);
}

#[test]
fn bad_magic_and_versions() {
    let mut file = Gguf::valid();
    file.magic = *b"GGML";
    let err = open_err(&file.build().0, &["not a GGUF file"]);
    assert!(matches!(err, GgufError::BadMagic { .. }));
    for version in [1, 4, 0x0300_0000] {
        let mut file = Gguf::valid();
        file.version = version;
        let err = open_err(&file.build().0, &["version", &version.to_string()]);
        assert!(matches!(err, GgufError::UnsupportedVersion { version: v, .. } if v == version));
    }
}

#[test]
fn unknown_value_types_name_the_key() {
    let mut file = Gguf::valid();
    file.kvs.push(kv(b"test.bad", 13, &[0; 8]));
    let err = open_err(&file.build().0, &["'test.bad'", "13"]);
    assert!(matches!(
        err,
        GgufError::UnknownValueType { type_id: 13, .. }
    ));

    let mut file = Gguf::valid();
    file.kvs
        .push(kv(b"test.bad_array", ARRAY, &array_header(99, 1)));
    let err = open_err(&file.build().0, &["'test.bad_array'", "99"]);
    assert!(matches!(
        err,
        GgufError::UnknownValueType { type_id: 99, .. }
    ));
}

#[test]
fn unknown_tensor_type_names_the_tensor() {
    let mut file = Gguf::valid();
    file.infos[1] = tensor_info(b"h", &[32], 31, 32);
    let err = open_err(&file.build().0, &["tensor 'h'", "31"]);
    assert!(matches!(
        err,
        GgufError::UnknownTensorType { type_id: 31, .. }
    ));
}

#[test]
fn tensor_data_outside_the_file() {
    let mut file = Gguf::valid();
    file.infos[1] = tensor_info(b"h", &[32], F16_TYPE, 4096);
    open_err(&file.build().0, &["tensor 'h'", "beyond the end"]);

    let mut file = Gguf::valid();
    file.infos[1] = tensor_info(b"h", &[32], F16_TYPE, u64::MAX - 31);
    open_err(&file.build().0, &["tensor 'h'"]);
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let huge = 1u64 << 60;
    let mut file = Gguf::valid();
    file.kvs
        .push(kv(b"test.huge", ARRAY, &array_header(U32, huge)));
    let err = open_err(&file.build().0, &["'test.huge'", &huge.to_string()]);
    assert!(matches!(err, GgufError::Truncated { .. }));

    let mut file = Gguf::valid();
    file.kvs
        .push(kv(b"test.huge_string", STRING, &huge.to_le_bytes()));
    open_err(&file.build().0, &["'test.huge_string'"]);

    let mut file = Gguf::valid();
    file.n_kv = Some(huge);
    open_err(&file.build().0, &["metadata entries"]);

    let mut file = Gguf::valid();
    file.n_tensors = Some(huge);
    open_err(&file.build().0, &["tensor infos"]);

    let mut file = Gguf::valid();
    file.infos[0] = tensor_info(b"w", &[1 << 40, 1 << 40], F32_TYPE, 0);
    let err = open_err(&file.build().0, &["tensor 'w'", "overflows"]);
    assert!(matches!(err, GgufError::BadTensor { .. }));
}

#[test]
fn malformed_tensor_infos_name_the_tensor() {
    let cases: [(&[u64], u32, u64, &str); 4] = [
        (&[4, 2], F32_TYPE, 3, "not a multiple of the alignment"),
        (&[33], 2, 0, "block size 32"),
        (&[1, 1, 1, 1, 1], F32_TYPE, 0, "5 dimensions"),
        (&[1 << 63], 24, 0, "too large"),
    ];
    for (dims, type_id, offset, reason) in cases {
        let mut file = Gguf::valid();
        file.infos[0] = tensor_info(b"w", dims, type_id, offset);
        let err = open_err(&file.build().0, &["tensor 'w'", reason]);
        assert!(matches!(err, GgufError::BadTensor { .. }), "{err:?}");
    }

    let mut file = Gguf::valid();
    file.infos[1] = tensor_info(b"w", &[32], F16_TYPE, 32);
    open_err(&file.build().0, &["tensor 'w'", "twice"]);
}

#[test]
fn malformed_metadata_names_the_key() {
    let mut file = Gguf::valid();
    file.kvs.push(kv(b"test.arr", U32, &7u32.to_le_bytes()));
    let err = open_err(&file.build().0, &["'test.arr'", "twice"]);
    assert!(matches!(err, GgufError::BadMetadata { .. }));

    let mut file = Gguf::valid();
    file.kvs
        .push(kv(b"general.alignment", U32, &24u32.to_le_bytes()));
    open_err(&file.build().0, &["'general.alignment'", "power-of-two"]);

    let mut nested = Vec::new();
    for _ in 0..100 {
        nested.extend(array_header(ARRAY, 1));
    }
    nested.extend(u32_array(&[1]));
    let mut file = Gguf::valid();
    file.kvs.push(kv(b"test.deep", ARRAY, &nested));
    open_err(&file.build().0, &["'test.deep'", "nested"]);
}

#[test]
fn invalid_utf8_is_named() {
    let mut file = Gguf::valid();
    file.kvs.push(kv(b"test.\xff", U32, &1u32.to_le_bytes()));
    open_err(&file.build().0, &["key of metadata entry #2", "UTF-8"]);

    let mut file = Gguf::valid();
    file.kvs
        .push(kv(b"test.text", STRING, &gguf_string(b"\xc3")));
    open_err(&file.build().0, &["'test.text'", "UTF-8"]);

    let mut file = Gguf::valid();
    file.infos[1] = tensor_info(b"\xfe", &[32], F16_TYPE, 32);
    let err = open_err(&file.build().0, &["name of tensor #1", "UTF-8"]);
    assert!(matches!(err, GgufError::InvalidUtf8 { .. }));
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.gguf");
    let err = GgufFile::open(&path).unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn a_type_without_dequantizer_opens_but_fails_to_decode() {
    let mut file = Gguf::valid();
    // IQ4_NL (id 20): one 32-element block of 18 bytes, inside `h`'s data.
    file.infos[1] = tensor_info(b"h", &[32], 20, 32);
    let (bytes, _) = file.build();
    let (_dir, path, result) = open(&bytes);
    let file = result.unwrap();
    assert_eq!(file.tensor("h").unwrap().ggml_type, GgmlType::IQ4_NL);
    let err = file.dequantize("h").unwrap_err();
    assert!(matches!(
        err,
        GgufError::UnsupportedTensorType {
            ggml_type: GgmlType::IQ4_NL,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains("'h'"),
        "{msg}"
    );
}
