//! Which models a key, team or user may call: LiteLLM's `models` lists.
//!
//! An entry allows a model when it is
//! - empty list, `*` or `all-proxy-models`: every model;
//! - the model's name (`gpt-4o`);
//! - a wildcard ending in `*` (`openai/*`), matched against the model name
//!   and against the provider strings of its deployments, so `openai/*`
//!   also allows a `gpt-4o` group served by `openai/gpt-4o`;
//! - an access group named in a deployment's `model_info.access_groups`.

use crate::config::GatewayConfig;
use std::collections::{BTreeSet, HashMap};

/// What the access check knows of each model name: its deployments'
/// provider strings and access groups. Built once from the config.
#[derive(Debug, Clone, Default)]
pub struct ModelCatalog {
    models: HashMap<String, ModelFacts>,
}

#[derive(Debug, Clone, Default)]
struct ModelFacts {
    provider_models: BTreeSet<String>,
    access_groups: BTreeSet<String>,
}

impl ModelCatalog {
    /// The catalog of `config`'s `model_list`.
    pub fn from_config(config: &GatewayConfig) -> Self {
        let mut models: HashMap<String, ModelFacts> = HashMap::new();
        for entry in &config.model_list {
            let facts = models.entry(entry.model_name.clone()).or_default();
            facts
                .provider_models
                .insert(entry.litellm_params.model.clone());
            if let Some(groups) = entry
                .model_info
                .extra
                .get("access_groups")
                .and_then(|v| v.as_array())
            {
                facts
                    .access_groups
                    .extend(groups.iter().filter_map(|g| g.as_str()).map(str::to_owned));
            }
        }
        Self { models }
    }

    /// Whether `allowed` (a key's, team's or user's `models`) lets its
    /// owner call `model`.
    pub fn allows(&self, allowed: &[String], model: &str) -> bool {
        if allowed.is_empty() {
            return true;
        }
        let facts = self.models.get(model);
        allowed.iter().any(|entry| {
            let entry = entry.trim();
            if entry == "*" || entry == "all-proxy-models" || entry == model {
                return true;
            }
            if let Some(prefix) = entry.strip_suffix('*') {
                return model.starts_with(prefix)
                    || facts
                        .is_some_and(|f| f.provider_models.iter().any(|p| p.starts_with(prefix)));
            }
            facts.is_some_and(|f| f.access_groups.contains(entry))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn catalog() -> ModelCatalog {
        let yaml = r#"
model_list:
  - model_name: gpt-4o
    litellm_params: {model: openai/gpt-4o}
  - model_name: claude
    litellm_params: {model: anthropic/claude-3-5-sonnet-20240620}
    model_info: {access_groups: [beta]}
  - model_name: openai/gpt-4o-mini
    litellm_params: {model: openai/gpt-4o-mini}
"#;
        let config = GatewayConfig::from_yaml(yaml, &|_| None).unwrap();
        ModelCatalog::from_config(&config)
    }

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn empty_and_star_allow_everything() {
        let c = catalog();
        assert!(c.allows(&[], "claude"));
        assert!(c.allows(&list(&["*"]), "claude"));
        assert!(c.allows(&list(&["all-proxy-models"]), "gpt-4o"));
    }

    #[test]
    fn names_wildcards_and_groups() {
        let c = catalog();
        assert!(c.allows(&list(&["gpt-4o"]), "gpt-4o"));
        assert!(!c.allows(&list(&["gpt-4o"]), "claude"));
        // `openai/*` matches by name and by the deployment's provider string.
        assert!(c.allows(&list(&["openai/*"]), "openai/gpt-4o-mini"));
        assert!(c.allows(&list(&["openai/*"]), "gpt-4o"));
        assert!(!c.allows(&list(&["openai/*"]), "claude"));
        assert!(c.allows(&list(&["beta"]), "claude"));
        assert!(!c.allows(&list(&["beta"]), "gpt-4o"));
        // Unknown models are only allowed by a matching name or wildcard.
        assert!(!c.allows(&list(&["beta"]), "nope"));
    }
}
