//! `GET /v1/models`: the model list.

use super::common::unix_now;
use serde::{Deserialize, Serialize};

/// One served model; providers return these and the router matches a
/// request's `model` against `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The name clients put in `model`.
    pub id: String,
    /// Always `"model"`.
    pub object: String,
    /// Unix seconds (when the provider started serving it).
    pub created: u64,
    /// Who serves it (`"engine"` for local models, like vLLM's `"vllm"`).
    pub owned_by: String,
    /// Context length in tokens, when the provider knows it (vLLM reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_model_len: Option<u32>,
}

impl ModelCard {
    /// A card created now.
    pub fn new(
        id: impl Into<String>,
        owned_by: impl Into<String>,
        max_model_len: Option<u32>,
    ) -> Self {
        Self {
            id: id.into(),
            object: "model".to_owned(),
            created: unix_now(),
            owned_by: owned_by.into(),
            max_model_len,
        }
    }
}

/// The `/v1/models` body: `{"object": "list", "data": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// Always `"list"`.
    pub object: String,
    /// Every model of every provider.
    pub data: Vec<ModelCard>,
}

impl ModelList {
    /// Wraps cards in the list envelope.
    pub fn new(data: Vec<ModelCard>) -> Self {
        Self {
            object: "list".to_owned(),
            data,
        }
    }
}
