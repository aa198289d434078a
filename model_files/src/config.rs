//! The HF `config.json` of the architectures we run, read from the file or
//! rebuilt from GGUF metadata, so one struct describes the model whatever
//! the container. [`Architecture`] names which model code runs it (the
//! workers' registry keys on it); the fields are the union of what the
//! supported families read, each defaulted as transformers defaults it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::gguf::{GgufError, GgufFile};

/// Why a model config could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid model config: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(
        "{path}: unsupported architecture `{arch}` (supported: {})",
        Architecture::SUPPORTED
    )]
    UnknownArchitecture { path: PathBuf, arch: String },
    #[error("{path}: invalid config: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// Llama-3 style frequency-dependent rope scaling (`rope_type: "llama3"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RopeScaling {
    /// `"llama3"`; other kinds are refused at validation.
    #[serde(alias = "type")]
    pub rope_type: String,
    pub factor: f64,
    #[serde(default = "one")]
    pub low_freq_factor: f64,
    #[serde(default = "four")]
    pub high_freq_factor: f64,
    #[serde(default = "default_orig_ctx")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f64 {
    1.0
}
fn four() -> f64 {
    4.0
}
fn default_orig_ctx() -> usize {
    8192
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_rms_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> usize {
    2048
}

/// Merges `overrides` into `base`: objects key by key (recursively), any
/// other value replaces.
fn merge(base: &mut Value, overrides: &Value) {
    match (base, overrides) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// The text model's config of a multimodal Llama 4 config (its
/// `text_config`, named by the multimodal class); any other config as is.
fn text_half(mut raw: Value) -> Value {
    let multimodal = raw
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        == Some(LLAMA4_MULTIMODAL);
    if !multimodal {
        return raw;
    }
    match raw.get_mut("text_config").map(Value::take) {
        Some(Value::Object(mut text)) => {
            text.insert(
                "architectures".into(),
                Value::Array(vec![Value::String(LLAMA4_MULTIMODAL.into())]),
            );
            Value::Object(text)
        }
        _ => raw,
    }
}

/// Llama 4's multimodal class: its config nests the text model's under
/// `text_config` and its checkpoint the text weights under `language_model.`.
const LLAMA4_MULTIMODAL: &str = "Llama4ForConditionalGeneration";

/// Which keys a layer's queries attend to, besides causality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionWindow {
    /// Every earlier position.
    Full,
    /// The last `n` positions up to the query's own (Mistral).
    Sliding(usize),
    /// Positions in the query's own chunk of `n` (`[p - p % n, p]`):
    /// Llama 4's local attention.
    Chunked(usize),
}

impl AttentionWindow {
    /// The earliest position a query at `position` sees.
    pub fn first_visible(self, position: usize) -> usize {
        match self {
            Self::Full => 0,
            Self::Sliding(n) => (position + 1).saturating_sub(n),
            Self::Chunked(n) => position - position % n.max(1),
        }
    }
}

/// How a layer normalizes each query and key head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    None,
    /// A learned RMSNorm per head before rotary (Qwen3's `q_norm`, `k_norm`).
    RmsBeforeRope,
    /// A weightless L2 (RMS) norm after rotary (Llama 4's rotary layers).
    L2AfterRope,
}

/// How a sparse layer turns router logits into expert weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoeRouting {
    /// Softmax over all experts, the top k kept (renormalized to sum to one
    /// when `renormalize`); the experts' outputs are weighted (Mixtral,
    /// Qwen3-MoE).
    Softmax { renormalize: bool },
    /// The top k logits through a sigmoid; each expert's *input* is scaled
    /// by its weight (Llama 4).
    SigmoidScalesInput,
}

/// The model families the workers implement, by the HF class name in
/// `architectures` (or GGUF's `general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM` (SmolLM2 and other Llama-shaped models).
    Llama,
    /// `Qwen3ForCausalLM`: Llama plus an RMSNorm over each query and key
    /// head before rotary.
    Qwen3,
    /// `MistralForCausalLM`: Llama with sliding-window attention.
    Mistral,
    /// `MixtralForCausalLM`: Mistral whose MLP is a mixture of experts
    /// (softmax over the experts, top-k renormalized).
    Mixtral,
    /// `Qwen3MoeForCausalLM`: Qwen3 with mixture-of-experts MLPs on the
    /// layers `decoder_sparse_step` and `mlp_only_layers` pick.
    Qwen3Moe,
    /// `Llama4ForCausalLM`, or the text half of
    /// `Llama4ForConditionalGeneration` (its `text_config`, weights under
    /// `language_model.`): chunked local attention with rotary (interleaved
    /// pairs) and a weightless QK L2 norm on three layers of four, global
    /// attention without rotary (NoPE, with attention temperature tuning)
    /// on the fourth; sigmoid top-1 experts plus a shared expert on the
    /// `moe_layers`.
    Llama4,
}

impl Architecture {
    /// The class names accepted, for messages.
    pub const SUPPORTED: &'static str =
        "LlamaForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, MixtralForCausalLM, \
         Qwen3MoeForCausalLM, Llama4ForCausalLM, Llama4ForConditionalGeneration (text); \
         GGUF llama";

    /// The architecture an HF class name names.
    pub fn from_hf_class(name: &str) -> Option<Self> {
        match name {
            "LlamaForCausalLM" => Some(Self::Llama),
            "Qwen3ForCausalLM" => Some(Self::Qwen3),
            "MistralForCausalLM" => Some(Self::Mistral),
            "MixtralForCausalLM" => Some(Self::Mixtral),
            "Qwen3MoeForCausalLM" => Some(Self::Qwen3Moe),
            "Llama4ForCausalLM" | LLAMA4_MULTIMODAL => Some(Self::Llama4),
            _ => None,
        }
    }

    /// The architecture a GGUF `general.architecture` names (llama.cpp
    /// writes Mistral models as `llama`).
    pub fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Self::Llama),
            "qwen3" => Some(Self::Qwen3),
            _ => None,
        }
    }

    /// HF's class name.
    pub fn hf_class(self) -> &'static str {
        match self {
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Mistral => "MistralForCausalLM",
            Self::Mixtral => "MixtralForCausalLM",
            Self::Qwen3Moe => "Qwen3MoeForCausalLM",
            Self::Llama4 => "Llama4ForCausalLM",
        }
    }
}

/// The fields of an HF model config that change the computation, for every
/// supported [`Architecture`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ModelConfig {
    /// HF class names, e.g. `["LlamaForCausalLM"]`; checked against what we
    /// implement.
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no GQA), as in transformers.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// A single id or a list in config.json.
    #[serde(default)]
    pub eos_token_id: Option<EosTokenIds>,
    /// `attention_bias` / `mlp_bias`: Llama proper has none.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub hidden_act: Option<String>,
    /// Keys a query may see: the last `sliding_window` positions
    /// (Mistral on every layer; Qwen3 only on the layers `layer_types`
    /// marks, and only with `use_sliding_window`).
    #[serde(default)]
    pub sliding_window: Option<usize>,
    #[serde(default)]
    pub use_sliding_window: Option<bool>,
    /// Per layer, `"full_attention"` or `"sliding_attention"`.
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Mixtral's expert count.
    #[serde(default)]
    pub num_local_experts: Option<usize>,
    /// Qwen3-MoE's expert count.
    #[serde(default)]
    pub num_experts: Option<usize>,
    /// Experts each token is routed to.
    #[serde(default)]
    pub num_experts_per_tok: Option<usize>,
    /// Qwen3-MoE: each expert's intermediate size (`intermediate_size` is
    /// then the dense layers').
    #[serde(default)]
    pub moe_intermediate_size: Option<usize>,
    /// Qwen3-MoE: renormalize the top-k routing weights to sum to one
    /// (Mixtral always does).
    #[serde(default)]
    pub norm_topk_prob: Option<bool>,
    /// Qwen3-MoE: every `decoder_sparse_step`-th layer is sparse...
    #[serde(default)]
    pub decoder_sparse_step: Option<usize>,
    /// ...except these, which keep a dense MLP.
    #[serde(default)]
    pub mlp_only_layers: Option<Vec<usize>>,
    /// Llama 4: the dense layers' intermediate size (`intermediate_size`
    /// is then each expert's and the shared expert's).
    #[serde(default)]
    pub intermediate_size_mlp: Option<usize>,
    /// Llama 4: the sparse layers, else every `interleave_moe_layer_step`-th.
    #[serde(default)]
    pub moe_layers: Option<Vec<usize>>,
    #[serde(default)]
    pub interleave_moe_layer_step: Option<usize>,
    /// Llama 4: per layer, 1 where it uses rotary and 0 where it does not
    /// (the name is transformers'); else every `no_rope_layer_interval`-th
    /// layer goes without.
    #[serde(default)]
    pub no_rope_layers: Option<Vec<u8>>,
    #[serde(default)]
    pub no_rope_layer_interval: Option<usize>,
    /// Llama 4: the chunk of its local-attention layers.
    #[serde(default)]
    pub attention_chunk_size: Option<usize>,
    /// Llama 4: the L2 QK norm of its rotary layers.
    #[serde(default)]
    pub use_qk_norm: Option<bool>,
    /// Llama 4: scale the queries of its NoPE layers by
    /// `1 + attn_scale * ln(1 + floor((p + 1) / floor_scale))` (a bool,
    /// or a number read as one, as published configs write it).
    #[serde(default)]
    pub attn_temperature_tuning: Option<Value>,
    #[serde(default)]
    pub floor_scale: Option<f64>,
    #[serde(default)]
    pub attn_scale: Option<f64>,
}

/// A mixture-of-experts MLP: what one sparse layer routes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoeSpec {
    pub num_experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Each expert's intermediate size.
    pub intermediate_size: usize,
    pub routing: MoeRouting,
    /// The intermediate size of an expert every token also runs through
    /// (Llama 4's shared expert), if there is one.
    pub shared_expert_intermediate_size: Option<usize>,
}

/// `eos_token_id` as config.json writes it: one id or several.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EosTokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl EosTokenIds {
    /// All ids as a list.
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Self::One(id) => vec![*id],
            Self::Many(ids) => ids.clone(),
        }
    }
}

impl ModelConfig {
    /// Reads and validates `<dir>/config.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, ConfigError> {
        Self::from_hf_dir_with(dir, None)
    }

    /// Reads `<dir>/config.json` with `overrides` (vLLM's `--hf-overrides`:
    /// a JSON object merged key by key, nested objects recursively) applied
    /// before it is validated.
    pub fn from_hf_dir_with(dir: &Path, overrides: Option<&Value>) -> Result<Self, ConfigError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_json_with(&text, overrides, &path)
    }

    /// Reads a `config.json` text (`path` names it in errors) with
    /// `overrides` merged in. A multimodal Llama 4 config gives its
    /// `text_config` (after the merge, so overrides go under
    /// `text_config` as in vLLM), keeping the multimodal class name so the
    /// loader finds the text weights under `language_model.`.
    pub fn from_json_with(
        text: &str,
        overrides: Option<&Value>,
        path: &Path,
    ) -> Result<Self, ConfigError> {
        let path = path.to_path_buf();
        let mut raw: Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: path.clone(),
            source,
        })?;
        if let Some(o) = overrides {
            merge(&mut raw, o);
        }
        let raw = text_half(raw);
        let config: Self = serde_json::from_value(raw).map_err(|source| ConfigError::Json {
            path: path.clone(),
            source,
        })?;
        if let Some(arch) = config.architectures.first() {
            if Architecture::from_hf_class(arch).is_none() {
                return Err(ConfigError::UnknownArchitecture {
                    path,
                    arch: arch.clone(),
                });
            }
        }
        config.validate(&path)?;
        Ok(config)
    }

    /// [`Self::from_gguf`] with `--hf-overrides` applied to the rebuilt
    /// config, as if it had been a `config.json`.
    pub fn from_gguf_with(file: &GgufFile, overrides: Option<&Value>) -> Result<Self, ConfigError> {
        let config = Self::from_gguf(file)?;
        let Some(o) = overrides else {
            return Ok(config);
        };
        let json = |source| ConfigError::Json {
            path: file.path().to_path_buf(),
            source,
        };
        let mut raw = serde_json::to_value(&config).map_err(json)?;
        merge(&mut raw, o);
        let config: Self = serde_json::from_value(raw).map_err(json)?;
        config.validate(file.path())?;
        Ok(config)
    }

    /// Rebuilds the config from llama.cpp's `<arch>.*` metadata keys.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ConfigError> {
        let arch = file.architecture()?.to_string();
        let Some(architecture) = Architecture::from_gguf(&arch) else {
            return Err(ConfigError::UnknownArchitecture {
                path: file.path().to_path_buf(),
                arch,
            });
        };
        let key = |k: &str| format!("{arch}.{k}");
        let usize_key = |k: &str| -> Result<usize, ConfigError> {
            Ok(usize::try_from(file.get_u64(&key(k))?).unwrap_or(usize::MAX))
        };
        let opt_usize = |k: &str| {
            file.get(&key(k))
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
        };
        let opt_f64 = |k: &str| file.get(&key(k)).and_then(|v| v.as_f64());
        let hidden_size = usize_key("embedding_length")?;
        let num_attention_heads = usize_key("attention.head_count")?;
        let vocab_size = match opt_usize("vocab_size") {
            Some(v) => v,
            None => file
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(<[_]>::len)
                .ok_or_else(|| ConfigError::Invalid {
                    path: file.path().to_path_buf(),
                    reason: "no llama.vocab_size and no tokenizer.ggml.tokens".into(),
                })?,
        };
        let head_dim = opt_usize("attention.key_length").or_else(|| {
            opt_usize("rope.dimension_count").filter(|&d| d * num_attention_heads == hidden_size)
        });
        let rope_scaling = match file.get(&key("rope.scaling.type")).and_then(|v| v.as_str()) {
            Some("linear") | Some("yarn") => {
                return Err(ConfigError::Invalid {
                    path: file.path().to_path_buf(),
                    reason: "only llama3 rope scaling is supported".into(),
                })
            }
            _ => None,
        };
        let tied = file.tensor("output.weight").is_err();
        let config = Self {
            architectures: vec![architecture.hf_class().into()],
            vocab_size,
            hidden_size,
            intermediate_size: usize_key("feed_forward_length")?,
            num_hidden_layers: usize_key("block_count")?,
            num_attention_heads,
            num_key_value_heads: opt_usize("attention.head_count_kv"),
            head_dim,
            rms_norm_eps: opt_f64("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            rope_theta: opt_f64("rope.freq_base").unwrap_or(10000.0),
            rope_scaling,
            max_position_embeddings: opt_usize("context_length").unwrap_or(2048),
            tie_word_embeddings: tied,
            bos_token_id: file
                .get("tokenizer.ggml.bos_token_id")
                .and_then(|v| v.as_u64())
                .map(|v| v as u32),
            eos_token_id: file
                .get("tokenizer.ggml.eos_token_id")
                .and_then(|v| v.as_u64())
                .map(|v| EosTokenIds::One(v as u32)),
            attention_bias: false,
            mlp_bias: false,
            hidden_act: Some("silu".into()),
            sliding_window: None,
            use_sliding_window: None,
            layer_types: None,
            num_local_experts: None,
            num_experts: None,
            num_experts_per_tok: None,
            moe_intermediate_size: None,
            norm_topk_prob: None,
            decoder_sparse_step: None,
            mlp_only_layers: None,
            intermediate_size_mlp: None,
            moe_layers: None,
            interleave_moe_layer_step: None,
            no_rope_layers: None,
            no_rope_layer_interval: None,
            attention_chunk_size: None,
            use_qk_norm: None,
            attn_temperature_tuning: None,
            floor_scale: None,
            attn_scale: None,
        };
        config.validate(file.path())?;
        Ok(config)
    }

    /// Which model code runs this config (`architectures[0]`; Llama when
    /// the list is empty, as configs of Llama-shaped models often leave it).
    pub fn architecture(&self) -> Architecture {
        self.architectures
            .first()
            .and_then(|a| Architecture::from_hf_class(a))
            .unwrap_or(Architecture::Llama)
    }

    /// Which keys layer `layer` attends to. `layer_types` decides where
    /// given (Qwen3 also needs `use_sliding_window`); else Mistral slides
    /// on every layer, Llama 4 chunks its rotary layers, and the others
    /// attend to everything (as transformers reads these configs).
    pub fn attention_window(&self, layer: usize) -> AttentionWindow {
        let typed = |want: &str| {
            self.layer_types
                .as_ref()
                .map(|types| types.get(layer).map(String::as_str) == Some(want))
        };
        if self.architecture() == Architecture::Llama4 {
            let chunked = typed("chunked_attention").unwrap_or_else(|| self.uses_rope(layer));
            return match self.attention_chunk_size {
                Some(n) if chunked => AttentionWindow::Chunked(n),
                _ => AttentionWindow::Full,
            };
        }
        let Some(window) = self.sliding_window else {
            return AttentionWindow::Full;
        };
        let marked = typed("sliding_attention");
        let slides = match self.architecture() {
            Architecture::Mistral | Architecture::Mixtral => marked.unwrap_or(true),
            Architecture::Qwen3 => self.use_sliding_window == Some(true) && marked == Some(true),
            // transformers' Qwen3-MoE keeps the window only with
            // use_sliding_window, then on every layer.
            Architecture::Qwen3Moe => {
                self.use_sliding_window == Some(true) && marked.unwrap_or(true)
            }
            Architecture::Llama | Architecture::Llama4 => marked.unwrap_or(false),
        };
        if slides {
            AttentionWindow::Sliding(window)
        } else {
            AttentionWindow::Full
        }
    }

    /// Whether layer `layer` rotates its queries and keys (Llama 4's NoPE
    /// layers do not).
    pub fn uses_rope(&self, layer: usize) -> bool {
        if self.architecture() != Architecture::Llama4 {
            return true;
        }
        match self.no_rope_layers.as_deref() {
            Some(flags) if !flags.is_empty() => flags.get(layer).is_some_and(|&f| f != 0),
            _ => (layer + 1) % self.no_rope_layer_interval.unwrap_or(4).max(1) != 0,
        }
    }

    /// Whether rotary turns adjacent pairs `(x[2i], x[2i+1])` (Llama 4's
    /// complex form) rather than the two halves of each head.
    pub fn rope_interleaved(&self) -> bool {
        self.architecture() == Architecture::Llama4
    }

    /// How layer `layer` normalizes its query and key heads.
    pub fn qk_norm(&self, layer: usize) -> QkNorm {
        match self.architecture() {
            Architecture::Qwen3 | Architecture::Qwen3Moe => QkNorm::RmsBeforeRope,
            Architecture::Llama4 if self.use_qk_norm.unwrap_or(true) && self.uses_rope(layer) => {
                QkNorm::L2AfterRope
            }
            _ => QkNorm::None,
        }
    }

    /// Llama 4's attention temperature tuning on layer `layer`, as
    /// `(floor_scale, attn_scale)`: its NoPE layers scale each query by
    /// `1 + attn_scale * ln(1 + floor((position + 1) / floor_scale))`.
    pub fn attn_temperature(&self, layer: usize) -> Option<(f64, f64)> {
        let on = match &self.attn_temperature_tuning {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|v| v != 0.0),
            Some(_) => false,
        };
        (self.architecture() == Architecture::Llama4 && on && !self.uses_rope(layer)).then(|| {
            (
                self.floor_scale.unwrap_or(8192.0),
                self.attn_scale.unwrap_or(0.1),
            )
        })
    }

    /// The intermediate size of the dense MLP layers.
    pub fn mlp_intermediate_size(&self) -> usize {
        match self.architecture() {
            Architecture::Llama4 => self.intermediate_size_mlp.unwrap_or(self.intermediate_size),
            _ => self.intermediate_size,
        }
    }

    /// Where the text model's weights sit in the checkpoint: `""`, or
    /// `"language_model."` for a multimodal Llama 4.
    pub fn weight_prefix(&self) -> &'static str {
        if self.architectures.first().map(String::as_str) == Some(LLAMA4_MULTIMODAL) {
            "language_model."
        } else {
            ""
        }
    }

    /// The mixture of experts of layer `layer`, or `None` for a dense MLP
    /// (as transformers' Mixtral, Qwen3-MoE and Llama 4 decoder layers
    /// decide).
    pub fn moe_for_layer(&self, layer: usize) -> Option<MoeSpec> {
        let spec = self.moe_spec()?;
        match self.architecture() {
            Architecture::Qwen3Moe => {
                let step = self.decoder_sparse_step.unwrap_or(1).max(1);
                let dense = self
                    .mlp_only_layers
                    .as_ref()
                    .is_some_and(|l| l.contains(&layer));
                (!dense && (layer + 1) % step == 0).then_some(spec)
            }
            Architecture::Llama4 => {
                let sparse = match &self.moe_layers {
                    Some(layers) => layers.contains(&layer),
                    None => {
                        let step = self.interleave_moe_layer_step.unwrap_or(1).max(1);
                        (layer + 1) % step == 0
                    }
                };
                sparse.then_some(spec)
            }
            _ => Some(spec),
        }
    }

    /// The experts of this model's sparse layers (all alike), if it has any.
    pub fn moe_spec(&self) -> Option<MoeSpec> {
        let top_k = self.num_experts_per_tok.unwrap_or(2);
        let softmax = |num_experts, intermediate_size, renormalize| MoeSpec {
            num_experts,
            top_k,
            intermediate_size,
            routing: MoeRouting::Softmax { renormalize },
            shared_expert_intermediate_size: None,
        };
        match self.architecture() {
            Architecture::Mixtral => Some(softmax(
                self.num_local_experts.unwrap_or(8),
                self.intermediate_size,
                true,
            )),
            Architecture::Qwen3Moe => {
                Some(self.num_experts.unwrap_or(0))
                    .filter(|&n| n > 0)
                    .map(|n| {
                        softmax(
                            n,
                            self.moe_intermediate_size.unwrap_or(self.intermediate_size),
                            self.norm_topk_prob.unwrap_or(false),
                        )
                    })
            }
            Architecture::Llama4 => Some(MoeSpec {
                num_experts: self.num_local_experts.unwrap_or(16),
                top_k: self.num_experts_per_tok.unwrap_or(1),
                intermediate_size: self.intermediate_size,
                routing: MoeRouting::SigmoidScalesInput,
                shared_expert_intermediate_size: Some(self.intermediate_size),
            }),
            Architecture::Llama | Architecture::Qwen3 | Architecture::Mistral => None,
        }
    }

    /// Number of KV heads (GQA groups).
    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Refuses configs the model code cannot run, with the reason, instead
    /// of failing later on a shape mismatch.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |reason: String| {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                reason,
            })
        };
        if self.num_attention_heads == 0 || self.num_hidden_layers == 0 || self.hidden_size == 0 {
            return invalid("zero heads, layers or hidden size".into());
        }
        if self.num_attention_heads % self.num_kv_heads().max(1) != 0 || self.num_kv_heads() == 0 {
            return invalid(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.head_dim() % 2 != 0 || self.head_dim() == 0 {
            return invalid(format!("head_dim {} must be even", self.head_dim()));
        }
        if let Some(act) = &self.hidden_act {
            if act != "silu" {
                return invalid(format!("hidden_act `{act}` is not supported (silu only)"));
            }
        }
        if let Some(s) = &self.rope_scaling {
            if s.rope_type != "llama3" && s.rope_type != "default" {
                return invalid(format!(
                    "rope_scaling type `{}` is not supported (llama3 only)",
                    s.rope_type
                ));
            }
        }
        if self.attention_bias || self.mlp_bias {
            return invalid("attention_bias / mlp_bias are not supported".into());
        }
        if self.mlp_intermediate_size() == 0 {
            return invalid("intermediate size must be positive".into());
        }
        if let Some(moe) = self.moe_spec() {
            if moe.top_k == 0 || moe.top_k > moe.num_experts || moe.intermediate_size == 0 {
                return invalid(format!(
                    "{} experts per token of {} (intermediate size {}) cannot be routed",
                    moe.top_k, moe.num_experts, moe.intermediate_size
                ));
            }
        }
        if self.sliding_window == Some(0) || self.attention_chunk_size == Some(0) {
            return invalid("sliding_window and attention_chunk_size must be positive".into());
        }
        if self.floor_scale.is_some_and(|f| !f.is_finite() || f <= 0.0) {
            return invalid("floor_scale must be positive".into());
        }
        // Per-layer lists may run longer than the layers (`--hf-overrides`
        // with fewer layers keeps the checkpoint's lists); never shorter.
        let layers = self.num_hidden_layers;
        if let Some(types) = &self.layer_types {
            if types.len() < layers {
                return invalid(format!(
                    "layer_types lists {} layers, num_hidden_layers is {layers}",
                    types.len(),
                ));
            }
            let known: &[&str] = if self.architecture() == Architecture::Llama4 {
                &["full_attention", "chunked_attention"]
            } else {
                &["full_attention", "sliding_attention"]
            };
            if let Some(t) = types.iter().find(|t| !known.contains(&t.as_str())) {
                return invalid(format!("layer type `{t}` is not supported"));
            }
        }
        if let Some(flags) = self.no_rope_layers.as_ref().filter(|f| !f.is_empty()) {
            if flags.len() < layers {
                return invalid(format!(
                    "no_rope_layers lists {} layers, num_hidden_layers is {layers}",
                    flags.len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, json: &str) {
        std::fs::write(dir.join("config.json"), json).unwrap();
    }

    #[test]
    fn reads_llama3_config() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":64,
            "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
            "num_key_value_heads":2,"rope_theta":500000.0,"eos_token_id":[1,2],
            "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":64}}"#,
        );
        let c = ModelConfig::from_hf_dir(dir.path()).unwrap();
        assert_eq!(c.num_kv_heads(), 2);
        assert_eq!(c.head_dim(), 16);
        assert_eq!(c.eos_token_id.unwrap().to_vec(), vec![1, 2]);
        assert_eq!(c.rope_scaling.unwrap().factor, 8.0);
    }

    #[test]
    fn unknown_architecture_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"architectures":["GPTNeoXForCausalLM"],"vocab_size":1,"hidden_size":4,
            "intermediate_size":4,"num_hidden_layers":1,"num_attention_heads":1}"#,
        );
        let err = ModelConfig::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("GPTNeoXForCausalLM"), "{err}");
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn bad_gqa_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"vocab_size":1,"hidden_size":12,"intermediate_size":4,
            "num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2}"#,
        );
        let err = ModelConfig::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("multiple"), "{err}");
    }

    #[test]
    fn malformed_json_names_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "{ not json");
        let err = ModelConfig::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
    }

    #[test]
    fn architectures_pick_the_model_code_and_its_windows() {
        let dir = tempfile::tempdir().unwrap();
        let base = r#""vocab_size":10,"hidden_size":16,"intermediate_size":8,
            "num_hidden_layers":2,"num_attention_heads":2"#;
        write(
            dir.path(),
            &format!(r#"{{"architectures":["MistralForCausalLM"],"sliding_window":8,{base}}}"#),
        );
        let c = ModelConfig::from_hf_dir(dir.path()).unwrap();
        assert_eq!(c.architecture(), Architecture::Mistral);
        assert_eq!(c.attention_window(1), AttentionWindow::Sliding(8));
        assert_eq!(c.qk_norm(0), QkNorm::None);
        // Qwen3 has a sliding_window field but uses it only when asked.
        write(
            dir.path(),
            &format!(
                r#"{{"architectures":["Qwen3ForCausalLM"],"sliding_window":8,
                "use_sliding_window":false,
                "layer_types":["full_attention","sliding_attention"],{base}}}"#
            ),
        );
        let c = ModelConfig::from_hf_dir(dir.path()).unwrap();
        assert_eq!(c.architecture(), Architecture::Qwen3);
        assert_eq!(c.qk_norm(0), QkNorm::RmsBeforeRope);
        assert_eq!(c.attention_window(1), AttentionWindow::Full);
        let c = ModelConfig {
            use_sliding_window: Some(true),
            ..c
        };
        assert_eq!(
            (c.attention_window(0), c.attention_window(1)),
            (AttentionWindow::Full, AttentionWindow::Sliding(8))
        );
        write(
            dir.path(),
            &format!(r#"{{"layer_types":["full_attention"],{base}}}"#),
        );
        let err = ModelConfig::from_hf_dir(dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("layer_types lists 1"), "{err}");
    }

    #[test]
    fn hf_overrides_merge_before_validation() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"vocab_size":10,"hidden_size":16,"intermediate_size":8,
            "num_hidden_layers":4,"num_attention_heads":2,
            "rope_scaling":{"rope_type":"llama3","factor":8.0}}"#,
        );
        let o = serde_json::json!({"num_hidden_layers": 1, "rope_scaling": {"factor": 2.0}});
        let c = ModelConfig::from_hf_dir_with(dir.path(), Some(&o)).unwrap();
        assert_eq!(c.num_hidden_layers, 1);
        let scaling = c.rope_scaling.unwrap();
        assert_eq!(
            (scaling.rope_type.as_str(), scaling.factor),
            ("llama3", 2.0)
        );
        // Overrides are validated like the file.
        let o = serde_json::json!({"num_attention_heads": 3});
        let err = ModelConfig::from_hf_dir_with(dir.path(), Some(&o))
            .unwrap_err()
            .to_string();
        assert!(err.contains("head"), "{err}");
    }

    #[test]
    fn llama4_reads_its_text_config_and_layer_pattern() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"architectures":["Llama4ForConditionalGeneration"],
            "vision_config":{"hidden_size":8},
            "text_config":{"vocab_size":10,"hidden_size":16,"intermediate_size":8,
            "intermediate_size_mlp":24,"num_hidden_layers":8,"num_attention_heads":2,
            "attention_chunk_size":4,"interleave_moe_layer_step":2,"num_local_experts":4,
            "attn_temperature_tuning":4,"no_rope_layers":[]}}"#,
        );
        // Overrides go under text_config, as vLLM's do.
        let o = serde_json::json!({"text_config": {"num_hidden_layers": 4}});
        let c = ModelConfig::from_hf_dir_with(dir.path(), Some(&o)).unwrap();
        assert_eq!(c.architecture(), Architecture::Llama4);
        assert_eq!(c.weight_prefix(), "language_model.");
        assert_eq!(c.num_hidden_layers, 4);
        let ropes: Vec<bool> = (0..4).map(|i| c.uses_rope(i)).collect();
        assert_eq!(ropes, [true, true, true, false]);
        assert_eq!(c.attention_window(0), AttentionWindow::Chunked(4));
        assert_eq!(c.attention_window(3), AttentionWindow::Full);
        assert_eq!(c.qk_norm(0), QkNorm::L2AfterRope);
        assert_eq!(c.qk_norm(3), QkNorm::None);
        assert_eq!(c.attn_temperature(0), None);
        assert_eq!(c.attn_temperature(3), Some((8192.0, 0.1)));
        let sparse: Vec<bool> = (0..4).map(|i| c.moe_for_layer(i).is_some()).collect();
        assert_eq!(sparse, [false, true, false, true]);
        let moe = c.moe_for_layer(1).unwrap();
        assert_eq!((moe.num_experts, moe.top_k), (4, 1));
        assert_eq!(moe.routing, MoeRouting::SigmoidScalesInput);
        assert_eq!(moe.shared_expert_intermediate_size, Some(8));
        assert_eq!(c.mlp_intermediate_size(), 24);
        assert_eq!(AttentionWindow::Chunked(4).first_visible(6), 4);
        assert_eq!(AttentionWindow::Sliding(4).first_visible(6), 3);
        assert_eq!(AttentionWindow::Sliding(8).first_visible(2), 0);
    }

    #[test]
    fn hostile_llama4_values_are_refused_not_used() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            r#"{"architectures":["Llama4ForCausalLM"],"vocab_size":10,"hidden_size":16,
            "intermediate_size":8,"num_hidden_layers":4,"num_attention_heads":2,
            "attention_chunk_size":4}"#,
        );
        for (overrides, says) in [
            (
                serde_json::json!({"attention_chunk_size": 0}),
                "attention_chunk_size",
            ),
            (serde_json::json!({"floor_scale": 0.0}), "floor_scale"),
            (serde_json::json!({"floor_scale": -1e300}), "floor_scale"),
            (
                serde_json::json!({"no_rope_layers": [1, 0]}),
                "no_rope_layers",
            ),
            (
                serde_json::json!({"layer_types": vec!["sliding_attention"; 4]}),
                "layer type",
            ),
            (
                serde_json::json!({"num_experts_per_tok": 5, "num_local_experts": 4}),
                "experts",
            ),
            (
                serde_json::json!({"intermediate_size_mlp": 0}),
                "intermediate",
            ),
        ] {
            let err = ModelConfig::from_hf_dir_with(dir.path(), Some(&overrides))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{overrides}: {err}");
        }
        // A value of the wrong type for a flag reads as off, never as on.
        let o = serde_json::json!({"attn_temperature_tuning": "yes"});
        let c = ModelConfig::from_hf_dir_with(dir.path(), Some(&o)).unwrap();
        assert_eq!(c.attn_temperature(3), None);
    }
}
