//! Broken model files give a clear error naming the file (and the tensor),
//! never a panic: truncated or corrupt safetensors and GGUF, a missing
//! tensor, a wrong shape, an unknown architecture.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use std::path::{Path, PathBuf};

use model_files::ModelSource;
use safetensors::tensor::{SafeTensors, TensorView};
use tch::{Device, Kind};
use workers::attention::BackendChoice;
use workers::layers::moe::ExpertPlacement;
use workers::loader::{load_model, LoadError, LoadFormat, LoadOptions, QuantizationChoice};
use workers::parallel::TpGroup;

fn copy_tiny_llama() -> tempfile::TempDir {
    let src = common::fixtures().join("tiny_llama");
    assert!(src.is_dir(), "run scripts/fixtures/llama_parity.py first");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    dir
}

fn load(path: &Path) -> Result<(), LoadError> {
    let source = ModelSource::resolve(path.to_str().unwrap()).unwrap();
    let options = LoadOptions {
        format: LoadFormat::Auto,
        device: Device::Cpu,
        kind: Kind::Float,
        seed: 0,
        attention_backend: BackendChoice::Auto,
        hf_overrides: None,
        quantization: QuantizationChoice::None,
        expert_placement: ExpertPlacement::SplitIntermediate,
    };
    load_model(&source, &options, &TpGroup::single(), |_, _| {}).map(|_| ())
}

fn error_text(path: &Path) -> String {
    load(path)
        .expect_err("loading a broken model must fail")
        .to_string()
}

fn weights_file(dir: &Path) -> PathBuf {
    dir.join("model.safetensors")
}

#[test]
fn truncated_safetensors_names_the_file() {
    let dir = copy_tiny_llama();
    let file = weights_file(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    for cut in [4, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let err = error_text(dir.path());
        assert!(err.contains("model.safetensors"), "cut at {cut}: {err}");
    }
}

#[test]
fn corrupt_safetensors_header_names_the_file() {
    let dir = copy_tiny_llama();
    let file = weights_file(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8] = b'#'; // the JSON header no longer starts with `{`
    bytes[9] = b'#';
    std::fs::write(&file, &bytes).unwrap();
    let err = error_text(dir.path());
    assert!(
        err.contains("model.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
}

/// Rewrites the weights keeping only tensors `keep` accepts, reshaping
/// `reshape` if given.
fn rewrite(file: &Path, keep: impl Fn(&str) -> bool, reshape: Option<(&str, Vec<usize>)>) {
    let bytes = std::fs::read(file).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut views = Vec::new();
    for (name, view) in st.tensors() {
        if !keep(&name) {
            continue;
        }
        let shape = match &reshape {
            Some((n, s)) if *n == name => s.clone(),
            _ => view.shape().to_vec(),
        };
        views.push((
            name,
            TensorView::new(view.dtype(), shape, view.data()).unwrap(),
        ));
    }
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(file, out).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    let dir = copy_tiny_llama();
    rewrite(
        &weights_file(dir.path()),
        |n| n != "model.layers.1.mlp.up_proj.weight",
        None,
    );
    let err = error_text(dir.path());
    assert!(
        err.contains("model.layers.1.mlp.up_proj.weight") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn wrong_shape_is_named() {
    let dir = copy_tiny_llama();
    // 256 x 128 stored as 128 x 256: same bytes, wrong shape.
    rewrite(
        &weights_file(dir.path()),
        |_| true,
        Some(("model.layers.0.mlp.gate_proj.weight", vec![128, 256])),
    );
    let err = error_text(dir.path());
    assert!(
        err.contains("model.layers.0.mlp.gate_proj.weight") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn unknown_architecture_is_named() {
    let dir = copy_tiny_llama();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("LlamaForCausalLM", "MambaForCausalLM"),
    )
    .unwrap();
    let err = error_text(dir.path());
    assert!(
        err.contains("MambaForCausalLM") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn broken_gguf_names_the_file() {
    let smollm2 = ModelSource::resolve("smollm2").expect("run scripts/setup.sh");
    let bytes = std::fs::read(&smollm2.path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.gguf");
    // Cut in the tensor infos, and in the tensor data.
    for cut in [1000, bytes.len() - 4096] {
        std::fs::write(&file, &bytes[..cut]).unwrap();
        let err = error_text(&file);
        assert!(err.contains("broken.gguf"), "cut at {cut}: {err}");
    }
    // Not a GGUF at all.
    std::fs::write(&file, b"GGUX not really").unwrap();
    let err = error_text(&file);
    assert!(err.contains("broken.gguf"), "{err}");
}

#[test]
fn gguf_of_unknown_architecture_is_refused() {
    // The quantization fixture is a GGUF whose architecture is not llama.
    let file = common::fixtures().join("gguf/quants.gguf");
    assert!(file.is_file(), "run scripts/fixtures/gguf_quants.py first");
    let err = error_text(&file);
    assert!(
        err.contains("quants.gguf") && err.contains("architecture"),
        "{err}"
    );
}

#[test]
fn dummy_weights_load_at_real_shapes() {
    let dir = copy_tiny_llama();
    std::fs::remove_file(weights_file(dir.path())).unwrap();
    let source = ModelSource::resolve(dir.path().to_str().unwrap()).unwrap();
    let options = LoadOptions {
        format: LoadFormat::Dummy,
        device: Device::Cpu,
        kind: Kind::Float,
        seed: 3,
        attention_backend: BackendChoice::Auto,
        hf_overrides: None,
        quantization: QuantizationChoice::None,
        expert_placement: ExpertPlacement::SplitIntermediate,
    };
    let model = load_model(&source, &options, &TpGroup::single(), |_, _| {}).unwrap();
    assert_eq!(model.config().num_hidden_layers, 2);
}
