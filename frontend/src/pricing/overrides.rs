//! Prices a config sets per deployment, as LiteLLM reads them: the
//! `input_cost_per_token` / `output_cost_per_token` of a `model_list`
//! entry's `litellm_params` or `model_info`, and `model_info.base_model`
//! (Azure deployments, whose names are the user's, name the model they
//! run with it).

use super::{ModelMode, ModelPrice, PriceTable};
use crate::config::ModelEntry;
use serde_json::Value;

/// One deployment's configured prices; every field optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceOverride {
    /// USD per prompt token; wins over the table.
    pub input_cost_per_token: Option<f64>,
    /// USD per generated token; wins over the table.
    pub output_cost_per_token: Option<f64>,
    /// The table entry this deployment is priced as (`azure/gpt-4o` for an
    /// Azure deployment named `prod-4o`).
    pub base_model: Option<String>,
}

impl PriceOverride {
    /// Reads a `model_list` entry. `litellm_params` wins over `model_info`
    /// when both set a price (LiteLLM reads `litellm_params` first).
    pub fn from_model_entry(entry: &ModelEntry) -> Self {
        let info = &entry.model_info.extra;
        let params = &entry.litellm_params;
        let info_f64 = |key: &str| info.get(key).and_then(Value::as_f64);
        let string_in = |map: &serde_json::Map<String, Value>| {
            map.get("base_model")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Self {
            input_cost_per_token: params
                .input_cost_per_token
                .or_else(|| info_f64("input_cost_per_token")),
            output_cost_per_token: params
                .output_cost_per_token
                .or_else(|| info_f64("output_cost_per_token")),
            base_model: string_in(info).or_else(|| string_in(&params.extra)),
        }
    }

    /// True when the override changes nothing.
    pub fn is_empty(&self) -> bool {
        self.input_cost_per_token.is_none()
            && self.output_cost_per_token.is_none()
            && self.base_model.is_none()
    }

    /// The entry `key` gets: the base entry (`base_model`, else what `key`
    /// resolves to) with the configured prices on top. With no base entry,
    /// a price left out is 0: only what the operator configured is charged.
    /// `None` when there is nothing to price with.
    pub(super) fn merged(&self, table: &PriceTable, key: &str) -> Option<ModelPrice> {
        let base = table
            .lookup_with_base_model(key, self.base_model.as_deref())
            .cloned();
        if base.is_none()
            && self.input_cost_per_token.is_none()
            && self.output_cost_per_token.is_none()
        {
            return None;
        }
        let mut price = base.unwrap_or_else(|| ModelPrice {
            input_cost_per_token: 0.0,
            output_cost_per_token: 0.0,
            max_input_tokens: None,
            max_output_tokens: None,
            litellm_provider: provider_of(key),
            mode: ModelMode::Chat,
            source: None,
        });
        if let Some(input) = self.input_cost_per_token {
            price.input_cost_per_token = input;
        }
        if let Some(output) = self.output_cost_per_token {
            price.output_cost_per_token = output;
        }
        if self.input_cost_per_token.is_some() || self.output_cost_per_token.is_some() {
            price.source = Some("config".to_owned());
        }
        Some(price)
    }
}

impl PriceTable {
    /// Applies every `model_list` entry's configured prices under its
    /// `litellm_params.model` (see [`PriceTable::apply_override`]).
    pub fn apply_model_list(&mut self, entries: &[ModelEntry]) {
        for entry in entries {
            let over = PriceOverride::from_model_entry(entry);
            if !over.is_empty() {
                self.apply_override(&entry.litellm_params.model, &over);
            }
        }
    }
}

/// LiteLLM's provider for a configured model string with no table entry:
/// its prefix, or `custom` for a bare name.
fn provider_of(model: &str) -> String {
    model
        .split_once('/')
        .map_or("custom", |(prefix, _)| prefix)
        .to_owned()
}
