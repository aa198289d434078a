//! Pre-call guardrails, configured as LiteLLM configures them (a top-level
//! `guardrails:` list, see [`spec`]), run on a request's texts before any
//! provider sees it: PII masking ([`pii`]), banned keywords ([`keywords`])
//! and a user's webhook ([`webhook`], LiteLLM's Generic Guardrail API).
//!
//! [`Guardrails`] is built once from the specs and validated then (unknown
//! kinds and modes other than `pre_call` are startup errors naming the
//! guardrail). Per request, the caller picks the names
//! ([`Guardrails::select`]: the `default_on` ones plus those the key, the
//! model or the request's `"guardrails": [...]` ask for, see
//! [`requested_guardrails`]) and calls [`Guardrails::apply_pre_call`] with
//! the request's texts ([`TextsMut::from_chat`],
//! [`TextsMut::from_completion`]). Selected guardrails run in the order of
//! the config list, each on the texts the previous one left, as LiteLLM
//! runs them.
//!
//! This module does not know routes, keys or the gateway config: the
//! integrator maps [`GuardrailError`] to its response (it carries its own
//! status and body) and decides where the names come from. Post-call and
//! during-call guardrails are not implemented.

pub mod error;
pub mod keywords;
pub mod pii;
pub mod spec;
pub mod texts;
pub mod webhook;

pub use error::{GuardrailConfigError, GuardrailError, GUARDRAIL_VIOLATION};
pub use pii::{PiiEntity, PiiPatterns};
pub use spec::{BlockedWordSpec, GuardrailMode, GuardrailParams, GuardrailSpec};
pub use texts::TextsMut;

use serde_json::{Map, Value};
use spec::{Check, PiiAction, SharedParts};

/// One validated guardrail.
#[derive(Debug, Clone)]
struct Entry {
    name: String,
    default_on: bool,
    check: Check,
}

/// The configured guardrails, ready to run.
#[derive(Debug, Clone)]
pub struct Guardrails {
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

impl Guardrails {
    /// Validates `specs` (the `guardrails:` list) and builds the set. Keys
    /// that are ignored are reported by [`Self::warnings`].
    pub fn from_specs(specs: &[GuardrailSpec]) -> Result<Self, GuardrailConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(specs.len());
        let mut shared = SharedParts::default();
        let mut warnings = Vec::new();
        for spec in specs {
            if entries.iter().any(|e| e.name == spec.guardrail_name) {
                return Err(GuardrailConfigError::Duplicate {
                    name: spec.guardrail_name.clone(),
                });
            }
            let (check, mut w) = spec.build(&mut shared)?;
            warnings.append(&mut w);
            entries.push(Entry {
                name: spec.guardrail_name.clone(),
                default_on: spec.litellm_params.default_on,
                check,
            });
        }
        Ok(Self { entries, warnings })
    }

    /// No guardrail configured (the gateway can skip collecting texts).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every configured name, in config order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// Keys of the specs that were ignored, one sentence each (the config
    /// loader logs them).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The guardrails for one request: every `default_on` one plus
    /// `requested` (from the key, the model and the request), deduplicated,
    /// in config order. A requested name that is not configured is an
    /// error rather than a silently unguarded request.
    pub fn select<S: AsRef<str>>(&self, requested: &[S]) -> Result<Vec<&str>, GuardrailError> {
        for name in requested {
            self.entry(name.as_ref())?;
        }
        Ok(self
            .entries
            .iter()
            .filter(|e| e.default_on || requested.iter().any(|r| r.as_ref() == e.name))
            .map(|e| e.name.as_str())
            .collect())
    }

    /// Runs the guardrails named in `names` (see [`Self::select`]) on
    /// `texts`, in config order: masks in place, or refuses the request.
    /// With no name, nothing runs.
    pub async fn apply_pre_call(
        &self,
        names: &[&str],
        mut texts: TextsMut<'_>,
    ) -> Result<(), GuardrailError> {
        for name in names {
            self.entry(name)?;
        }
        let selected = self
            .entries
            .iter()
            .filter(|e| names.contains(&e.name.as_str()));
        let mut first = true;
        for entry in selected {
            if first && texts.token_prompts() > 0 {
                return Err(GuardrailError::Uninspectable {
                    guardrail: entry.name.clone(),
                    what: "a prompt of token ids".to_owned(),
                });
            }
            first = false;
            self.run(entry, &mut texts).await?;
        }
        Ok(())
    }

    async fn run(&self, entry: &Entry, texts: &mut TextsMut<'_>) -> Result<(), GuardrailError> {
        let blocked = |reason: String| GuardrailError::Blocked {
            guardrail: entry.name.clone(),
            reason,
        };
        match &entry.check {
            Check::Pii { entities, patterns } => {
                for text in texts.iter_mut() {
                    for (entity, action) in entities {
                        match action {
                            PiiAction::Block => {
                                if !patterns.find(*entity, text).is_empty() {
                                    return Err(blocked(format!(
                                        "the request contains {}",
                                        entity.name()
                                    )));
                                }
                            }
                            PiiAction::Mask => {
                                let n = patterns.mask(*entity, text);
                                if n > 0 {
                                    tracing::debug!(
                                        guardrail = entry.name,
                                        entity = entity.name(),
                                        count = n,
                                        "masked PII"
                                    );
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
            Check::Keywords(filter) => {
                for text in texts.iter_mut() {
                    filter.apply(text).map_err(|word| {
                        blocked(format!("the request contains the banned keyword `{word}`"))
                    })?;
                }
                Ok(())
            }
            Check::Webhook { guard, client } => guard.check(client, &entry.name, texts).await,
        }
    }

    fn entry(&self, name: &str) -> Result<&Entry, GuardrailError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| GuardrailError::Unknown {
                name: name.to_owned(),
                known: self.names().collect::<Vec<_>>().join(", "),
            })
    }
}

/// The guardrail names a request body asks for, as LiteLLM reads them:
/// `"guardrails": ["a", "b"]` or `"guardrails": [{"a": {...}}]` (per-call
/// settings are not used), at the top level or in `"metadata"`. Pass the
/// request's `extra` map.
pub fn requested_guardrails(extra: &Map<String, Value>) -> Vec<String> {
    let from = |v: Option<&Value>| -> Vec<String> {
        let Some(Value::Array(items)) = v else {
            return Vec::new();
        };
        items
            .iter()
            .flat_map(|item| match item {
                Value::String(s) => vec![s.clone()],
                Value::Object(map) => map.keys().cloned().collect(),
                _ => Vec::new(),
            })
            .collect()
    };
    let mut names = from(extra.get("guardrails"));
    let in_metadata = from(extra.get("metadata").and_then(|m| m.get("guardrails")));
    for name in in_metadata {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests;
