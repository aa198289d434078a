//! From a resolved model source and load options to a ready model: reads
//! the config, opens the right weight container, and builds the model.

use model_files::config::ConfigError;
use model_files::gguf::GgufFile;
use model_files::{ModelConfig, ModelFormat, ModelSource};
use tch::{Device, Kind};

use crate::attention::{select_backend, BackendChoice};
use crate::layers::moe::ExpertPlacement;
use crate::models::{build_model, CausalLm, ModelError};
use crate::parallel::TpGroup;
use crate::weights::{
    DummySource, GgufSource, Quantization, SafetensorsSource, WeightError, WeightSource, Weights,
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

/// `--quantization`, as vLLM names its values: how linear weights are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantizationChoice {
    /// A quantized GGUF on the CPU keeps its quantization (`gguf`); anything
    /// else is held in the model's dtype.
    Auto,
    /// Every weight dequantized to the model's dtype.
    None,
    /// Keep a GGUF checkpoint's quantization (CPU only).
    Gguf,
    /// Quantize linear weights to int8 at load (CPU only).
    Int8,
}

impl QuantizationChoice {
    /// The name `--quantization` takes (and `LoadModelRequest` carries).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::None => "none",
            Self::Gguf => "gguf",
            Self::Int8 => "int8",
        }
    }
}

impl std::str::FromStr for QuantizationChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            "gguf" => Ok(Self::Gguf),
            "int8" => Ok(Self::Int8),
            other => Err(format!(
                "unknown quantization `{other}` (auto, none, gguf, int8)"
            )),
        }
    }
}

/// What `choice` means for this checkpoint and device, or why it cannot be
/// honoured. The packed kernels are libtorch's CPU ones, so quantized
/// execution is CPU-only for now.
pub fn resolve_quantization(
    choice: QuantizationChoice,
    gguf_weights: bool,
    device: Device,
) -> Result<Quantization, LoadError> {
    let cpu = device == Device::Cpu;
    match choice {
        QuantizationChoice::Auto if gguf_weights && cpu => Ok(Quantization::Gguf),
        QuantizationChoice::Auto | QuantizationChoice::None => Ok(Quantization::None),
        QuantizationChoice::Gguf if !gguf_weights => Err(LoadError::Quantization(
            "--quantization gguf needs a .gguf model".into(),
        )),
        QuantizationChoice::Gguf | QuantizationChoice::Int8 if !cpu => {
            Err(LoadError::Quantization(format!(
                "--quantization {} runs on the CPU only; on {device:?} use --quantization none",
                if choice == QuantizationChoice::Gguf {
                    "gguf"
                } else {
                    "int8"
                }
            )))
        }
        QuantizationChoice::Gguf => Ok(Quantization::Gguf),
        QuantizationChoice::Int8 => Ok(Quantization::Int8),
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

/// `--hf-overrides`: empty for none, else a JSON object.
pub fn parse_hf_overrides(s: &str) -> Result<Option<serde_json::Value>, String> {
    if s.trim().is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v) if v.is_object() => Ok(Some(v)),
        Ok(_) => Err("--hf-overrides must be a JSON object".into()),
        Err(e) => Err(format!("--hf-overrides is not valid JSON: {e}")),
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
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub format: LoadFormat,
    pub device: Device,
    pub kind: Kind,
    /// Seed of dummy weights.
    pub seed: u64,
    /// `--attention-backend` (`auto` picks for the device).
    pub attention_backend: BackendChoice,
    /// `--hf-overrides`: a JSON object merged into the checkpoint's config.
    pub hf_overrides: Option<serde_json::Value>,
    /// `--quantization`: how linear weights are held.
    pub quantization: QuantizationChoice,
    /// `--enable-expert-parallel`: whole experts per rank instead of every
    /// expert split along its intermediate dimension.
    pub expert_placement: ExpertPlacement,
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
    #[error("{0}")]
    Quantization(String),
    #[error("device {0:?} is not available (built without CUDA, or no GPU visible)")]
    DeviceUnavailable(Device),
    #[error(
        "model `{0}` is a built-in shape with no weights: pass --load-format dummy \
         for random weights at its shapes"
    )]
    NoWeights(String),
}

/// Reads the model's config from `config.json` or GGUF metadata, with
/// `overrides` (`--hf-overrides`) merged in.
pub fn load_config(
    source: &ModelSource,
    overrides: Option<&serde_json::Value>,
) -> Result<ModelConfig, LoadError> {
    if let Some(json) = source.builtin_config {
        let path = std::path::PathBuf::from(format!("<built-in {} config>", source.name));
        return Ok(ModelConfig::from_json_with(json, overrides, &path)?);
    }
    Ok(match source.format {
        ModelFormat::HfFolder => ModelConfig::from_hf_dir_with(&source.path, overrides)?,
        ModelFormat::Gguf => {
            let file = GgufFile::open(&source.path).map_err(ConfigError::from)?;
            ModelConfig::from_gguf_with(&file, overrides)?
        }
    })
}

/// Opens the weight container `options.format` asks for.
pub fn open_weights(
    source: &ModelSource,
    config: &ModelConfig,
    options: &LoadOptions,
) -> Result<Weights, LoadError> {
    if let Device::Cuda(i) = options.device {
        if !tch::Cuda::is_available() || i >= tch::Cuda::device_count() as usize {
            return Err(LoadError::DeviceUnavailable(options.device));
        }
    }
    let boxed: Box<dyn WeightSource> = match (options.format, source.format) {
        (LoadFormat::Dummy, _) => Box::new(DummySource::new(options.seed)),
        _ if source.builtin_config.is_some() => {
            return Err(LoadError::NoWeights(source.name.clone()))
        }
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
    let gguf_weights = options.format != LoadFormat::Dummy && source.format == ModelFormat::Gguf;
    let quantization = resolve_quantization(options.quantization, gguf_weights, options.device)?;
    Ok(Weights::new(boxed, options.device, options.kind).with_quantization(quantization))
}

/// Loads config and weights and builds the model its architecture names,
/// with the attention backend `options` asks for.
pub fn load_model(
    source: &ModelSource,
    options: &LoadOptions,
    tp: &TpGroup,
    on_layer: impl FnMut(usize, usize),
) -> Result<Box<dyn CausalLm>, LoadError> {
    let config = load_config(source, options.hf_overrides.as_ref())?;
    let backend = select_backend(options.attention_backend, options.device);
    let weights = open_weights(source, &config, options)?;
    Ok(build_model(
        &config,
        &weights,
        backend,
        options.expert_placement,
        tp,
        on_layer,
    )?)
}
