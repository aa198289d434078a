//! How big a request is before it runs, and how much a stream delivered
//! when the upstream never said: the two token estimates the control plane
//! charges by when it has no usage from the provider.
//!
//! - A [`Demand`] is read from a request at admission: its prompt tokens
//!   (estimated), its `max_tokens` and how many sequences it fans out to
//!   (prompts x `n`). Budgets reserve its price ([`super::ControlPlane::admit_with`]),
//!   and rpm limits count its sequences.
//! - [`Delivered`] counts what a stream handed to the client, so a stream
//!   that fails, times out or is dropped is charged for its output.
//!
//! The estimate for remote models is OpenAI's rule of thumb, one token per
//! four characters ([`tokens_of_chars`]), the same that aimock and
//! LiteLLM's fallback use; a stream's output is the larger of that and
//! the number of non-empty deltas (upstreams send about one token per
//! delta). Token-id prompts are counted exactly. No tokenizer runs here:
//! the gateway does not have the remote models' tokenizers.

use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, CompletionChunk, CompletionRequest, EmbeddingInput,
    EmbeddingRequest, Prompt, COMPLETION_DEFAULT_MAX_TOKENS,
};

/// Characters per token of the estimate (OpenAI's rule of thumb).
pub const CHARS_PER_TOKEN: u64 = 4;

/// Estimated tokens of `chars` characters: `ceil(chars / 4)`.
pub fn tokens_of_chars(chars: u64) -> u64 {
    chars.div_ceil(CHARS_PER_TOKEN)
}

/// Estimated tokens of `text`.
pub fn tokens_of_text(text: &str) -> u64 {
    tokens_of_chars(text.chars().count() as u64)
}

/// What a request asks for, as far as money and rate limits go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Prompt tokens (estimated from text, exact for token ids), summed
    /// over the prompts of a batch.
    pub prompt_tokens: u64,
    /// The request's `max_tokens` (per sequence), when it sets one; the
    /// reservation uses the configured default otherwise.
    pub max_tokens: Option<u64>,
    /// Sequences generated: prompts x `n` (x `best_of` when larger). Each
    /// counts against rpm, and each may use `max_tokens`.
    pub sequences: u64,
}

impl Default for Demand {
    /// A request of unknown size: one sequence, no known prompt, the
    /// default `max_tokens`.
    fn default() -> Self {
        Self {
            prompt_tokens: 0,
            max_tokens: None,
            sequences: 1,
        }
    }
}

/// A non-negative count from a request field (validation already refused
/// negative ones; this only keeps the arithmetic total).
fn count(v: Option<i64>) -> Option<u64> {
    v.map(|v| u64::try_from(v).unwrap_or(0))
}

impl Demand {
    /// A chat request: the messages and tools as JSON, estimated at four
    /// characters a token (the JSON punctuation stands in for the chat
    /// template's per-message tokens), `n` sequences.
    pub fn chat(req: &ChatCompletionRequest) -> Self {
        let mut chars =
            serde_json::to_string(&req.messages).map_or(0, |s| s.chars().count() as u64);
        if let Some(tools) = &req.tools {
            chars += tools.to_string().chars().count() as u64;
        }
        Self {
            prompt_tokens: tokens_of_chars(chars),
            max_tokens: count(req.max_completion_tokens.or(req.max_tokens)),
            sequences: count(req.n).unwrap_or(1).max(1),
        }
    }

    /// A text completion: every prompt of the batch (token ids counted
    /// exactly), prompts x max(`n`, `best_of`) sequences, `max_tokens`
    /// defaulting to 16 as OpenAI's completions do.
    pub fn completion(req: &CompletionRequest) -> Self {
        let prompt_tokens = match &req.prompt {
            Prompt::Text(t) => tokens_of_text(t),
            Prompt::Texts(v) => v.iter().map(|t| tokens_of_text(t)).sum(),
            Prompt::Tokens(ids) => ids.len() as u64,
            Prompt::TokenBatches(b) => b.iter().map(|ids| ids.len() as u64).sum(),
        };
        let per_prompt = count(req.n)
            .unwrap_or(1)
            .max(count(req.best_of).unwrap_or(1))
            .max(1);
        Self {
            prompt_tokens,
            max_tokens: Some(
                count(req.max_tokens).unwrap_or(u64::from(COMPLETION_DEFAULT_MAX_TOKENS)),
            ),
            sequences: (req.prompt.len() as u64).max(1).saturating_mul(per_prompt),
        }
    }

    /// Embeddings: input tokens only, one request (a batch of inputs is
    /// one call, as OpenAI counts it).
    pub fn embeddings(req: &EmbeddingRequest) -> Self {
        let prompt_tokens = match &req.input {
            EmbeddingInput::One(t) => tokens_of_text(t),
            EmbeddingInput::Many(v) => v.iter().map(|t| tokens_of_text(t)).sum(),
            EmbeddingInput::Tokens(ids) => ids.len() as u64,
            EmbeddingInput::TokenBatches(b) => b.iter().map(|ids| ids.len() as u64).sum(),
        };
        Self {
            prompt_tokens,
            max_tokens: Some(0),
            sequences: 1,
        }
    }

    /// Output tokens the reservation assumes: `max_tokens` (or
    /// `default_max_tokens`) for every sequence.
    pub fn output_tokens(&self, default_max_tokens: u64) -> u64 {
        self.max_tokens
            .unwrap_or(default_max_tokens)
            .saturating_mul(self.sequences)
    }
}

/// What a stream has handed to the client so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Characters of generated text (content, tool-call deltas), all
    /// choices together.
    pub chars: u64,
    /// Non-empty deltas.
    pub deltas: u64,
}

impl Delivered {
    /// Adds one chunk's output.
    pub fn add(&mut self, chunk: &impl OutputChunk) {
        let chars = chunk.output_chars();
        self.chars += chars.iter().sum::<u64>();
        self.deltas += chars.iter().filter(|c| **c > 0).count() as u64;
    }

    /// The output tokens estimate: the larger of `ceil(chars / 4)` and the
    /// number of non-empty deltas.
    pub fn tokens(&self) -> u64 {
        tokens_of_chars(self.chars).max(self.deltas)
    }
}

/// A streamed chunk whose generated text can be measured.
pub trait OutputChunk {
    /// Characters of new output per choice in this chunk.
    fn output_chars(&self) -> Vec<u64>;
}

impl OutputChunk for ChatCompletionChunk {
    fn output_chars(&self) -> Vec<u64> {
        self.choices
            .iter()
            .map(|c| {
                let content = c
                    .delta
                    .content
                    .as_deref()
                    .map_or(0, |t| t.chars().count() as u64);
                let calls = c.delta.tool_calls.as_ref().map_or(0, tool_call_chars);
                content + calls
            })
            .collect()
    }
}

impl OutputChunk for CompletionChunk {
    fn output_chars(&self) -> Vec<u64> {
        self.choices
            .iter()
            .map(|c| c.text.chars().count() as u64)
            .collect()
    }
}

/// Characters a tool-call delta generated: the names and argument
/// fragments (not the JSON around them, which the model did not write).
fn tool_call_chars(calls: &serde_json::Value) -> u64 {
    let Some(calls) = calls.as_array() else {
        return 0;
    };
    calls
        .iter()
        .map(|call| {
            ["/function/name", "/function/arguments"]
                .iter()
                .filter_map(|p| call.pointer(p).and_then(serde_json::Value::as_str))
                .map(|s| s.chars().count() as u64)
                .sum::<u64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn chars_round_up_to_tokens() {
        assert_eq!(tokens_of_chars(0), 0);
        assert_eq!(tokens_of_chars(1), 1);
        assert_eq!(tokens_of_chars(8), 2);
        assert_eq!(tokens_of_chars(9), 3);
        // Characters, not bytes: four CJK characters are one token here.
        assert_eq!(tokens_of_text("日本語で"), 1);
    }

    #[test]
    fn chat_demand_counts_messages_n_and_max_tokens() {
        let req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "n": 3, "max_tokens": 10, "max_completion_tokens": 20,
            "messages": [{"role": "user", "content": "x".repeat(400)}]}))
        .unwrap();
        let d = Demand::chat(&req);
        assert_eq!(d.sequences, 3);
        assert_eq!(d.max_tokens, Some(20));
        // 400 characters of content plus the JSON around them.
        assert!((100..=110).contains(&d.prompt_tokens), "{d:?}");
        assert_eq!(d.output_tokens(4096), 60);
        let req: ChatCompletionRequest = serde_json::from_value(json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .unwrap();
        assert_eq!(Demand::chat(&req).output_tokens(4096), 4096);
    }

    #[test]
    fn completion_demand_fans_out_over_prompts_and_n() {
        let req: CompletionRequest = serde_json::from_value(json!({
            "model": "m", "prompt": ["abcd", "abcdefgh", "a"], "n": 2, "max_tokens": 5}))
        .unwrap();
        let d = Demand::completion(&req);
        assert_eq!(
            (d.prompt_tokens, d.sequences, d.max_tokens),
            (4, 6, Some(5))
        );
        let req: CompletionRequest = serde_json::from_value(json!({
            "model": "m", "prompt": [[1, 2, 3], [4, 5]], "best_of": 3, "n": 1}))
        .unwrap();
        let d = Demand::completion(&req);
        assert_eq!(
            (d.prompt_tokens, d.sequences, d.max_tokens),
            (5, 6, Some(16))
        );
    }

    #[test]
    fn delivered_counts_content_tool_arguments_and_deltas() {
        let chunk: ChatCompletionChunk = serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
            "choices": [
                {"index": 0, "delta": {"content": "Hello, world"}, "logprobs": null, "finish_reason": null},
                {"index": 1, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get", "arguments": "{\"a\":1}"}}]},
                 "logprobs": null, "finish_reason": null},
                {"index": 2, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": null}
            ]}))
        .unwrap();
        let mut d = Delivered::default();
        d.add(&chunk);
        assert_eq!(
            d,
            Delivered {
                chars: 12 + 3 + 7,
                deltas: 2
            }
        );
        assert_eq!(d.tokens(), 6);
        // One-character deltas: the delta count wins over chars / 4.
        let mut d = Delivered::default();
        for _ in 0..10 {
            d.add(&CompletionChunk::new(
                "c".into(),
                0,
                "m".into(),
                vec![crate::openai::CompletionChoice {
                    index: 0,
                    text: "a".into(),
                    logprobs: None,
                    finish_reason: None,
                }],
            ));
        }
        assert_eq!(d.tokens(), 10);
    }
}
