//! `POST /v1/embeddings`: OpenAI's request and response shapes, which the
//! router forwards to whichever provider serves the model (OpenAI, Azure,
//! Gemini, Bedrock, Ollama, Cohere translate them to their own).

use crate::error::ProviderError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An embeddings request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingRequest {
    /// The model (a `model_name` of the gateway's config).
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `"float"` (default) or `"base64"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    /// Output dimensions, for models that can shorten their vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<i64>,
    /// End-user id, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields OpenAI does not define, kept for providers that take them.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: one string, several strings, or pre-tokenized ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// `"input": "hello"`.
    One(String),
    /// `"input": ["a", "b"]`.
    Many(Vec<String>),
    /// `"input": [1, 2, 3]`: one token-id prompt.
    Tokens(Vec<u32>),
    /// `"input": [[1, 2], [3]]`: several token-id prompts.
    TokenBatches(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// The inputs as text; token-id inputs are refused (only OpenAI
    /// itself accepts them, and it is sent the request unchanged).
    pub fn texts(&self) -> Result<Vec<String>, ProviderError> {
        match self {
            Self::One(s) => Ok(vec![s.clone()]),
            Self::Many(v) => Ok(v.clone()),
            Self::Tokens(_) | Self::TokenBatches(_) => Err(ProviderError::invalid(
                "input",
                "this provider embeds text only; send strings, not token ids",
            )),
        }
    }
}

impl EmbeddingRequest {
    /// Checks what every provider needs: a non-empty input.
    pub fn validate(&self) -> Result<(), ProviderError> {
        let empty = match &self.input {
            EmbeddingInput::One(_) => false,
            EmbeddingInput::Many(v) => v.is_empty(),
            EmbeddingInput::Tokens(v) => v.is_empty(),
            EmbeddingInput::TokenBatches(v) => v.is_empty() || v.iter().any(Vec::is_empty),
        };
        if empty {
            return Err(ProviderError::invalid("input", "input must not be empty"));
        }
        if let Some(d) = self.dimensions {
            if d < 1 {
                return Err(ProviderError::invalid(
                    "dimensions",
                    format!("dimensions must be at least 1, got {d}"),
                ));
            }
        }
        Ok(())
    }
}

/// An embeddings response (`"object": "list"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingResponse {
    /// Always `"list"`.
    pub object: String,
    /// One vector per input, in input order.
    pub data: Vec<Embedding>,
    /// The model that embedded.
    pub model: String,
    /// Prompt tokens (embeddings have no completion tokens).
    pub usage: EmbeddingUsage,
}

impl EmbeddingResponse {
    /// A response over `vectors` (in input order).
    pub fn new(model: String, vectors: Vec<Vec<f32>>, prompt_tokens: u32) -> Self {
        Self {
            object: "list".to_owned(),
            data: vectors
                .into_iter()
                .enumerate()
                .map(|(index, embedding)| Embedding {
                    object: "embedding".to_owned(),
                    index: index as u32,
                    embedding,
                })
                .collect(),
            model,
            usage: EmbeddingUsage {
                prompt_tokens,
                total_tokens: prompt_tokens,
            },
        }
    }
}

/// One vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// Always `"embedding"`.
    pub object: String,
    /// Position of its input.
    pub index: u32,
    /// The vector.
    pub embedding: Vec<f32>,
}

/// Token accounting of an embeddings request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingUsage {
    /// Tokens embedded.
    pub prompt_tokens: u32,
    /// Same as `prompt_tokens`.
    pub total_tokens: u32,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn every_input_form_parses() {
        for (input, texts) in [
            (json!("a"), Some(vec!["a"])),
            (json!(["a", "b"]), Some(vec!["a", "b"])),
            (json!([1, 2]), None),
            (json!([[1], [2, 3]]), None),
        ] {
            let req: EmbeddingRequest =
                serde_json::from_value(json!({"model": "m", "input": input})).unwrap();
            req.validate().unwrap();
            match texts {
                Some(t) => assert_eq!(req.input.texts().unwrap(), t),
                None => assert!(req.input.texts().is_err()),
            }
        }
    }

    #[test]
    fn empty_input_is_a_400_naming_input() {
        let req: EmbeddingRequest =
            serde_json::from_value(json!({"model": "m", "input": []})).unwrap();
        let err = req.validate().unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("input"));
    }
}
