//! Sampling defaults a model ships with, applied as vLLM (>= 0.7) applies
//! them: `--generation-config auto` (the default) reads the model's
//! `generation_config.json` and uses its `temperature`, `top_p`, `top_k`,
//! `min_p`, `repetition_penalty` and `max_new_tokens` for the fields a
//! request leaves out; `vllm` ignores the file (neutral defaults:
//! temperature 1, the whole context); a folder reads the file from there.
//! `--override-generation-config '<json>'` sets fields over either.
//!
//! The embedded `smollm2` GGUF carries no such file, so its defaults are
//! the ones its model card recommends (temperature 0.2, top_p 0.9): at
//! temperature 1 the 135M model rambles, which made a README request with
//! no `temperature` look broken.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use model_files::{ModelFormat, ModelSource};
use serde::Deserialize;

/// Where sampling defaults come from (`--generation-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenerationConfigSource {
    /// The model's own `generation_config.json` (or the embedded model's
    /// recommended settings).
    Auto,
    /// No model defaults: the request's fields, else OpenAI's defaults.
    Vllm,
    /// `generation_config.json` in this folder.
    Folder(PathBuf),
}

impl std::str::FromStr for GenerationConfigSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Self::Auto,
            "vllm" => Self::Vllm,
            folder => Self::Folder(PathBuf::from(folder)),
        })
    }
}

/// Defaults for the sampling fields a request leaves out. `None` means no
/// default: the OpenAI default applies (temperature 1, top_p 1, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    /// `max_new_tokens` in `generation_config.json`, `max_tokens` in an
    /// override; capped by the room left in the context.
    #[serde(alias = "max_new_tokens")]
    pub max_tokens: Option<i64>,
}

/// The fields `--override-generation-config` may set.
const OVERRIDE_FIELDS: [&str; 7] = [
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repetition_penalty",
    "max_tokens",
    "max_new_tokens",
];

/// The model card's recommendation for SmolLM2-135M-Instruct
/// (`temperature=0.2, top_p=0.9`); the GGUF has no sampling metadata.
fn smollm2_defaults() -> SamplingDefaults {
    SamplingDefaults {
        temperature: Some(0.2),
        top_p: Some(0.9),
        ..SamplingDefaults::default()
    }
}

impl SamplingDefaults {
    /// The defaults for `source` per `--generation-config` and
    /// `--override-generation-config` (a JSON object, or `None`).
    pub fn load(
        source: &ModelSource,
        config: &GenerationConfigSource,
        overrides: Option<&str>,
    ) -> Result<Self> {
        let mut defaults = match config {
            GenerationConfigSource::Vllm => Self::default(),
            GenerationConfigSource::Folder(dir) => Self::from_folder(dir)?.with_context(|| {
                format!(
                    "--generation-config: no generation_config.json in {}",
                    dir.display()
                )
            })?,
            GenerationConfigSource::Auto => match source.format {
                ModelFormat::Gguf if source.name == "smollm2" => smollm2_defaults(),
                ModelFormat::Gguf => Self::default(),
                _ => Self::from_folder(&source.path)?.unwrap_or_default(),
            },
        };
        if let Some(json) = overrides {
            defaults.apply_overrides(json)?;
        }
        Ok(defaults)
    }

    /// `dir/generation_config.json`, or `None` if there is none.
    fn from_folder(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("generation_config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let parsed =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(parsed))
    }

    /// Sets the fields of `json` (an object of [`OVERRIDE_FIELDS`]) over
    /// these defaults; an unknown field is an error naming it.
    fn apply_overrides(&mut self, json: &str) -> Result<()> {
        let value: serde_json::Value =
            serde_json::from_str(json).context("--override-generation-config is not JSON")?;
        let Some(object) = value.as_object() else {
            bail!("--override-generation-config must be a JSON object");
        };
        if let Some(bad) = object
            .keys()
            .find(|k| !OVERRIDE_FIELDS.contains(&k.as_str()))
        {
            bail!(
                "--override-generation-config: unknown field `{bad}` (known: {})",
                OVERRIDE_FIELDS.join(", ")
            );
        }
        let over: Self = serde_json::from_value(value)
            .context("--override-generation-config: a field has the wrong type")?;
        self.temperature = over.temperature.or(self.temperature);
        self.top_p = over.top_p.or(self.top_p);
        self.top_k = over.top_k.or(self.top_k);
        self.min_p = over.min_p.or(self.min_p);
        self.repetition_penalty = over.repetition_penalty.or(self.repetition_penalty);
        self.max_tokens = over.max_tokens.or(self.max_tokens);
        Ok(())
    }

    /// The non-default fields as `name=value`, for the startup log (as
    /// vLLM logs "Default sampling parameters have been overridden").
    pub fn describe(&self) -> Option<String> {
        let fields: Vec<String> = [
            ("temperature", self.temperature.map(|v| v.to_string())),
            ("top_p", self.top_p.map(|v| v.to_string())),
            ("top_k", self.top_k.map(|v| v.to_string())),
            ("min_p", self.min_p.map(|v| v.to_string())),
            (
                "repetition_penalty",
                self.repetition_penalty.map(|v| v.to_string()),
            ),
            ("max_tokens", self.max_tokens.map(|v| v.to_string())),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
        (!fields.is_empty()).then(|| fields.join(", "))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn folder_source(dir: &Path) -> ModelSource {
        ModelSource {
            name: dir.display().to_string(),
            format: ModelFormat::HfFolder,
            path: dir.to_path_buf(),
            builtin_config: None,
        }
    }

    fn smollm2() -> ModelSource {
        ModelSource {
            name: "smollm2".into(),
            format: ModelFormat::Gguf,
            path: PathBuf::from("/nonexistent.gguf"),
            builtin_config: None,
        }
    }

    #[test]
    fn auto_reads_the_models_generation_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"bos_token_id": 1, "do_sample": true, "temperature": 0.6, "top_p": 0.95, "max_new_tokens": 100}"#,
        )
        .unwrap();
        let d = SamplingDefaults::load(
            &folder_source(dir.path()),
            &GenerationConfigSource::Auto,
            None,
        )
        .unwrap();
        assert_eq!(d.temperature, Some(0.6));
        assert_eq!(d.top_p, Some(0.95));
        assert_eq!(d.max_tokens, Some(100));
        assert_eq!(d.top_k, None);
    }

    #[test]
    fn vllm_ignores_it_and_a_missing_file_is_no_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let src = folder_source(dir.path());
        let none = SamplingDefaults::load(&src, &GenerationConfigSource::Auto, None).unwrap();
        assert_eq!(none, SamplingDefaults::default());
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"temperature": 0.6}"#,
        )
        .unwrap();
        let vllm = SamplingDefaults::load(&src, &GenerationConfigSource::Vllm, None).unwrap();
        assert_eq!(vllm, SamplingDefaults::default());
        assert_eq!(vllm.describe(), None);
    }

    #[test]
    fn a_folder_is_read_and_must_hold_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let src: GenerationConfigSource = dir.path().to_str().unwrap().parse().unwrap();
        let err = SamplingDefaults::load(&smollm2(), &src, None).unwrap_err();
        assert!(
            format!("{err:#}").contains("no generation_config.json"),
            "{err:#}"
        );
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"top_k": 20}"#,
        )
        .unwrap();
        let d = SamplingDefaults::load(&smollm2(), &src, None).unwrap();
        assert_eq!(d.top_k, Some(20));
        assert_eq!(
            d.temperature, None,
            "the folder replaces the embedded defaults"
        );
    }

    #[test]
    fn smollm2_carries_its_model_cards_sampling() {
        let d = SamplingDefaults::load(&smollm2(), &GenerationConfigSource::Auto, None).unwrap();
        assert_eq!((d.temperature, d.top_p), (Some(0.2), Some(0.9)));
        assert_eq!(d.describe().unwrap(), "temperature=0.2, top_p=0.9");
    }

    #[test]
    fn overrides_win_and_unknown_fields_are_refused() {
        let d = SamplingDefaults::load(
            &smollm2(),
            &GenerationConfigSource::Auto,
            Some(r#"{"temperature": 0.0, "max_tokens": 64}"#),
        )
        .unwrap();
        assert_eq!(d.temperature, Some(0.0));
        assert_eq!(d.top_p, Some(0.9));
        assert_eq!(d.max_tokens, Some(64));
        for bad in [r#"{"temprature": 1}"#, "[1]", "{", r#"{"top_k": "x"}"#] {
            let err = SamplingDefaults::load(&smollm2(), &GenerationConfigSource::Auto, Some(bad))
                .unwrap_err();
            assert!(
                format!("{err:#}").contains("--override-generation-config"),
                "{bad}: {err:#}"
            );
        }
    }
}
