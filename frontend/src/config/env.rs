//! `os.environ/NAME` references: LiteLLM lets any string value of
//! `config.yaml` name an environment variable instead of holding a secret.
//!
//! Resolution happens on the parsed YAML tree, before typing, so every
//! section (keys, bases, even `general_settings.master_key`) gets it and a
//! missing variable is reported with the key's path. `environment_variables`
//! of the same file are consulted first (LiteLLM exports them into the
//! process environment at startup; we read them instead of mutating the
//! process environment, which is not thread-safe).

use super::ConfigError;
use serde_json::Value;

/// The prefix LiteLLM uses for environment references.
pub const ENV_PREFIX: &str = "os.environ/";

/// Replaces every `os.environ/NAME` string in `value` with the variable's
/// value; `lookup` answers a name (the file's `environment_variables`, then
/// the process environment). `path` is the value's position, for errors.
pub fn resolve(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix(ENV_PREFIX) {
                let name = name.trim().to_owned();
                match lookup(&name) {
                    Some(v) => *s = v,
                    None => {
                        return Err(ConfigError::MissingEnv {
                            path: path.to_owned(),
                            name,
                        })
                    }
                }
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, v)| resolve(v, &format!("{path}[{i}]"), lookup)),
        Value::Object(map) => map.iter_mut().try_for_each(|(k, v)| {
            let child = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            resolve(v, &child, lookup)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn references_resolve_and_missing_ones_name_the_path() {
        let lookup = |name: &str| (name == "KEY").then(|| "sk-1".to_owned());
        let mut v = json!({"a": [{"k": "os.environ/KEY", "n": 3}], "b": "plain"});
        resolve(&mut v, "", &lookup).unwrap();
        assert_eq!(v, json!({"a": [{"k": "sk-1", "n": 3}], "b": "plain"}));

        let mut v = json!({"model_list": [{"litellm_params": {"api_key": "os.environ/NOPE"}}]});
        let err = resolve(&mut v, "", &lookup).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingEnv {
                path: "model_list[0].litellm_params.api_key".to_owned(),
                name: "NOPE".to_owned()
            }
        );
        assert!(err.to_string().contains("NOPE"));
    }
}
