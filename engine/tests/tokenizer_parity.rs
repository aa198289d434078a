//! Parity of our tokenizer and chat templates with HF `transformers` on the
//! real SmolLM2 GGUF, against the outputs `scripts/fixtures/tokenizer_parity.py`
//! records in `tests/fixtures/generated/tokenizer_parity.json`.
//!
//! Both load paths are checked against the same expectations: the GGUF
//! metadata, and the HF folder that `transformers` saved from it.

// Test helpers outside `#[test]` fns: failing loudly is their job.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use engine::chat_template::{ChatTemplate, RenderExtras, SpecialTokens};
use engine::tokenizer::Tokenizer;
use model_files::ModelSource;
use serde_json::Value;

fn generated_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/generated")
}

/// The fixture, or a failure telling how to make it (never a silent skip).
fn fixture() -> Value {
    let path = generated_dir().join("tokenizer_parity.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "missing fixture {} ({e}): run scripts/test.sh, or \
             .venv/bin/python scripts/fixtures/tokenizer_parity.py",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn smollm2() -> ModelSource {
    ModelSource::resolve("smollm2").unwrap_or_else(|e| {
        panic!("the SmolLM2 GGUF is needed for this test (run scripts/setup.sh): {e}")
    })
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| u32::try_from(x.as_u64().unwrap()).unwrap())
        .collect()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("fixture lacks string {key}"))
}

/// Compares every encode and decode of the fixture; returns mismatches.
fn tokenizer_mismatches(tok: &Tokenizer, fx: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |what: String, ours: String, theirs: String| {
        if ours != theirs {
            bad.push(format!(
                "{what}:\n  ours:         {ours}\n  transformers: {theirs}"
            ));
        }
    };
    for case in fx["encodes"].as_array().unwrap() {
        let text = str_of(case, "text");
        let with = ids(&case["ids_with_special"]);
        let without = ids(&case["ids_without_special"]);
        check(
            format!("encode({text:?}, add_special_tokens=true)"),
            format!("{:?}", tok.encode(text, true).unwrap()),
            format!("{with:?}"),
        );
        check(
            format!("encode({text:?}, add_special_tokens=false)"),
            format!("{:?}", tok.encode(text, false).unwrap()),
            format!("{without:?}"),
        );
        let tokens: Vec<Option<String>> = without.iter().map(|&id| tok.id_to_token(id)).collect();
        let expected: Vec<Option<String>> = case["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect();
        check(
            format!("id_to_token of {text:?}"),
            format!("{tokens:?}"),
            format!("{expected:?}"),
        );
        for (id, token) in without.iter().zip(expected.iter().flatten()) {
            check(
                format!("token_to_id({token:?})"),
                format!("{:?}", tok.token_to_id(token)),
                format!("{:?}", Some(id)),
            );
        }
        check(
            format!("decode(encode({text:?}), skip_special_tokens=false)"),
            format!("{:?}", tok.decode(&with, false).unwrap()),
            format!("{:?}", str_of(case, "decode")),
        );
        check(
            format!("decode(encode({text:?}), skip_special_tokens=true)"),
            format!("{:?}", tok.decode(&with, true).unwrap()),
            format!("{:?}", str_of(case, "decode_skip_special")),
        );
    }
    for case in fx["decodes"].as_array().unwrap() {
        let seq = ids(&case["ids"]);
        check(
            format!("decode({seq:?}, skip_special_tokens=false)"),
            format!("{:?}", tok.decode(&seq, false).unwrap()),
            format!("{:?}", str_of(case, "decode")),
        );
        check(
            format!("decode({seq:?}, skip_special_tokens=true)"),
            format!("{:?}", tok.decode(&seq, true).unwrap()),
            format!("{:?}", str_of(case, "decode_skip_special")),
        );
    }
    check(
        "bos/eos/vocab".into(),
        format!(
            "{:?} {:?} {:?} {:?} {}",
            tok.bos_token_id(),
            tok.bos_token(),
            tok.eos_token_ids(),
            tok.eos_token(),
            tok.vocab_size()
        ),
        format!(
            "{:?} {:?} {:?} {:?} {}",
            fx["bos_token_id"].as_u64().map(|v| v as u32),
            fx["bos_token"].as_str(),
            vec![fx["eos_token_id"].as_u64().unwrap() as u32],
            fx["eos_token"].as_str(),
            fx["vocab_size"].as_u64().unwrap()
        ),
    );
    bad
}

fn assert_no_mismatches(label: &str, bad: &[String]) {
    assert!(
        bad.is_empty(),
        "{label}: {} mismatches with transformers; first ones:\n{}",
        bad.len(),
        bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn chat_mismatches(template: &ChatTemplate, fx: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    for case in fx["chats"].as_array().unwrap() {
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let ours = template.render(&case["messages"], agp, None).unwrap();
        let theirs = str_of(case, "rendered");
        if ours != theirs {
            bad.push(format!(
                "messages {} add_generation_prompt={agp}:\n  ours:         {ours:?}\n  transformers: {theirs:?}",
                case["messages"]
            ));
        }
    }
    bad
}

#[test]
fn gguf_tokenizer_matches_transformers() {
    let fx = fixture();
    let tok = Tokenizer::from_model_source(&smollm2()).unwrap();
    assert_eq!(
        tok.clean_up_tokenization_spaces(),
        fx["clean_up_tokenization_spaces"].as_bool().unwrap()
    );
    assert_no_mismatches("GGUF tokenizer", &tokenizer_mismatches(&tok, &fx));
}

#[test]
fn hf_dir_tokenizer_matches_transformers() {
    let fx = fixture();
    let tok = Tokenizer::from_hf_dir(&generated_dir().join("smollm2_tokenizer_hf")).unwrap();
    assert_no_mismatches("HF-folder tokenizer", &tokenizer_mismatches(&tok, &fx));
}

#[test]
fn gguf_chat_template_matches_transformers() {
    let fx = fixture();
    let source = smollm2();
    let tok = Tokenizer::from_model_source(&source).unwrap();
    let template = ChatTemplate::from_model_source(&source, &tok)
        .unwrap()
        .expect("SmolLM2 GGUF has a chat template");
    assert_no_mismatches("GGUF chat template", &chat_mismatches(&template, &fx));
}

#[test]
fn hf_dir_chat_template_matches_transformers() {
    let fx = fixture();
    let dir = generated_dir().join("smollm2_tokenizer_hf");
    let tok = Tokenizer::from_hf_dir(&dir).unwrap();
    let template = ChatTemplate::from_hf_dir(&dir, SpecialTokens::from_tokenizer(&tok))
        .unwrap()
        .expect("saved folder has chat_template.jinja");
    assert_no_mismatches("HF-folder chat template", &chat_mismatches(&template, &fx));
}

#[test]
fn rendered_chat_tokenizes_like_transformers() {
    // The path a chat request takes: render, then encode without adding
    // special tokens (the template wrote them), as apply_chat_template does.
    let fx = fixture();
    let tok = Tokenizer::from_model_source(&smollm2()).unwrap();
    let raw = tok.clone().with_clean_up_tokenization_spaces(false);
    for case in fx["chats"].as_array().unwrap() {
        let rendered = str_of(case, "rendered");
        let ids = tok.encode(rendered, false).unwrap();
        assert_eq!(ids, self::ids(&case["ids"]), "ids of {rendered:?}");
        assert_eq!(raw.decode(&ids, false).unwrap(), rendered, "round trip");
    }
}

#[test]
fn extra_templates_match_transformers() {
    let fx = fixture();
    let mut bad = Vec::new();
    for case in fx["extra_templates"].as_array().unwrap() {
        let special = SpecialTokens {
            bos_token: case["bos_token"].as_str().map(str::to_string),
            eos_token: case["eos_token"].as_str().map(str::to_string),
            ..SpecialTokens::default()
        };
        let template = ChatTemplate::new(str_of(case, "template"), None, special).unwrap();
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let tools = (!case["tools"].is_null()).then_some(&case["tools"]);
        let ours = template
            .render_with(
                &case["messages"],
                agp,
                RenderExtras {
                    tools,
                    ..RenderExtras::default()
                },
            )
            .unwrap_or_else(|e| panic!("{}: {e}", str_of(case, "name")));
        let theirs = str_of(case, "rendered");
        if ours != theirs {
            bad.push(format!(
                "{} add_generation_prompt={agp}:\n  ours:         {ours:?}\n  transformers: {theirs:?}",
                str_of(case, "name")
            ));
        }
    }
    assert_no_mismatches("extra templates", &bad);
}
