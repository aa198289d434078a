//! What the `chat_template` fuzz target in `fuzz/` (`scripts/fuzz.sh`)
//! feeds arbitrary bytes to, and what CI replays the committed corpus
//! through (the test below) on the stable toolchain.
//!
//! The function must return for every input (an `Err` is fine): a panic,
//! an abort, a hang or an unbounded allocation is a bug in the renderer.

use serde_json::{json, Value};

use crate::chat_template::{ChatTemplate, RenderExtras, SpecialTokens};

/// A chat template and what a request renders through it. The input is
/// text split at NUL bytes: the template, then the messages as JSON (text
/// that is not JSON becomes one user message's content, so mutations of a
/// real template's seeds explore message contents too), then optional
/// `tools` and `chat_template_kwargs` JSON. Templates come from model files
/// (the operator's), messages, tools and kwargs from any client.
pub fn chat_template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or_default();
    let messages = match parts.next() {
        None => json!([{"role": "user", "content": "Hello"}]),
        Some(m) => {
            serde_json::from_str(m).unwrap_or_else(|_| json!([{"role": "user", "content": m}]))
        }
    };
    let tools: Option<Value> = parts.next().and_then(|t| serde_json::from_str(t).ok());
    let kwargs: Option<Value> = parts.next().and_then(|k| serde_json::from_str(k).ok());
    let special = SpecialTokens {
        bos_token: Some("<s>".into()),
        eos_token: Some("</s>".into()),
        unk_token: None,
        pad_token: Some("<pad>".into()),
    };
    let Ok(chat) = ChatTemplate::new(template, Some(template), special) else {
        return;
    };
    let extras = RenderExtras {
        tools: tools.as_ref(),
        documents: None,
        kwargs: kwargs.as_ref().and_then(Value::as_object),
    };
    let _ = chat.render_with(&messages, true, extras);
    let _ = chat.render(&messages, false, None);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::{Path, PathBuf};

    /// Every file of `fuzz/corpus/<target>/`: seeds, the minimized corpus
    /// of past runs and every crash input found so far.
    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} is empty", dir.display());
        files
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    #[test]
    fn chat_template_corpus_replays_without_panics() {
        for (path, bytes) in corpus("chat_template") {
            eprintln!("{}", path.display());
            chat_template(&bytes);
        }
    }
}
