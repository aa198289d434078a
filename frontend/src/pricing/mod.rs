//! What a call costs: per-token prices and context windows of known models,
//! read from `frontend/data/model_prices.json` (embedded at build time), plus
//! the prices a config sets per deployment.
//!
//! The file follows LiteLLM's `model_prices_and_context_window.json`: the
//! same keys (`gpt-4o`, `azure/gpt-4o`, `claude-sonnet-4-5`,
//! `gemini/gemini-2.5-pro`, `anthropic.claude-3-5-sonnet-20240620-v1:0`
//! for Bedrock, `us.` ... for Bedrock cross-region profiles) and the same
//! fields (`input_cost_per_token`, `output_cost_per_token`,
//! `max_input_tokens`, `max_output_tokens`, `litellm_provider`, `mode`). It
//! is built from LiteLLM's file by `frontend/data/build_model_prices.py`
//! and says its sources and date in its `_meta` object; prices change, so a
//! config can override any entry ([`PriceOverride`]).
//!
//! [`PriceTable::lookup`] reads a LiteLLM model string the way LiteLLM's
//! cost calculator does (the order is in `pricing/lookup.rs`). Local models (the
//! engine, Ollama, LM Studio) cost 0 unless the table prices them.
//!
//! This module only prices; it must not know about keys, budgets or the
//! spend store, which call [`PriceTable::cost`] with a response's usage.

mod lookup;
mod overrides;

pub use overrides::PriceOverride;

use serde::Deserialize;
use std::collections::HashMap;

/// The price file, compiled in so a gateway prices calls without reading
/// anything at run time.
const EMBEDDED_JSON: &str = include_str!("../../data/model_prices.json");

/// What a model is for, as LiteLLM's `mode` says it; spend tracking and
/// `/model/info` show it, and an embedding entry has no output price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelMode {
    /// Chat completions.
    Chat,
    /// Embeddings (no generated tokens).
    Embedding,
    /// Legacy text completions.
    Completion,
}

/// One model's prices and context window, field for field LiteLLM's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelPrice {
    /// USD per prompt token.
    pub input_cost_per_token: f64,
    /// USD per generated token; LiteLLM leaves it out for embeddings, which
    /// generate none, so it defaults to 0.
    #[serde(default)]
    pub output_cost_per_token: f64,
    /// Longest prompt the model takes, when the provider says.
    #[serde(default)]
    pub max_input_tokens: Option<u64>,
    /// Most tokens one answer may have, when the provider says.
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// LiteLLM's provider name (`openai`, `azure`, `bedrock_converse`,
    /// `vertex_ai-language-models`, ...).
    pub litellm_provider: String,
    /// Chat, embedding or completion.
    pub mode: ModelMode,
    /// The provider page the figure came from, when LiteLLM recorded one.
    #[serde(default)]
    pub source: Option<String>,
}

impl ModelPrice {
    /// USD for `prompt_tokens` in and `completion_tokens` out.
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        // u64 -> f64 is exact below 2^53 tokens, far beyond any request.
        self.input_cost_per_token * prompt_tokens as f64
            + self.output_cost_per_token * completion_tokens as f64
    }
}

/// The file's `_meta` object: where the figures come from and when they
/// were read, so an operator can judge how stale they are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceMeta {
    /// The date the figures were read (`YYYY-MM-DD`).
    pub figures_as_of: String,
    /// Each source: a file or URL and the date it was read.
    pub sources: Vec<PriceSource>,
    /// Free text (prices change, how to override).
    #[serde(default)]
    pub notes: Option<String>,
}

/// One source in [`PriceMeta::sources`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceSource {
    /// What was taken from it.
    pub what: String,
    /// The file or URL.
    pub file: String,
    /// When it was read (`YYYY-MM-DD`).
    pub read_on: String,
}

/// Why a price file could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PricingError {
    /// The JSON is malformed or an entry lacks a required field; the
    /// message names the entry.
    #[error("price table is invalid: {message}")]
    Invalid {
        /// serde's message, with the key at fault.
        message: String,
    },
}

/// Model prices by LiteLLM key, with LiteLLM's name resolution on top.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    meta: Option<PriceMeta>,
    entries: HashMap<String, ModelPrice>,
}

impl PriceTable {
    /// The table compiled into the binary (`frontend/data/model_prices.json`).
    ///
    /// It only fails if that file is broken, which the unit tests rule out;
    /// callers build it once at startup.
    pub fn embedded() -> Result<Self, PricingError> {
        Self::from_json(EMBEDDED_JSON)
    }

    /// Parses a file in LiteLLM's format (a top-level object of entries;
    /// `_meta` and LiteLLM's `sample_spec` are not models). Extra fields of
    /// an entry are ignored, so LiteLLM's own file loads too.
    pub fn from_json(text: &str) -> Result<Self, PricingError> {
        let invalid = |message: String| PricingError::Invalid { message };
        let raw: HashMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut meta = None;
        let mut entries = HashMap::with_capacity(raw.len());
        for (key, value) in raw {
            match key.as_str() {
                "_meta" => {
                    meta = Some(
                        serde_json::from_value(value)
                            .map_err(|e| invalid(format!("_meta: {e}")))?,
                    );
                }
                "sample_spec" => {}
                _ => {
                    let price: ModelPrice = serde_json::from_value(value)
                        .map_err(|e| invalid(format!("{key}: {e}")))?;
                    entries.insert(key, price);
                }
            }
        }
        Ok(Self { meta, entries })
    }

    /// A table with no entries (tests, or a gateway that prices only what
    /// its config says).
    pub fn empty() -> Self {
        Self {
            meta: None,
            entries: HashMap::new(),
        }
    }

    /// The file's sources and date, when it has a `_meta` object.
    pub fn meta(&self) -> Option<&PriceMeta> {
        self.meta.as_ref()
    }

    /// Number of priced models.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no model is priced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry by its exact key (for `/model/info` and tests).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ModelPrice)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The entry under exactly `key`, with no name resolution.
    pub fn get(&self, key: &str) -> Option<&ModelPrice> {
        self.entries.get(key)
    }

    /// Adds or replaces the entry under exactly `key`.
    pub fn insert(&mut self, key: impl Into<String>, price: ModelPrice) {
        self.entries.insert(key.into(), price);
    }

    /// The price of a LiteLLM model string, resolved as LiteLLM's cost
    /// calculator does: the exact key, then the provider-prefixed and
    /// unprefixed forms, Bedrock's route and region prefixes, Vertex's
    /// `@version` suffix and OpenRouter's pass-through (order in `pricing/lookup.rs`).
    /// `None` when nothing matches; an Azure deployment name needs a
    /// `base_model` ([`Self::lookup_with_base_model`]).
    pub fn lookup(&self, model: &str) -> Option<&ModelPrice> {
        lookup::candidates(model, |key| self.entries.contains_key(key))
            .and_then(|key| self.entries.get(&key))
    }

    /// Like [`Self::lookup`], but `base_model` (LiteLLM's `model_info.
    /// base_model`, needed for Azure, whose deployment names are the
    /// user's) is tried first.
    pub fn lookup_with_base_model(
        &self,
        model: &str,
        base_model: Option<&str>,
    ) -> Option<&ModelPrice> {
        base_model
            .and_then(|base| self.lookup(base))
            .or_else(|| self.lookup(model))
    }

    /// USD for one call, or `None` when the model has no price. A local
    /// model ([`is_local`]) with no entry costs 0.
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> Option<f64> {
        match self.lookup(model) {
            Some(price) => Some(price.cost(prompt_tokens, completion_tokens)),
            None if is_local(model) => Some(0.0),
            None => None,
        }
    }

    /// Applies a deployment's configured prices under `key` (usually its
    /// `litellm_params.model`). The override's fields win over the entry
    /// that `key` (or its `base_model`) resolves to; the context window and
    /// provider are kept from that entry. An override that names no price
    /// and no base model changes nothing.
    pub fn apply_override(&mut self, key: &str, over: &PriceOverride) {
        if let Some(price) = over.merged(self, key) {
            self.entries.insert(key.to_owned(), price);
        }
    }

    /// This table with `overrides` applied in order (see
    /// [`Self::apply_override`]).
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a str, &'a PriceOverride)>,
    ) -> Self {
        for (key, over) in overrides {
            self.apply_override(key, over);
        }
        self
    }
}

/// Whether `model` runs on hardware the operator already pays for, so a
/// call has no per-token price: the local engine (`engine`, `local/...`,
/// [`crate::config::is_local_model`]) and the local servers LiteLLM prices
/// at 0 (`ollama/`, `ollama_chat/`, `lm_studio/`).
pub fn is_local(model: &str) -> bool {
    crate::config::is_local_model(model)
        || ["ollama/", "ollama_chat/", "lm_studio/"]
            .iter()
            .any(|p| model.starts_with(p))
}

#[cfg(test)]
mod tests;
