//! Text <-> token ids for the local model, wrapping the HF `tokenizers`
//! crate so that what we feed the model is exactly what `transformers` would.
//!
//! Two sources: an HF folder (`tokenizer.json`, with `tokenizer_config.json`
//! and `generation_config.json` for the special tokens), or the tokenizer
//! embedded in a GGUF file's metadata (see [`gguf`]). Both end up as one
//! `tokenizers::Tokenizer` plus the few facts the engine needs around it:
//! the BOS token, the end-of-sequence ids that stop generation, and whether
//! decoding cleans up spaces before punctuation the way `transformers` does.

pub mod gguf;

use std::path::{Path, PathBuf};

use model_files::gguf::GgufFile;
use model_files::{ModelFormat, ModelSource};
use serde_json::Value;

/// Why a tokenizer could not be loaded or could not encode/decode.
///
/// One enum for the tokenization layer, so the engine can map it to an
/// HTTP status once; messages name the file or GGUF key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// An HF folder without `tokenizer.json` (we do not convert slow
    /// tokenizers at run time).
    #[error("{0} not found: an HF model folder needs a tokenizer.json")]
    MissingTokenizerJson(PathBuf),
    /// A side file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A side file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// `tokenizers` rejected a `tokenizer.json`.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What `tokenizers` said.
        message: String,
    },
    /// The GGUF container itself could not be read.
    #[error("cannot read GGUF file: {0}")]
    Gguf(#[from] model_files::gguf::GgufError),
    /// A GGUF file lacks a tokenizer key we need.
    #[error("GGUF file has no tokenizer metadata: missing key `{0}`")]
    MissingGgufKey(String),
    /// A GGUF tokenizer key holds the wrong type.
    #[error("GGUF key `{key}` should be {expected}")]
    BadGgufValue {
        /// The metadata key.
        key: String,
        /// The type we expected, in words.
        expected: &'static str,
    },
    /// A GGUF tokenizer family we cannot build.
    #[error(
        "unsupported GGUF tokenizer model `{0}`: only byte-level BPE \
         (tokenizer.ggml.model = \"gpt2\") is implemented"
    )]
    UnsupportedModel(String),
    /// A special-token id in GGUF metadata is outside the vocabulary.
    #[error("GGUF key `{key}` names token id {id}, but the vocabulary has {vocab_size} tokens")]
    TokenIdOutOfRange {
        /// The metadata key.
        key: String,
        /// The bad id.
        id: u64,
        /// Number of tokens in `tokenizer.ggml.tokens`.
        vocab_size: usize,
    },
    /// A BPE merge that is not two tokens separated by one space.
    #[error("GGUF merge #{index} `{merge}` is not `left right`")]
    BadMerge {
        /// Position in `tokenizer.ggml.merges`.
        index: usize,
        /// The merge text.
        merge: String,
    },
    /// `tokenizers` refused a component we assembled from GGUF metadata.
    #[error("cannot build tokenizer from GGUF metadata: {0}")]
    Build(String),
    /// Encoding failed inside `tokenizers`.
    #[error("encode failed: {0}")]
    Encode(String),
    /// Decoding failed inside `tokenizers`.
    #[error("decode failed: {0}")]
    Decode(String),
}

/// The model's tokenizer plus the special tokens the engine needs.
///
/// Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<(u32, String)>,
    eos: Option<String>,
    eos_ids: Vec<u32>,
    unk: Option<String>,
    pad: Option<String>,
    clean_up_tokenization_spaces: bool,
}

impl Tokenizer {
    /// Loads the tokenizer of a resolved `--model`: the GGUF metadata for a
    /// `.gguf` file, `tokenizer.json` for an HF folder.
    pub fn from_model_source(source: &ModelSource) -> Result<Self, TokenizerError> {
        match source.format {
            ModelFormat::Gguf => {
                let file = GgufFile::open(&source.path)?;
                Self::from_gguf(&file)
            }
            ModelFormat::HfFolder => Self::from_hf_dir(&source.path),
        }
    }

    /// Loads `dir/tokenizer.json`; the BOS/EOS strings and
    /// `clean_up_tokenization_spaces` come from `tokenizer_config.json`, and
    /// extra stop ids from `generation_config.json`'s `eos_token_id`, as
    /// `transformers` and vLLM read them.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(TokenizerError::MissingTokenizerJson(path));
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| TokenizerError::Load {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let config =
            read_json_if_exists(&dir.join("tokenizer_config.json"))?.unwrap_or(Value::Null);
        let special = |key: &str| config.get(key).and_then(token_content).map(str::to_string);
        let bos = special("bos_token").and_then(|t| inner.token_to_id(&t).map(|id| (id, t)));
        let eos = special("eos_token");
        let mut eos_ids: Vec<u32> = eos.iter().filter_map(|t| inner.token_to_id(t)).collect();
        if let Some(gen) = read_json_if_exists(&dir.join("generation_config.json"))? {
            let extra = match gen.get("eos_token_id") {
                Some(Value::Array(ids)) => ids.iter().filter_map(Value::as_u64).collect(),
                Some(v) => v.as_u64().into_iter().collect(),
                None => Vec::new(),
            };
            for id in extra.into_iter().filter_map(|id| u32::try_from(id).ok()) {
                if !eos_ids.contains(&id) {
                    eos_ids.push(id);
                }
            }
        }
        let clean_up_tokenization_spaces = config
            .get("clean_up_tokenization_spaces")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            inner,
            bos,
            eos,
            eos_ids,
            unk: special("unk_token"),
            pad: special("pad_token"),
            clean_up_tokenization_spaces,
        })
    }

    /// Builds the tokenizer that the GGUF file's `tokenizer.ggml.*`
    /// metadata describes (see [`gguf::GgufTokenizerSpec`]).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        gguf::GgufTokenizerSpec::from_gguf(file)?.build()
    }

    /// Token ids of `text`. With `add_special_tokens`, the post-processor
    /// adds BOS/EOS as the model's metadata asks (prompts of the completions
    /// API); chat prompts already carry them from the template, so pass
    /// `false` there. Special tokens written in `text` (`<|im_start|>`) are
    /// always recognised, as in `transformers`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, identical to `transformers`' `decode`: ids outside the
    /// vocabulary are dropped (as `tokenizers` does), and spaces before
    /// punctuation are cleaned up when the tokenizer's config asks for it.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| TokenizerError::Decode(e.to_string()))?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// The BOS id, for callers that build prompts from ids.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos.as_ref().map(|(id, _)| *id)
    }

    /// Ids that end generation (EOS, plus end-of-turn ids the model's
    /// metadata lists), for the stop checker.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The BOS string, exposed to chat templates as `bos_token`.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_ref().map(|(_, t)| t.as_str())
    }

    /// The EOS string, exposed to chat templates as `eos_token`.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_deref()
    }

    /// The unknown-token string, exposed to chat templates as `unk_token`.
    pub fn unk_token(&self) -> Option<&str> {
        self.unk.as_deref()
    }

    /// The padding string, exposed to chat templates as `pad_token`.
    pub fn pad_token(&self) -> Option<&str> {
        self.pad.as_deref()
    }

    /// Id of a token string (added tokens included), e.g. to resolve stop
    /// tokens named in a request.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Raw token string of an id (byte-level form, not decoded text), for
    /// logprob responses.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of token ids, added tokens included (`len(tokenizer)` in
    /// `transformers`).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether `decode` removes spaces before punctuation, as
    /// `transformers`' `clean_up_tokenization_spaces` does.
    pub fn clean_up_tokenization_spaces(&self) -> bool {
        self.clean_up_tokenization_spaces
    }

    /// Overrides the space clean-up of `decode`, for deployments that want
    /// the raw text whatever `transformers` would do.
    pub fn with_clean_up_tokenization_spaces(mut self, clean_up: bool) -> Self {
        self.clean_up_tokenization_spaces = clean_up;
        self
    }

    /// The wrapped `tokenizers` tokenizer, for incremental decoding.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// `transformers`' `PreTrainedTokenizerBase.clean_up_tokenization`, byte for
/// byte (the same replacements in the same order).
fn clean_up_tokenization(text: &str) -> String {
    text.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// A special token in `tokenizer_config.json` is a string or an
/// `AddedToken` object with `content`.
fn token_content(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str),
        _ => None,
    }
}

/// Reads a JSON side file, `None` if it does not exist.
pub(crate) fn read_json_if_exists(path: &Path) -> Result<Option<Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| TokenizerError::Json {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tokenizer_json_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::MissingTokenizerJson(_)),
            "{err}"
        );
        assert!(err.to_string().contains("tokenizer.json"));
    }

    #[test]
    fn corrupt_tokenizer_json_is_a_load_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tokenizer.json"),
            "{\"not\": \"a tokenizer\"}",
        )
        .unwrap();
        let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Load { .. }), "{err}");
    }

    #[test]
    fn corrupt_tokenizer_config_is_a_json_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tiny_tokenizer_json()).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), "{oops").unwrap();
        let err = Tokenizer::from_hf_dir(dir.path()).unwrap_err();
        assert!(matches!(err, TokenizerError::Json { .. }), "{err}");
    }

    #[test]
    fn hf_dir_reads_special_tokens_and_generation_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), tiny_tokenizer_json()).unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"bos_token": {"content": "<s>"}, "eos_token": "</s>", "clean_up_tokenization_spaces": true}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": [2, 3]}"#,
        )
        .unwrap();
        let tok = Tokenizer::from_hf_dir(dir.path()).unwrap();
        assert_eq!(tok.bos_token(), Some("<s>"));
        assert_eq!(tok.bos_token_id(), Some(1));
        assert_eq!(tok.eos_token(), Some("</s>"));
        assert_eq!(tok.eos_token_ids(), &[2, 3]);
        assert!(tok.clean_up_tokenization_spaces());
        assert_eq!(tok.encode("ab", false).unwrap(), vec![4, 5]);
        assert_eq!(tok.vocab_size(), 6);
    }

    #[test]
    fn clean_up_matches_transformers() {
        assert_eq!(
            clean_up_tokenization("a , b . c ! d ? I 'm , it 's we 're do n't ' x"),
            "a, b. c! d? I'm, it's we're don't'x"
        );
    }

    /// A character-level BPE tokenizer with six ids, small enough to write inline.
    fn tiny_tokenizer_json() -> &'static str {
        r#"{"version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [
              {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
              {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
              {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
              "continuing_subword_prefix": null, "end_of_word_suffix": null,
              "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
              "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "x": 3, "a": 4, "b": 5}, "merges": []}}"#
    }
}
