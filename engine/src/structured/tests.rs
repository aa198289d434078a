//! Walks grammars with random allowed tokens on SmolLM2's real vocabulary:
//! whatever the sampler picks under the mask, the text must match.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::*;
use model_files::ModelSource;

fn tokenizer() -> Arc<Tokenizer> {
    let source = ModelSource::resolve("smollm2")
        .unwrap_or_else(|e| panic!("the SmolLM2 GGUF is needed (run scripts/setup.sh): {e}"));
    Arc::new(Tokenizer::from_model_source(&source).unwrap())
}

fn outputs(tok: &Arc<Tokenizer>) -> StructuredOutputs {
    StructuredOutputs::new(tok.clone(), tok.vocab_size()).unwrap()
}

fn allowed_ids(mask: &[u32]) -> Vec<u32> {
    (0..mask.len() as u32 * 32)
        .filter(|t| mask[(t / 32) as usize] >> (t % 32) & 1 == 1)
        .collect()
}

/// Samples among the allowed tokens until only end-of-sequence is left
/// (or `max` tokens); returns the text. Whitespace-only tokens are
/// avoided when others are allowed, and half the time a token that closes
/// something (`"`, `}`, `]`, `)`) is preferred, so strings and objects end.
fn walk(tok: &Tokenizer, mut c: Constraint, seed: u64, max: usize) -> String {
    thread_local! {
        static TEXTS: std::cell::OnceCell<Vec<String>> = const { std::cell::OnceCell::new() };
    }
    let texts = TEXTS.with(|t| {
        t.get_or_init(|| {
            (0..tok.vocab_size() as u32)
                .map(|id| tok.decode(&[id], false).unwrap())
                .collect()
        })
        .clone()
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let eos = tok.eos_token_ids().to_vec();
    let mut ids = Vec::new();
    for _ in 0..max {
        let allowed = allowed_ids(&c.allowed_tokens().unwrap().unwrap());
        let content: Vec<u32> = allowed
            .iter()
            .copied()
            .filter(|t| !eos.contains(t))
            .filter(|&t| !texts[t as usize].trim().is_empty())
            .collect();
        let pick = if content.is_empty() {
            assert!(allowed.iter().all(|t| eos.contains(t)), "{allowed:?}");
            return tok.decode(&ids, false).unwrap();
        } else if allowed.iter().any(|t| eos.contains(t)) && rng.random_bool(0.5) {
            return tok.decode(&ids, false).unwrap();
        } else {
            let closing: Vec<u32> = content
                .iter()
                .copied()
                .filter(|&t| {
                    let text = &texts[t as usize];
                    text.len() <= 2 && text.contains(['"', '}', ']', ')'])
                })
                .collect();
            let pool = if !closing.is_empty() && rng.random_bool(0.5) {
                &closing
            } else {
                &content
            };
            pool[rng.random_range(0..pool.len())]
        };
        ids.push(pick);
        c.accept(&[pick]).unwrap();
    }
    panic!("no end after {max} tokens: {:?}", tok.decode(&ids, false))
}

fn compile(so: &StructuredOutputs, spec: GrammarSpec) -> Result<Constraint, ProviderError> {
    so.compile(&SpecSource::new("guided", spec))
}

#[test]
fn random_walks_under_a_json_schema_give_valid_json() {
    let tok = tokenizer();
    let so = outputs(&tok);
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 8},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}
        },
        "required": ["name", "age", "tags"],
        "additionalProperties": false
    });
    let c = compile(&so, GrammarSpec::JsonSchema(schema)).unwrap();
    for seed in 0..8 {
        let text = walk(&tok, c.clone(), seed, 200);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let age = v["age"].as_i64().unwrap_or_else(|| panic!("{text}"));
        assert!((0..=120).contains(&age), "{text}");
        assert!(v["name"].as_str().unwrap().chars().count() <= 8, "{text}");
        let tags = v["tags"].as_array().unwrap();
        assert!(
            tags.len() <= 3 && tags.iter().all(|t| t == "a" || t == "b"),
            "{text}"
        );
        assert_eq!(v.as_object().unwrap().len(), 3, "{text}");
    }
}

#[test]
fn json_object_regex_choice_and_lark_constrain_the_text() {
    let tok = tokenizer();
    let so = outputs(&tok);
    let object = compile(&so, GrammarSpec::JsonObject).unwrap();
    let regex = compile(&so, GrammarSpec::Regex("[0-9]{3}-[a-z]{2}".into())).unwrap();
    let choices = vec!["yes".to_string(), "no (a.k.a. *nope*)".to_string()];
    let choice = compile(&so, GrammarSpec::Choice(choices.clone())).unwrap();
    let lark = r#"start: "call(" ARG ("," ARG)* ")"
ARG: /[a-z]+/"#;
    let lark = compile(&so, GrammarSpec::Lark(lark.into())).unwrap();
    for seed in 0..6 {
        let text = walk(&tok, object.clone(), seed, 300);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert!(v.is_object(), "{text}");

        let text = walk(&tok, regex.clone(), seed, 50);
        let b = text.as_bytes();
        assert!(
            b.len() == 6
                && b[..3].iter().all(u8::is_ascii_digit)
                && b[3] == b'-'
                && b[4..].iter().all(u8::is_ascii_lowercase),
            "{text:?}"
        );

        let text = walk(&tok, choice.clone(), seed, 50);
        assert!(choices.contains(&text), "{text:?}");

        let text = walk(&tok, lark.clone(), seed, 100);
        let inner = text
            .strip_prefix("call(")
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(
            inner
                .split(',')
                .all(|a| !a.is_empty() && a.bytes().all(|c| c.is_ascii_lowercase())),
            "{text:?}"
        );
    }
}

#[test]
fn a_finished_grammar_allows_only_end_of_sequence() {
    let tok = tokenizer();
    let so = outputs(&tok);
    let mut c = compile(&so, GrammarSpec::Choice(vec!["yes".into()])).unwrap();
    let ids = tok.encode("yes", false).unwrap();
    c.accept(&ids).unwrap();
    let allowed = allowed_ids(&c.allowed_tokens().unwrap().unwrap());
    assert_eq!(allowed, tok.eos_token_ids().to_vec());
    // A token outside the mask is an error, not a silent pass.
    let mut c = compile(&so, GrammarSpec::Choice(vec!["yes".into()])).unwrap();
    let wrong = tok.encode("no", false).unwrap();
    assert!(c.accept(&wrong).is_err());
}

#[test]
fn grammars_llguidance_refuses_are_400s_naming_the_field() {
    let tok = tokenizer();
    let so = outputs(&tok);
    for spec in [
        GrammarSpec::Regex("(unclosed".into()),
        GrammarSpec::Lark("start: undefined_rule".into()),
        GrammarSpec::JsonSchema(
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}),
        ),
        GrammarSpec::JsonSchema(json!({"type": "strange"})),
    ] {
        match compile(&so, spec.clone()) {
            Err(ProviderError::InvalidRequest { param, message }) => {
                assert_eq!(param.as_deref(), Some("guided"), "{spec:?}");
                assert!(
                    message.starts_with("invalid structured output"),
                    "{message}"
                );
            }
            other => panic!("{spec:?}: {other:?}"),
        }
    }
}

#[test]
fn json_whitespace_runs_are_bounded_unless_asked_otherwise() {
    let tok = tokenizer();
    let so = outputs(&tok);
    let open = tok.encode("{", false).unwrap();
    let space = tok.encode(" ", false).unwrap();
    assert_eq!(space.len(), 1);
    let run = |whitespace: JsonWhitespace| {
        let mut c = so
            .compile(&SpecSource {
                whitespace,
                ..SpecSource::new("guided", GrammarSpec::JsonObject)
            })
            .unwrap();
        c.accept(&open).unwrap();
        (0..40).take_while(|_| c.accept(&space).is_ok()).count()
    };
    assert_eq!(run(JsonWhitespace::Bounded), MAX_JSON_WHITESPACE);
    assert_eq!(run(JsonWhitespace::None), 0);
    assert_eq!(run(JsonWhitespace::Pattern(" {0,3}".into())), 3);
}

#[test]
fn the_gguf_and_hf_tokenizers_give_the_same_token_bytes() {
    // The GGUF-built pipeline chains ByteFallback and ByteLevel; the HF
    // folder transformers saved from the same file has ByteLevel alone.
    let gguf = tokenizer();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/generated/smollm2_tokenizer_hf");
    let hf = Tokenizer::from_hf_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "{} (run scripts/fixtures/tokenizer_parity.py): {e}",
            dir.display()
        )
    });
    let n = gguf.vocab_size();
    let a = vocabulary::token_bytes(&gguf, n).unwrap();
    let b = vocabulary::token_bytes(&hf, n).unwrap();
    let differ: Vec<usize> = (0..n).filter(|&i| a[i] != b[i]).collect();
    assert!(
        differ.is_empty(),
        "{} tokens differ, first {:?}",
        differ.len(),
        &differ[..differ.len().min(5)]
    );
    // And the bytes are what the tokenizer decodes to.
    let space_paren = gguf.encode(" (", false).unwrap();
    assert_eq!(a[space_paren[0] as usize], b" (");
}

#[test]
fn a_model_vocabulary_wider_than_the_tokenizer_pads_the_mask() {
    let tok = tokenizer();
    let wide = tok.vocab_size() + 100;
    let so = StructuredOutputs::new(tok.clone(), wide).unwrap();
    let mut c = compile(&so, GrammarSpec::JsonObject).unwrap();
    let mask = &c.allowed_tokens().unwrap().unwrap();
    assert_eq!(mask.len(), wide.div_ceil(32));
    assert!(allowed_ids(mask)
        .iter()
        .all(|&t| (t as usize) < tok.vocab_size()));
    assert!(StructuredOutputs::new(tok.clone(), tok.vocab_size() - 1).is_err());
}

/// With a reasoning parser the grammar binds after the reasoning: free
/// between the markers, enforced from the close on; a Qwen3-style output
/// that does not open with the marker is bound from its first token.
#[test]
fn the_grammar_binds_after_the_reasoning() {
    let tok = tokenizer();
    let so = outputs(&tok);
    let id = |text: &str| {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids.len(), 1, "{text}: {ids:?}");
        ids[0]
    };
    // Two single tokens of SmolLM2 stand in for `<think>` and `</think>`.
    let (open, close, letters, digit) = (id("hello"), id("world"), id("abc"), id("7"));
    let markers = |starts_reasoning| {
        Some(ReasoningMarkers {
            open,
            close,
            starts_reasoning,
        })
    };
    let digits = || compile(&so, GrammarSpec::Regex("[0-9]{2}".into())).unwrap();

    // Qwen3: the first token may open the reasoning, or be the grammar's.
    let mut c = digits().after_reasoning(markers(false));
    let first = allowed_ids(&c.allowed_tokens().unwrap().unwrap());
    assert!(first.contains(&open) && first.contains(&digit) && !first.contains(&letters));
    c.accept(&[open]).unwrap();
    assert_eq!(c.allowed_tokens().unwrap(), None, "free while reasoning");
    c.accept(&[letters, letters]).unwrap();
    assert_eq!(c.allowed_tokens().unwrap(), None);
    c.accept(&[close]).unwrap();
    let after = allowed_ids(&c.allowed_tokens().unwrap().unwrap());
    assert!(after.contains(&digit) && !after.contains(&open) && !after.contains(&letters));
    c.accept(&[digit]).unwrap();
    assert!(
        c.accept(&[letters]).is_err(),
        "the grammar binds after the close"
    );

    // Qwen3 without reasoning: bound from the first token on.
    let mut c = digits().after_reasoning(markers(false));
    c.accept(&[digit]).unwrap();
    assert!(!allowed_ids(&c.allowed_tokens().unwrap().unwrap()).contains(&open));

    // DeepSeek-R1: reasoning from the start; the tokens after the close
    // in the same step already count.
    let mut c = digits().after_reasoning(markers(true));
    assert_eq!(c.allowed_tokens().unwrap(), None);
    c.accept(&[letters, close, digit]).unwrap();
    assert!(c.accept(&[letters]).is_err());

    // A vocabulary without the markers as single tokens has none.
    assert!(ReasoningMarkers::of(crate::reasoning::ReasoningParser::Qwen3, &tok).is_err());
}
