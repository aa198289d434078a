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
    /// Whether the client wants vectors as base64 (OpenAI's Python SDK
    /// asks for it by default). Providers always fetch floats; the route
    /// encodes them with [`EmbeddingResponse::into_base64`].
    pub fn wants_base64(&self) -> bool {
        self.encoding_format.as_deref() == Some("base64")
    }

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
        if let Some(f) = self.encoding_format.as_deref() {
            if f != "float" && f != "base64" {
                return Err(ProviderError::invalid(
                    "encoding_format",
                    format!("encoding_format must be \"float\" or \"base64\", got {f:?}"),
                ));
            }
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

impl EmbeddingResponse {
    /// The response with each vector as OpenAI's base64 form: the
    /// little-endian `f32` bytes, base64-encoded.
    pub fn into_base64(self) -> Value {
        use base64::Engine as _;
        let data: Vec<Value> = self
            .data
            .into_iter()
            .map(|e| {
                let bytes: Vec<u8> = e.embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::json!({
                    "object": e.object,
                    "index": e.index,
                    "embedding": base64::engine::general_purpose::STANDARD.encode(bytes),
                })
            })
            .collect();
        serde_json::json!({
            "object": self.object,
            "data": data,
            "model": self.model,
            "usage": self.usage,
        })
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
    fn base64_is_little_endian_f32() {
        let resp = EmbeddingResponse::new("m".into(), vec![vec![1.0, -2.0]], 3);
        let v = resp.into_base64();
        // 1.0f32 = 00 00 80 3f, -2.0f32 = 00 00 00 c0
        assert_eq!(v["data"][0]["embedding"], "AACAPwAAAMA=");
        assert_eq!(v["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn unknown_encoding_format_is_a_400() {
        let req: EmbeddingRequest =
            serde_json::from_value(json!({"model": "m", "input": "a", "encoding_format": "int8"}))
                .unwrap();
        assert_eq!(
            req.validate().unwrap_err().body().error.param.as_deref(),
            Some("encoding_format")
        );
    }

    #[test]
    fn empty_input_is_a_400_naming_input() {
        let req: EmbeddingRequest =
            serde_json::from_value(json!({"model": "m", "input": []})).unwrap();
        let err = req.validate().unwrap_err();
        assert_eq!(err.body().error.param.as_deref(), Some("input"));
    }
}
