//! Where a model keeps its chat template: an HF folder's
//! `chat_template.jinja`, `chat_template.json` or `tokenizer_config.json`,
//! or a GGUF file's `tokenizer.chat_template` keys.

use std::collections::BTreeMap;
use std::path::Path;

use model_files::gguf::GgufFile;

use super::{json_kind, ChatTemplateError};
use crate::tokenizer::{read_json_if_exists, TokenizerError};

/// `(default, tool_use)` templates of an HF folder, in `transformers`'
/// order of precedence.
pub(super) fn hf_dir_templates(
    dir: &Path,
) -> Result<Option<(String, Option<String>)>, ChatTemplateError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
            path: jinja.clone(),
            source,
        })?;
        return Ok(Some((text, None)));
    }
    let config_path = dir.join("tokenizer_config.json");
    if let Some(config) = read_json_if_exists(&config_path)? {
        if let Some(value) = config.get("chat_template") {
            return templates_from_config(value, &config_path.display().to_string());
        }
    }
    let json_path = dir.join("chat_template.json");
    if let Some(config) = read_json_if_exists(&json_path)? {
        if let Some(value) = config.get("chat_template") {
            return templates_from_config(value, &json_path.display().to_string());
        }
    }
    Ok(None)
}

/// A `chat_template` value: a string, or a list of `{name, template}`.
pub(super) fn templates_from_config(
    value: &serde_json::Value,
    source_name: &str,
) -> Result<Option<(String, Option<String>)>, ChatTemplateError> {
    let bad = |reason: String| ChatTemplateError::BadConfig {
        source_name: source_name.to_string(),
        reason,
    };
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some((s.clone(), None))),
        serde_json::Value::Array(items) => {
            let mut named = BTreeMap::new();
            for item in items {
                let name = item.get("name").and_then(serde_json::Value::as_str);
                let template = item.get("template").and_then(serde_json::Value::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => {
                        named.insert(n.to_string(), t.to_string());
                    }
                    _ => return Err(bad("list entries must be {name, template} strings".into())),
                }
            }
            let tool_use = named.get("tool_use").cloned();
            match named.remove("default") {
                Some(default) => Ok(Some((default, tool_use))),
                None => Err(bad(format!(
                    "several templates and none named `default` (have: {})",
                    named.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            }
        }
        other => Err(bad(format!(
            "expected a string or a list, got {}",
            json_kind(other)
        ))),
    }
}

/// `(default, tool_use)` templates in GGUF metadata.
pub(super) fn gguf_templates(
    file: &GgufFile,
) -> Result<Option<(String, Option<String>)>, ChatTemplateError> {
    let text = |key: &str| -> Result<Option<String>, ChatTemplateError> {
        match file.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| {
                ChatTemplateError::BadConfig {
                    source_name: format!("GGUF key {key}"),
                    reason: "not a string".into(),
                }
            }),
        }
    };
    let tool_use = text("tokenizer.chat_template.tool_use")?;
    Ok(text("tokenizer.chat_template")?.map(|main| (main, tool_use)))
}
