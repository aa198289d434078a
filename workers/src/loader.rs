//! From a resolved model source and load options to a ready model: reads
//! the config, opens the right weight container, and builds the model.

use std::sync::Arc;

use model_files::config::ConfigError;
use model_files::gguf::GgufFile;
use model_files::{LlamaConfig, ModelFormat, ModelSource};
use tch::{Device, Kind};

use crate::attention::TorchRefBackend;
use crate::models::llama::{LlamaModel, ModelError};
use crate::parallel::TpGroup;
use crate::weights::{
    DummySource, GgufSource, SafetensorsSource, WeightError, WeightSource, Weights,
};

/// `--load-format`, as vLLM names its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFormat {
    /// Whatever the source holds.
    Auto,
    Safetensors,
    Gguf,
    /// Random weights at the config's shapes.
    Dummy,
}

impl std::str::FromStr for LoadFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "safetensors" => Ok(Self::Safetensors),
            "gguf" => Ok(Self::Gguf),
            "dummy" => Ok(Self::Dummy),
            other => Err(format!(
                "unknown load format `{other}` (auto, safetensors, gguf, dummy)"
            )),
        }
    }
}

/// `--dtype`: `auto` is f32 on CPU (what transformers uses there) and bf16
/// on CUDA.
pub fn parse_dtype(s: &str, device: Device) -> Result<Kind, String> {
    match s {
        "auto" => Ok(if device.is_cuda() {
            Kind::BFloat16
        } else {
            Kind::Float
        }),
        "float32" | "float" | "f32" => Ok(Kind::Float),
        "bfloat16" | "bf16" => Ok(Kind::BFloat16),
        "float16" | "half" | "f16" => Ok(Kind::Half),
        other => Err(format!(
            "unknown dtype `{other}` (auto, float32, bfloat16, float16)"
        )),
    }
}

/// `--device`: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device, String> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("unknown device `{other}` (cpu, cuda, cuda:N)")),
    }
}

/// How to load a model.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    pub format: LoadFormat,
    pub device: Device,
    pub kind: Kind,
    /// Seed of dummy weights.
    pub seed: u64,
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: load format {format:?} does not match a {found} model")]
    FormatMismatch {
        path: std::path::PathBuf,
        format: LoadFormat,
        found: &'static str,
    },
    #[error("device {0:?} is not available (built without CUDA, or no GPU visible)")]
    DeviceUnavailable(Device),
}

/// Reads the model's config from `config.json` or GGUF metadata.
pub fn load_config(source: &ModelSource) -> Result<LlamaConfig, LoadError> {
    Ok(match source.format {
        ModelFormat::HfFolder => LlamaConfig::from_hf_dir(&source.path)?,
        ModelFormat::Gguf => {
            let file = GgufFile::open(&source.path).map_err(ConfigError::from)?;
            LlamaConfig::from_gguf(&file)?
        }
    })
}

/// Opens the weight container `options.format` asks for.
pub fn open_weights(
    source: &ModelSource,
    config: &LlamaConfig,
    options: &LoadOptions,
) -> Result<Weights, LoadError> {
    if let Device::Cuda(i) = options.device {
        if !tch::Cuda::is_available() || i >= tch::Cuda::device_count() as usize {
            return Err(LoadError::DeviceUnavailable(options.device));
        }
    }
    let boxed: Box<dyn WeightSource> = match (options.format, source.format) {
        (LoadFormat::Dummy, _) => Box::new(DummySource::new(options.seed)),
        (LoadFormat::Auto | LoadFormat::Gguf, ModelFormat::Gguf) => {
            Box::new(GgufSource::open(&source.path, config)?)
        }
        (LoadFormat::Auto | LoadFormat::Safetensors, ModelFormat::HfFolder) => {
            Box::new(SafetensorsSource::open(&source.path)?)
        }
        (format, found) => {
            return Err(LoadError::FormatMismatch {
                path: source.path.clone(),
                format,
                found: match found {
                    ModelFormat::Gguf => "GGUF",
                    ModelFormat::HfFolder => "safetensors folder",
                },
            })
        }
    };
    Ok(Weights::new(boxed, options.device, options.kind))
}

/// Loads config and weights and builds the model with the reference
/// attention backend.
pub fn load_model(
    source: &ModelSource,
    options: &LoadOptions,
    tp: &TpGroup,
    on_layer: impl FnMut(usize, usize),
) -> Result<LlamaModel, LoadError> {
    let config = load_config(source)?;
    let weights = open_weights(source, &config, options)?;
    Ok(LlamaModel::load(
        &config,
        &weights,
        Arc::new(TorchRefBackend),
        tp,
        on_layer,
    )?)
}
