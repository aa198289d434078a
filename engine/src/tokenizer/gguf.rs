//! The tokenizer embedded in a GGUF file's `tokenizer.ggml.*` metadata,
//! rebuilt as an HF `tokenizers` pipeline.
//!
//! The reference is `transformers` loading the same file
//! (`integrations/ggml.py`, `GGUFLlamaConverter` for a byte-level BPE
//! vocabulary): a BPE model over `tokenizer.ggml.tokens` and `merges` with
//! `byte_fallback` and `fuse_unk`, control tokens (`token_type` 3) added as
//! special tokens, no normalizer, and the decoder chain
//! `ByteFallback, Fuse, Replace(▁→' '), ByteLevel`. Where `transformers`
//! misreads the metadata we follow the metadata as llama.cpp does, because
//! the model was trained that way:
//!
//! * `transformers` reports `eos_token` = the BOS token and prepends BOS to
//!   every encode; we use `tokenizer.ggml.eos_token_id` and
//!   `add_bos_token`/`add_eos_token`.
//! * `transformers` ignores `tokenizer.ggml.pre` and always splits with the
//!   GPT-2 regex; we pick the split llama.cpp uses for that name (e.g.
//!   `smollm`: every digit alone, then the GPT-2 regex, which is also what the
//!   model's own `tokenizer.json` does). For SmolLM2 the two give the same
//!   ids, since its vocabulary has no multi-digit tokens; unknown names fall
//!   back to the GPT-2 regex, as `transformers` does.
//! * User-defined tokens (`token_type` 4) are matched in text as added
//!   (non-special) tokens, as llama.cpp does; `transformers` drops them.

use model_files::gguf::{GgufFile, GgufValue};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

use super::{Tokenizer, TokenizerError};

/// `token_type` of a control token (`<|im_start|>`): a special added token.
const TOKEN_TYPE_CONTROL: i64 = 3;
/// `token_type` of a user-defined token: an added, non-special token.
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// llama.cpp's pre-tokenizer regex for `llama-bpe` (Llama 3) vocabularies.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// llama.cpp's pre-tokenizer regex for `qwen2` vocabularies.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Everything a GGUF file says about its tokenizer, read once into plain
/// data so the construction is testable without a GGUF file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufTokenizerSpec {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) is supported.
    pub model: String,
    /// `tokenizer.ggml.pre`: which pre-tokenizer split to use.
    pub pre: Option<String>,
    /// `general.architecture`: decides `transformers`' space clean-up.
    pub architecture: Option<String>,
    /// `tokenizer.ggml.tokens`: token strings, index = id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.merges`: `"left right"` pairs, by priority.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.token_type`, empty when absent.
    pub token_types: Vec<i64>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id` (end of turn), also a stop id.
    pub eot_token_id: Option<u32>,
    /// `tokenizer.ggml.eom_token_id` (end of message), also a stop id.
    pub eom_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token` (llama.cpp's default for BPE: true).
    pub add_bos_token: bool,
    /// `tokenizer.ggml.add_eos_token` (default false).
    pub add_eos_token: bool,
}

impl GgufTokenizerSpec {
    /// Reads the `tokenizer.ggml.*` keys, checking types and id ranges.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model = required(file, "tokenizer.ggml.model")?
            .as_str()
            .ok_or_else(|| bad("tokenizer.ggml.model", "a string"))?
            .to_string();
        let tokens = string_array(file, "tokenizer.ggml.tokens")?
            .ok_or_else(|| TokenizerError::MissingGgufKey("tokenizer.ggml.tokens".into()))?;
        let merges = string_array(file, "tokenizer.ggml.merges")?.unwrap_or_default();
        let token_types = match file.get("tokenizer.ggml.token_type") {
            None => Vec::new(),
            Some(v) => v
                .as_array()
                .and_then(|items| {
                    items
                        .iter()
                        .map(GgufValue::as_i64)
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad("tokenizer.ggml.token_type", "an array of integers"))?,
        };
        let optional_str = |key: &str| -> Result<Option<String>, TokenizerError> {
            file.get(key)
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(key, "a string"))
                })
                .transpose()
        };
        let vocab_size = tokens.len();
        let id = |key: &str| token_id(file, key, vocab_size);
        let flag = |key: &str, default: bool| -> Result<bool, TokenizerError> {
            file.get(key)
                .map(|v| v.as_bool().ok_or_else(|| bad(key, "a bool")))
                .transpose()
                .map(|b| b.unwrap_or(default))
        };
        Ok(Self {
            pre: optional_str("tokenizer.ggml.pre")?,
            architecture: optional_str("general.architecture")?,
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            eot_token_id: id("tokenizer.ggml.eot_token_id")?,
            eom_token_id: id("tokenizer.ggml.eom_token_id")?,
            unknown_token_id: id("tokenizer.ggml.unknown_token_id")?,
            padding_token_id: id("tokenizer.ggml.padding_token_id")?,
            add_bos_token: flag("tokenizer.ggml.add_bos_token", true)?,
            add_eos_token: flag("tokenizer.ggml.add_eos_token", false)?,
            model,
            tokens,
            merges,
            token_types,
        })
    }

    /// Assembles the `tokenizers` pipeline this metadata describes.
    pub fn build(&self) -> Result<Tokenizer, TokenizerError> {
        if self.model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel(self.model.clone()));
        }
        if self.tokens.is_empty() {
            return Err(TokenizerError::MissingGgufKey(
                "tokenizer.ggml.tokens".into(),
            ));
        }
        if self.merges.is_empty() {
            return Err(TokenizerError::MissingGgufKey(
                "tokenizer.ggml.merges".into(),
            ));
        }
        if !self.token_types.is_empty() && self.token_types.len() != self.tokens.len() {
            return Err(bad(
                "tokenizer.ggml.token_type",
                "one entry per token of tokenizer.ggml.tokens",
            ));
        }
        let name = |id: Option<u32>| self.token(id);

        let mut vocab = ahash::AHashMap::with_capacity(self.tokens.len());
        for (id, token) in self.tokens.iter().enumerate() {
            // Later duplicates win, as in `{word: i for i, word in enumerate(tokens)}`.
            vocab.insert(token.clone(), id as u32);
        }
        let merges = self
            .merges
            .iter()
            .enumerate()
            .map(|(index, merge)| {
                merge
                    .split_once(' ')
                    .map(|(l, r)| (l.to_string(), r.to_string()))
                    .ok_or_else(|| TokenizerError::BadMerge {
                        index,
                        merge: merge.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .fuse_unk(true)
            .byte_fallback(true);
        if let Some(unk) = name(self.unknown_token_id) {
            builder = builder.unk_token(unk);
        }
        let bpe = builder
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;

        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(self.pre_tokenizer()?));
        inner.with_decoder(Some(decoder()?));
        inner.with_post_processor(self.post_processor()?);

        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            self.tokens
                .iter()
                .zip(&self.token_types)
                .filter(|(_, t)| **t == kind)
                .map(|(token, _)| AddedToken::from(token.clone(), special).normalized(false))
                .collect()
        };
        inner.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        inner.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));

        let bos = self.bos_token_id.zip(name(self.bos_token_id));
        let mut eos_ids = Vec::new();
        for id in [self.eos_token_id, self.eot_token_id, self.eom_token_id]
            .into_iter()
            .flatten()
        {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        // `transformers` turns on `clean_up_tokenization_spaces` for BPE
        // vocabularies it loads through its Llama GGUF converter (the
        // "llama-3 tokenizer" path); decode must match it.
        let clean_up = matches!(
            self.architecture.as_deref(),
            Some("llama" | "deci" | "decilm")
        );
        Ok(Tokenizer {
            inner,
            bos,
            eos: name(self.eos_token_id),
            eos_ids,
            unk: name(self.unknown_token_id),
            pad: name(self.padding_token_id),
            clean_up_tokenization_spaces: clean_up,
        })
    }

    /// The string of a token id, `None` for no id or one out of range.
    fn token(&self, id: Option<u32>) -> Option<String> {
        id.and_then(|id| self.tokens.get(id as usize)).cloned()
    }

    /// The split llama.cpp applies for `tokenizer.ggml.pre`, followed by the
    /// byte-level mapping.
    fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper, TokenizerError> {
        let build_err = |e: tokenizers::Error| TokenizerError::Build(e.to_string());
        let split = |regex: &str| -> Result<PreTokenizerWrapper, TokenizerError> {
            let split = Split::new(
                SplitPattern::Regex(regex.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(build_err)?;
            Ok(PreSequence::new(vec![
                split.into(),
                ByteLevel::new(false, false, false).into(),
            ])
            .into())
        };
        Ok(match self.pre.as_deref() {
            Some("smollm" | "starcoder" | "refact") => PreSequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, false, true).into(),
            ])
            .into(),
            Some("llama-bpe" | "llama3" | "llama-v3" | "dbrx" | "smaug-bpe") => {
                split(LLAMA3_SPLIT)?
            }
            Some("qwen2" | "deepseek-r1-qwen") => split(QWEN2_SPLIT)?,
            _ => ByteLevel::new(false, false, true).into(),
        })
    }

    /// BOS/EOS around the text as `add_bos_token`/`add_eos_token` ask.
    fn post_processor(&self) -> Result<Option<PostProcessorWrapper>, TokenizerError> {
        let mut special = Vec::new();
        let mut prefix = Vec::new();
        let mut suffix = Vec::new();
        if self.add_bos_token {
            if let Some((id, token)) = self.bos_token_id.zip(self.token(self.bos_token_id)) {
                prefix.push(token.clone());
                special.push((token, id));
            }
        }
        if self.add_eos_token {
            if let Some((id, token)) = self.eos_token_id.zip(self.token(self.eos_token_id)) {
                suffix.push(token.clone());
                special.push((token, id));
            }
        }
        if special.is_empty() {
            return Ok(None);
        }
        let template = |seq: &str, type_id: u32| -> Vec<String> {
            prefix
                .iter()
                .map(|t| format!("{t}:{type_id}"))
                .chain([format!("${seq}:{type_id}")])
                .chain(suffix.iter().map(|t| format!("{t}:{type_id}")))
                .collect()
        };
        let mut pair = template("A", 0);
        pair.extend(template("B", 1));
        special.dedup();
        let processor = TemplateProcessing::builder()
            .try_single(template("A", 0))
            .and_then(|b| b.try_pair(pair))
            .map_err(|e| TokenizerError::Build(e.to_string()))?
            .special_tokens(special)
            .build()
            .map_err(|e| TokenizerError::Build(e.to_string()))?;
        Ok(Some(processor.into()))
    }
}

/// `transformers`' decoder for a GGUF BPE vocabulary.
fn decoder() -> Result<DecoderWrapper, TokenizerError> {
    let replace =
        Replace::new("\u{2581}", " ").map_err(|e| TokenizerError::Build(e.to_string()))?;
    Ok(DecoderSequence::new(vec![
        ByteFallback::new().into(),
        Fuse::new().into(),
        replace.into(),
        ByteLevel::default().into(),
    ])
    .into())
}

fn required<'a>(file: &'a GgufFile, key: &str) -> Result<&'a GgufValue, TokenizerError> {
    file.get(key)
        .ok_or_else(|| TokenizerError::MissingGgufKey(key.to_string()))
}

fn bad(key: &str, expected: &'static str) -> TokenizerError {
    TokenizerError::BadGgufValue {
        key: key.to_string(),
        expected,
    }
}

/// An array of strings, `None` when the key is absent.
fn string_array(file: &GgufFile, key: &str) -> Result<Option<Vec<String>>, TokenizerError> {
    let Some(value) = file.get(key) else {
        return Ok(None);
    };
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .map(Some)
        .ok_or_else(|| bad(key, "an array of strings"))
}

/// A token id that must index `tokenizer.ggml.tokens`.
fn token_id(file: &GgufFile, key: &str, vocab_size: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(value) = file.get(key) else {
        return Ok(None);
    };
    let id = value
        .as_u64()
        .ok_or_else(|| bad(key, "an unsigned integer"))?;
    match u32::try_from(id) {
        Ok(small) if (small as usize) < vocab_size => Ok(Some(small)),
        _ => Err(TokenizerError::TokenIdOutOfRange {
            key: key.to_string(),
            id,
            vocab_size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata value for [`write_gguf`].
    enum Kv {
        Str(&'static str),
        U32(u32),
        Bool(bool),
        Strs(Vec<&'static str>),
        I32s(Vec<i32>),
    }

    /// Writes a GGUF v3 file with no tensors and the given metadata.
    fn write_gguf(kvs: &[(&str, Kv)]) -> (tempfile::TempDir, GgufFile) {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend((s.len() as u64).to_le_bytes());
            out.extend(s.as_bytes());
        }
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(0u64.to_le_bytes());
        out.extend((kvs.len() as u64).to_le_bytes());
        for (key, value) in kvs {
            string(&mut out, key);
            match value {
                Kv::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    string(&mut out, s);
                }
                Kv::U32(v) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(v.to_le_bytes());
                }
                Kv::Bool(b) => {
                    out.extend(7u32.to_le_bytes());
                    out.push(u8::from(*b));
                }
                Kv::Strs(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for s in items {
                        string(&mut out, s);
                    }
                }
                Kv::I32s(items) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((items.len() as u64).to_le_bytes());
                    for v in items {
                        out.extend(v.to_le_bytes());
                    }
                }
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        std::fs::write(&path, out).unwrap();
        let file = GgufFile::open(&path).unwrap();
        (dir, file)
    }

    /// A byte-level BPE vocabulary: `" ab"` is one token, `<tool>` is
    /// user-defined, ids 0-2 are control tokens.
    fn tiny_bpe(model: &'static str, extra: Vec<(&'static str, Kv)>) -> Vec<(&'static str, Kv)> {
        let mut kvs = vec![
            ("general.architecture", Kv::Str("llama")),
            ("tokenizer.ggml.model", Kv::Str(model)),
            ("tokenizer.ggml.pre", Kv::Str("smollm")),
            (
                "tokenizer.ggml.tokens",
                Kv::Strs(vec![
                    "<unk>", "<s>", "</s>", "a", "b", "ab", "Ġ", "Ġab", "<tool>", "1", "2",
                ]),
            ),
            ("tokenizer.ggml.merges", Kv::Strs(vec!["a b", "Ġ ab"])),
            (
                "tokenizer.ggml.token_type",
                Kv::I32s(vec![3, 3, 3, 1, 1, 1, 1, 1, 4, 1, 1]),
            ),
            ("tokenizer.ggml.bos_token_id", Kv::U32(1)),
            ("tokenizer.ggml.eos_token_id", Kv::U32(2)),
            ("tokenizer.ggml.unknown_token_id", Kv::U32(0)),
        ];
        kvs.extend(extra);
        kvs
    }

    #[test]
    fn builds_byte_level_bpe_with_bos_eos_and_added_tokens() {
        let (_dir, file) = write_gguf(&tiny_bpe(
            "gpt2",
            vec![
                ("tokenizer.ggml.add_bos_token", Kv::Bool(true)),
                ("tokenizer.ggml.add_eos_token", Kv::Bool(true)),
            ],
        ));
        let tok = super::super::Tokenizer::from_gguf(&file).unwrap();
        assert_eq!(tok.encode("ab", true).unwrap(), vec![1, 5, 2]);
        assert_eq!(tok.encode(" ab", false).unwrap(), vec![7]);
        assert_eq!(
            tok.encode("ab<tool></s>12", false).unwrap(),
            vec![5, 8, 2, 9, 10]
        );
        assert_eq!(
            tok.decode(&[1, 7, 8, 2], false).unwrap(),
            "<s> ab<tool></s>"
        );
        assert_eq!(tok.decode(&[1, 7, 8, 2], true).unwrap(), " ab<tool>");
        assert_eq!(tok.bos_token_id(), Some(1));
        assert_eq!(tok.bos_token(), Some("<s>"));
        assert_eq!(tok.eos_token(), Some("</s>"));
        assert_eq!(tok.eos_token_ids(), &[2]);
        assert_eq!(tok.vocab_size(), 11);
        assert_eq!(tok.token_to_id("Ġab"), Some(7));
        assert_eq!(tok.id_to_token(7).as_deref(), Some("Ġab"));
        // llama.cpp's default for BPE vocabularies: add BOS.
        let (_dir, file) = write_gguf(&tiny_bpe("gpt2", vec![]));
        let tok = super::super::Tokenizer::from_gguf(&file).unwrap();
        assert_eq!(tok.encode("ab", true).unwrap(), vec![1, 5]);
    }

    #[test]
    fn gguf_without_tokenizer_metadata_is_a_clear_error() {
        let (_dir, file) = write_gguf(&[("general.architecture", Kv::Str("llama"))]);
        let err = super::super::Tokenizer::from_gguf(&file).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::MissingGgufKey(k) if k == "tokenizer.ggml.model"),
            "{err}"
        );
    }

    #[test]
    fn sentencepiece_gguf_is_unsupported() {
        let (_dir, file) = write_gguf(&tiny_bpe("llama", vec![]));
        let err = super::super::Tokenizer::from_gguf(&file).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::UnsupportedModel(m) if m == "llama"),
            "{err}"
        );
        assert!(err.to_string().contains("gpt2"));
    }

    #[test]
    fn bad_ids_merges_and_types_are_errors() {
        let (_dir, file) = write_gguf(&tiny_bpe(
            "gpt2",
            vec![("tokenizer.ggml.padding_token_id", Kv::U32(99))],
        ));
        let err = super::super::Tokenizer::from_gguf(&file).unwrap_err();
        assert!(
            matches!(
                err,
                TokenizerError::TokenIdOutOfRange {
                    id: 99,
                    vocab_size: 11,
                    ..
                }
            ),
            "{err}"
        );

        let (_dir, file) = write_gguf(&[
            ("tokenizer.ggml.model", Kv::Str("gpt2")),
            ("tokenizer.ggml.tokens", Kv::U32(3)),
        ]);
        let err = super::super::Tokenizer::from_gguf(&file).unwrap_err();
        assert!(matches!(err, TokenizerError::BadGgufValue { .. }), "{err}");

        let mut spec =
            GgufTokenizerSpec::from_gguf(&write_gguf(&tiny_bpe("gpt2", vec![])).1).unwrap();
        spec.merges.push("nospace".into());
        let err = spec.build().unwrap_err();
        assert!(
            matches!(err, TokenizerError::BadMerge { index: 2, .. }),
            "{err}"
        );
        spec.merges.clear();
        let err = spec.build().unwrap_err();
        assert!(
            matches!(&err, TokenizerError::MissingGgufKey(k) if k == "tokenizer.ggml.merges"),
            "{err}"
        );
    }

    #[test]
    fn every_known_pre_tokenizer_builds() {
        let (_dir, file) = write_gguf(&tiny_bpe("gpt2", vec![]));
        let mut spec = GgufTokenizerSpec::from_gguf(&file).unwrap();
        for pre in ["smollm", "llama-bpe", "qwen2", "gpt-2", "something-new"] {
            spec.pre = Some(pre.to_string());
            let tok = spec.build().unwrap();
            assert_eq!(tok.encode(" ab", false).unwrap(), vec![7], "{pre}");
        }
    }
}
