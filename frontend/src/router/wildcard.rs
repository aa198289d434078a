//! Wildcard deployments: a `model_list` entry whose `model_name` holds a
//! `*` (`*`, `openai/*`, `claude-*`) serves every requested name it
//! matches, as LiteLLM's `PatternMatchRouter` does.
//!
//! At request time the most specific matching pattern wins (most literal
//! characters, then fewest `*`, then config order), its entries form the
//! request's model group, and each entry's `litellm_params.model` gets
//! its `*`s replaced by what the pattern's `*`s matched, in order
//! (`model_name: openai/*`, `model: openai/*`, request `openai/gpt-4o`:
//! upstream `openai/gpt-4o`; `model: *` with request `gpt-4o`: the
//! provider is inferred from `gpt-4o`). The adapter is built then; a name
//! whose provider cannot be inferred is a 400 for that request.
//!
//! Resolved groups are kept (their cooldowns and latencies are per
//! requested name, as LiteLLM keys them) up to [`MAX_RESOLVED`] names;
//! past that, a name is resolved afresh on each request and its metrics
//! are labelled with the pattern, so clients cannot grow memory or metric
//! series without bound.

use super::deployment::{Deployment, DeploymentSpec};
use crate::config::params::DeploymentParams;
use crate::error::ProviderError;
use crate::provider::Provider;
use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Requested names whose resolved group is kept.
pub const MAX_RESOLVED: usize = 1024;

/// Builds the adapter of one resolved deployment: the client-facing name
/// and the params with the concrete `model`.
pub type BuildFn =
    dyn Fn(&str, &DeploymentParams) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync;

/// One wildcard `model_list` entry.
pub struct WildcardEntry {
    /// Its `model_name` (the pattern).
    pub pattern: String,
    /// Its deployment id (`model_info.id`, else `<pattern>-<index>`).
    pub id: String,
    /// Its `litellm_params`, `model` possibly holding `*`s.
    pub params: DeploymentParams,
}

/// Entries sharing one pattern.
struct PatternGroup {
    pattern: String,
    regex: Regex,
    entries: Vec<WildcardEntry>,
    /// (literal characters, wildcard count): higher first, then fewer.
    specificity: (usize, usize),
    order: usize,
}

/// The wildcard entries of a config and the names resolved so far.
pub struct Wildcards {
    patterns: Vec<PatternGroup>,
    build: Arc<BuildFn>,
    resolved: Mutex<HashMap<String, Arc<Vec<Arc<Deployment>>>>>,
}

/// Whether `model_name` is a pattern.
pub fn is_pattern(model_name: &str) -> bool {
    model_name.contains('*')
}

/// `pattern` as an anchored regex, each `*` a capture group.
fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    let body = pattern
        .split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join("(.*)");
    Regex::new(&format!("^{body}$"))
}

/// LiteLLM's `set_deployment_model_name`: `model`'s `*`s replaced by the
/// captured segments in order; a `model` without `*` is used as is, and
/// one with fewer `*`s than segments becomes the requested name.
pub fn concrete_model(model: &str, requested: &str, segments: &[&str]) -> String {
    let stars = model.matches('*').count();
    if stars == 0 {
        return model.to_owned();
    }
    if segments.len() > stars {
        return requested.to_owned();
    }
    let mut out = model.to_owned();
    for seg in segments {
        out = out.replacen('*', seg, 1);
    }
    out
}

impl Wildcards {
    /// Groups `entries` by pattern.
    pub fn new(entries: Vec<WildcardEntry>, build: Arc<BuildFn>) -> Result<Self, regex::Error> {
        let mut patterns: Vec<PatternGroup> = Vec::new();
        for entry in entries {
            if let Some(g) = patterns.iter_mut().find(|g| g.pattern == entry.pattern) {
                g.entries.push(entry);
                continue;
            }
            let stars = entry.pattern.matches('*').count();
            patterns.push(PatternGroup {
                regex: compile(&entry.pattern)?,
                specificity: (entry.pattern.len() - stars, stars),
                order: patterns.len(),
                pattern: entry.pattern.clone(),
                entries: vec![entry],
            });
        }
        // Most literal characters first, then fewest wildcards, then
        // config order (the sort is stable).
        patterns.sort_by(|a, b| {
            b.specificity
                .0
                .cmp(&a.specificity.0)
                .then(a.specificity.1.cmp(&b.specificity.1))
                .then(a.order.cmp(&b.order))
        });
        Ok(Self {
            patterns,
            build,
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// No wildcard entries (routers built without a config).
    pub fn none() -> Self {
        Self {
            patterns: Vec::new(),
            build: Arc::new(|name: &str, _: &DeploymentParams| {
                Err(ProviderError::ModelNotFound {
                    model: name.to_owned(),
                })
            }),
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// Whether no wildcard entry exists.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern matches `model`.
    pub fn matches(&self, model: &str) -> bool {
        self.patterns.iter().any(|g| g.regex.is_match(model))
    }

    /// The patterns, most specific first.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.patterns.iter().map(|g| g.pattern.as_str())
    }

    /// The group already resolved for `model`, if kept.
    pub fn cached(&self, model: &str) -> Option<Arc<Vec<Arc<Deployment>>>> {
        self.resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(model)
            .cloned()
    }

    /// The deployments serving `model` through the most specific matching
    /// pattern; `None` when no pattern matches. `on_new` sees each
    /// deployment built (for its metric series).
    pub fn resolve(
        &self,
        model: &str,
        on_new: &dyn Fn(&Deployment),
    ) -> Option<Result<Arc<Vec<Arc<Deployment>>>, ProviderError>> {
        if let Some(g) = self.cached(model) {
            return Some(Ok(g));
        }
        let (group, caps) = self
            .patterns
            .iter()
            .find_map(|g| g.regex.captures(model).map(|c| (g, c)))?;
        let segments: Vec<&str> = caps
            .iter()
            .skip(1)
            .map(|m| m.map_or("", |m| m.as_str()))
            .collect();
        let mut resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(g) = resolved.get(model) {
            return Some(Ok(Arc::clone(g)));
        }
        let keep = resolved.len() < MAX_RESOLVED;
        let mut deployments = Vec::with_capacity(group.entries.len());
        for entry in &group.entries {
            let mut params = entry.params.clone();
            params.model = concrete_model(&entry.params.model, model, &segments);
            let provider = match (self.build)(model, &params) {
                Ok(p) => p,
                Err(e) => return Some(Err(e)),
            };
            let d = Deployment::new(DeploymentSpec {
                model_name: if keep {
                    model.to_owned()
                } else {
                    group.pattern.clone()
                },
                id: entry.id.clone(),
                params,
                provider,
            });
            on_new(&d);
            deployments.push(Arc::new(d));
        }
        let deployments = Arc::new(deployments);
        if keep {
            resolved.insert(model.to_owned(), Arc::clone(&deployments));
        }
        Some(Ok(deployments))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn concrete_models_as_litellm_sets_them() {
        assert_eq!(
            concrete_model("openai/*", "openai/gpt-4o", &["gpt-4o"]),
            "openai/gpt-4o"
        );
        assert_eq!(concrete_model("*", "gpt-4o", &["gpt-4o"]), "gpt-4o");
        assert_eq!(
            concrete_model("openai/*", "gpt-4o", &["gpt-4o"]),
            "openai/gpt-4o"
        );
        assert_eq!(
            concrete_model("anthropic/claude-3", "x", &["x"]),
            "anthropic/claude-3"
        );
        assert_eq!(concrete_model("openai/*", "a-b", &["a", "b"]), "a-b");
    }

    #[test]
    fn patterns_match_whole_names() {
        let re = compile("openai/*").unwrap();
        assert!(re.is_match("openai/gpt-4o"));
        assert!(!re.is_match("xopenai/gpt-4o"));
        let re = compile("claude-*-sonnet").unwrap();
        assert_eq!(&re.captures("claude-3.5-sonnet").unwrap()[1], "3.5");
        assert!(compile("a.b*").unwrap().is_match("a.bc"));
        assert!(!compile("a.b*").unwrap().is_match("axbc"));
    }
}
