//! vLLM's `POST /tokenize` and `POST /detokenize`.

use super::chat::ChatMessage;
use crate::error::ProviderError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// vLLM's tokenize request, either form: `{prompt}` tokenizes text as
/// completions would; `{messages}` applies the chat template first. Kept as
/// one struct (not an untagged enum) so a bad body gets a precise error;
/// [`TokenizeRequest::input`] tells which form it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenizeRequest {
    /// Which model's tokenizer; `None` means the first served model (the
    /// router fills it in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Text to tokenize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A conversation to render with the chat template and tokenize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    /// Chat form: append the assistant header (vLLM default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
    /// Add BOS/special tokens (vLLM default: true for prompt, false for
    /// messages, whose template already has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_special_tokens: Option<bool>,
    /// Chat form: extra template variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Chat form: tools, rendered as a chat request's are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// Other fields; ignored.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Which form a [`TokenizeRequest`] is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TokenizeInput<'a> {
    /// Plain text.
    Prompt(&'a str),
    /// A conversation for the chat template.
    Messages(&'a [ChatMessage]),
}

impl TokenizeRequest {
    /// Exactly one of `prompt` and `messages` must be given.
    pub fn validate(&self) -> Result<(), ProviderError> {
        self.input().map(|_| ())
    }

    /// The input, or a 400 naming what is missing or doubled.
    pub fn input(&self) -> Result<TokenizeInput<'_>, ProviderError> {
        match (&self.prompt, &self.messages) {
            (Some(p), None) => Ok(TokenizeInput::Prompt(p)),
            (None, Some(m)) if !m.is_empty() => Ok(TokenizeInput::Messages(m)),
            (None, Some(_)) => Err(ProviderError::invalid(
                "messages",
                "messages must contain at least one message",
            )),
            (None, None) => Err(ProviderError::invalid(
                "prompt",
                "either prompt or messages is required",
            )),
            (Some(_), Some(_)) => Err(ProviderError::invalid(
                "messages",
                "give either prompt or messages, not both",
            )),
        }
    }
}

/// vLLM's tokenize answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizeResponse {
    /// `tokens.len()`.
    pub count: usize,
    /// The model's context length, so clients can budget.
    pub max_model_len: usize,
    /// The token ids.
    pub tokens: Vec<u32>,
}

/// vLLM's detokenize request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetokenizeRequest {
    /// Which model's tokenizer; `None` means the first served model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The ids to turn back into text.
    pub tokens: Vec<u32>,
}

/// vLLM's detokenize answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetokenizeResponse {
    /// The decoded text.
    pub prompt: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn forms() {
        let r: TokenizeRequest = serde_json::from_value(json!({"prompt": "hi"})).unwrap();
        assert_eq!(r.input().unwrap(), TokenizeInput::Prompt("hi"));
        let r: TokenizeRequest =
            serde_json::from_value(json!({"messages": [{"role": "user", "content": "x"}]}))
                .unwrap();
        assert!(matches!(r.input().unwrap(), TokenizeInput::Messages(m) if m.len() == 1));
        let r: TokenizeRequest = serde_json::from_value(json!({})).unwrap();
        assert!(r.validate().is_err());
        let r: TokenizeRequest =
            serde_json::from_value(json!({"prompt": "a", "messages": []})).unwrap();
        assert!(r.validate().is_err());
    }
}
