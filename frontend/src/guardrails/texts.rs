//! The texts of a request that guardrails read and rewrite: the content of
//! chat messages (a string, or the `text` parts of a list) and completion
//! prompts. What is not text (images, tool definitions, tool-call
//! arguments) is not inspected; a prompt of token ids cannot be, so it is
//! counted and the guardrails refuse it rather than pass it unchecked.

use crate::openai::{ChatCompletionRequest, CompletionRequest, MessageContent, Prompt};

/// Mutable borrows of a request's texts, in request order.
#[derive(Debug, Default)]
pub struct TextsMut<'a> {
    texts: Vec<&'a mut String>,
    token_prompts: usize,
}

impl<'a> TextsMut<'a> {
    /// Texts gathered by the caller (another API's request shape).
    pub fn new(texts: Vec<&'a mut String>) -> Self {
        Self {
            texts,
            token_prompts: 0,
        }
    }

    /// Every message's string content and every `text` part, in order.
    pub fn from_chat(request: &'a mut ChatCompletionRequest) -> Self {
        let mut texts = Vec::new();
        for message in &mut request.messages {
            match &mut message.content {
                Some(MessageContent::Text(s)) => texts.push(s),
                Some(MessageContent::Parts(parts)) => texts.extend(
                    parts
                        .iter_mut()
                        .filter(|p| p.kind == "text")
                        .filter_map(|p| p.text.as_mut()),
                ),
                None => {}
            }
        }
        Self::new(texts)
    }

    /// The prompt or prompts; token-id prompts are counted, not read.
    pub fn from_completion(request: &'a mut CompletionRequest) -> Self {
        match &mut request.prompt {
            Prompt::Text(s) => Self::new(vec![s]),
            Prompt::Texts(v) => Self::new(v.iter_mut().collect()),
            Prompt::Tokens(_) => Self {
                texts: Vec::new(),
                token_prompts: 1,
            },
            Prompt::TokenBatches(v) => Self {
                texts: Vec::new(),
                token_prompts: v.len(),
            },
        }
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// True when there is no text.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// How many prompts are token ids, which no guardrail can read.
    pub fn token_prompts(&self) -> usize {
        self.token_prompts
    }

    /// The texts, for reading.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.texts.iter().map(|s| s.as_str())
    }

    /// The texts, for rewriting in place.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut String> + use<'_, 'a> {
        self.texts.iter_mut().map(|s| &mut **s)
    }
}
