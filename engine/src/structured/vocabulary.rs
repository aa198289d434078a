//! The model's vocabulary as llguidance sees it: the bytes each token
//! stands for, read from our tokenizer's own pipeline.
//!
//! llguidance's `token_bytes_from_tokenizer_json` reads a decoder chain
//! with `ByteFallback` as byte-fallback only, but the tokenizer built from
//! a GGUF BPE vocabulary (as `transformers` builds it) chains
//! `ByteFallback` and `ByteLevel`; its names would come out as their UTF-8
//! (`Ġ(` as `C4 A0 28` instead of ` (`). So the bytes are read here, from
//! which decoders the chain holds (a word-level vocabulary's names are
//! taken as its text). The GPT-2 byte-to-character table is
//! private in both `tokenizers` and llguidance, hence written out below.

use std::collections::HashMap;
use std::sync::Arc;

use llguidance::toktrie::{TokTrie, TokenId, TokenizerEnv};
use tokenizers::DecoderWrapper;

use crate::tokenizer::Tokenizer;

/// The trie llguidance walks, and our tokenizer for the strings a grammar
/// forces.
pub(super) struct Vocabulary {
    pub trie: TokTrie,
    pub tokenizer: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer.encode(text, false).unwrap_or_default()
        })
    }
}

/// How a decoder chain turns token names into bytes.
#[derive(Debug, Default)]
struct Decoding {
    /// GPT-2's byte-level characters (`Ġ` for a space).
    byte_level: bool,
    /// `<0x0A>` names stand for one byte.
    byte_fallback: bool,
    /// The character a `Replace` decoder turns into a space (`▁`).
    space: Option<char>,
}

fn decoding(d: &DecoderWrapper, out: &mut Decoding) {
    match d {
        DecoderWrapper::ByteLevel(_) => out.byte_level = true,
        DecoderWrapper::ByteFallback(_) => out.byte_fallback = true,
        DecoderWrapper::Metaspace(_) => out.space = Some('\u{2581}'),
        DecoderWrapper::Replace(_) => {
            // The pattern is only reachable through serde.
            let v = serde_json::to_value(d).unwrap_or_default();
            if v["content"] == " " {
                out.space = v["pattern"]["String"]
                    .as_str()
                    .and_then(|s| s.chars().next());
            }
        }
        DecoderWrapper::Sequence(seq) => {
            for d in seq.get_decoders() {
                decoding(d, out);
            }
        }
        _ => {}
    }
}

/// GPT-2's map from the printable stand-in characters back to bytes:
/// printable Latin-1 bytes stand for themselves, the others (controls,
/// space, 0x7F-0xA0, 0xAD) for U+0100 onwards in byte order.
fn byte_level_chars() -> HashMap<char, u8> {
    let mut next = 0x100u32;
    (0..=255u8)
        .map(|b| {
            let stands_for_itself = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let c = if stands_for_itself {
                char::from(b)
            } else {
                let c = char::from_u32(next).unwrap_or('\u{FFFD}');
                next += 1;
                c
            };
            (c, b)
        })
        .collect()
}

/// `<0x41>` as the byte 0x41.
fn fallback_byte(name: &str) -> Option<u8> {
    let hex = name.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok())?
}

/// Each token's bytes, specials marked as llguidance expects (0xFF then
/// the name), padded to the model's `vocab_size` (a model's logits may be
/// wider than its tokenizer) with special tokens no grammar can name: their
/// logits exist, their text does not, so no mask ever allows them.
pub(super) fn token_bytes(
    tokenizer: &Tokenizer,
    vocab_size: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let inner = tokenizer.inner();
    let mut how = Decoding::default();
    if let Some(d) = inner.get_decoder() {
        decoding(d, &mut how);
    }
    // A word-level vocabulary's names are its text (the character
    // tokenizers of the tiny test checkpoints).
    let word_level = matches!(inner.get_model(), tokenizers::ModelWrapper::WordLevel(_));
    if !how.byte_level && !how.byte_fallback && !word_level {
        return Err("the tokenizer is neither byte-level, byte-fallback nor word-level".into());
    }
    let chars = how.byte_level.then(byte_level_chars);
    let added = inner.get_added_tokens_decoder();
    let n = inner.get_vocab_size(true);
    if n > vocab_size {
        return Err(format!(
            "the tokenizer has {n} tokens, more than the model's {vocab_size}"
        ));
    }
    let mut bytes = Vec::with_capacity(vocab_size);
    for id in 0..n as u32 {
        let Some(name) = inner.id_to_token(id) else {
            bytes.push(Vec::new());
            continue;
        };
        let b = if let Some(t) = added.get(&id) {
            let mut b = name.into_bytes();
            if t.special {
                b.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
            }
            b
        } else if let Some(byte) = fallback_byte(&name).filter(|_| how.byte_fallback) {
            vec![byte]
        } else {
            let name = match how.space {
                Some(space) => name.replace(space, " "),
                None => name,
            };
            match &chars {
                Some(map) => name
                    .chars()
                    .map(|c| map.get(&c).copied())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_else(|| name.into_bytes()),
                None => name.into_bytes(),
            }
        };
        bytes.push(b);
    }
    while bytes.len() < vocab_size {
        let mut logits_only = format!(".<[{}]>", bytes.len()).into_bytes();
        logits_only[0] = TokTrie::SPECIAL_TOKEN_MARKER;
        bytes.push(logits_only);
    }
    Ok(bytes)
}
