//! `POST /v1/completions`: the legacy text completion request, its
//! response and its streamed chunk.

use super::common::{unix_now, FinishReason, StopSequences, StreamOptions, Usage};
use super::validate::{logprobs_count, to_u32, Sampling, MAX_N, MAX_SEQUENCES_PER_REQUEST};
use crate::error::ProviderError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// OpenAI's (and vLLM's) default `max_tokens` for text completions.
pub const COMPLETION_DEFAULT_MAX_TOKENS: u32 = 16;

/// A text completion request: OpenAI's fields plus vLLM's extras.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Which model; empty means the first served one (filled by the router).
    #[serde(default)]
    pub model: String,
    /// Text or token ids, one prompt or a batch.
    pub prompt: Prompt,
    /// Text after the completion (insertion); vLLM rejects it, so do we.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Cap on generated tokens (default 16); `i64` so negatives get a clean 400.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Sampling temperature in [0, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Choices per prompt, 1..=128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Generate this many and return the `n` best; at least `n`, no streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<i64>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Number of top logprobs per token, 0..=20 (an integer here, unlike chat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<i64>,
    /// Prepend the prompt to the returned text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// Stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Presence penalty in [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty in [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Token id bias in [-100, 100]; accepted, providers may ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// vLLM: top-k sampling; -1 or 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// vLLM: min-p sampling in [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// vLLM: repetition penalty, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// vLLM: minimum generated tokens before EOS/stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<i64>,
    /// vLLM: ignore EOS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// vLLM: scheduling priority under `--scheduling-policy priority`,
    /// lower first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// vLLM: drop special tokens when detokenizing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_special_tokens: Option<bool>,
    /// vLLM: extra stop token ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_token_ids: Option<Vec<u32>>,
    /// vLLM: add BOS and other special tokens when tokenizing (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_special_tokens: Option<bool>,
    /// Every other field; ignored but kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CompletionRequest {
    /// Checks every parameter range; errors name the `param`.
    pub fn validate(&self) -> Result<(), ProviderError> {
        self.prompt.validate()?;
        if self.suffix.is_some() {
            return Err(ProviderError::invalid("suffix", "suffix is not supported"));
        }
        logprobs_count("logprobs", self.logprobs)?;
        // Checked before anything is tokenized or queued, so a batch of a
        // million prompts at n = 128 costs one multiplication.
        let per_prompt = self.n.unwrap_or(1).max(self.best_of.unwrap_or(1)).max(1);
        let sequences = (self.prompt.len() as u128).saturating_mul(per_prompt as u128);
        if sequences > MAX_SEQUENCES_PER_REQUEST as u128 {
            return Err(ProviderError::invalid(
                "prompt",
                format!(
                    "{} prompts x {per_prompt} choices is {sequences} sequences; at most \
                     {MAX_SEQUENCES_PER_REQUEST} are allowed per request",
                    self.prompt.len()
                ),
            ));
        }
        if let Some(b) = self.best_of {
            let n = self.n.unwrap_or(1);
            if !(1..=MAX_N).contains(&b) || b < n {
                return Err(ProviderError::invalid(
                    "best_of",
                    format!("best_of must be between n ({n}) and {MAX_N}, got {b}"),
                ));
            }
            if b > 1 && self.stream == Some(true) {
                return Err(ProviderError::invalid(
                    "best_of",
                    "best_of greater than 1 cannot be streamed",
                ));
            }
        }
        Sampling {
            n: self.n,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repetition_penalty,
            min_tokens: self.min_tokens,
            max_tokens: self.max_tokens.map(|m| ("max_tokens", m)),
            stop: self.stop.as_ref(),
            logit_bias: self.logit_bias.as_ref(),
            stream: self.stream,
            stream_options: self.stream_options.as_ref(),
        }
        .validate()
    }

    /// The validated output cap, or OpenAI's default of 16.
    pub fn max_new_tokens(&self) -> u32 {
        self.max_tokens
            .map_or(COMPLETION_DEFAULT_MAX_TOKENS, to_u32)
    }

    /// Number of choices per prompt (default 1).
    pub fn n(&self) -> u32 {
        self.n.map_or(1, to_u32)
    }

    /// Whether the client asked for server-sent events.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// Whether a streaming response must end with the usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }
}

/// `prompt`: OpenAI accepts a string, strings, token ids, or lists of ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text prompt.
    Text(String),
    /// A batch of text prompts (one set of choices each).
    Texts(Vec<String>),
    /// One pre-tokenized prompt.
    Tokens(Vec<u32>),
    /// A batch of pre-tokenized prompts.
    TokenBatches(Vec<Vec<u32>>),
}

impl Default for Prompt {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

impl Prompt {
    /// Number of prompts in the batch.
    pub fn len(&self) -> usize {
        match self {
            Self::Text(_) | Self::Tokens(_) => 1,
            Self::Texts(v) => v.len(),
            Self::TokenBatches(v) => v.len(),
        }
    }

    /// True for an empty batch.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn validate(&self) -> Result<(), ProviderError> {
        let empty_item = match self {
            Self::Text(_) | Self::Texts(_) => false,
            Self::Tokens(ids) => ids.is_empty(),
            Self::TokenBatches(b) => b.iter().any(Vec::is_empty),
        };
        if self.is_empty() || empty_item {
            return Err(ProviderError::invalid("prompt", "prompt must not be empty"));
        }
        Ok(())
    }
}

/// The non-streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// `cmpl-...`.
    pub id: String,
    /// Always `"text_completion"`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// `n` per prompt, indexed across the batch.
    pub choices: Vec<CompletionChoice>,
    /// Token accounting.
    pub usage: Usage,
}

impl CompletionResponse {
    /// Fills `object` and `created`.
    pub fn new(id: String, model: String, choices: Vec<CompletionChoice>, usage: Usage) -> Self {
        Self {
            id,
            object: "text_completion".to_owned(),
            created: unix_now(),
            model,
            choices,
            usage,
        }
    }
}

/// One choice (or, in a chunk, one choice's new text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Position among all choices of all prompts.
    pub index: u32,
    /// Generated text (new text only, in a chunk).
    pub text: String,
    /// Legacy-format logprobs when asked for; `null` otherwise.
    pub logprobs: Option<CompletionLogprobs>,
    /// Why generation stopped; `null` until the last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// The legacy completions logprobs layout: parallel arrays.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionLogprobs {
    /// Token texts.
    pub tokens: Vec<String>,
    /// Their logprobs (`null` for the first echoed prompt token).
    pub token_logprobs: Vec<Option<f32>>,
    /// Top alternatives per position, token text to logprob.
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Character offset of each token in the returned text.
    pub text_offset: Vec<u32>,
}

/// One server-sent event of a streaming text completion; `usage` as in
/// [`super::ChatCompletionChunk`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChunk {
    /// Same on every chunk.
    pub id: String,
    /// Always `"text_completion"`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// New text per choice.
    pub choices: Vec<CompletionChoice>,
    /// Only on the final `include_usage` chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl CompletionChunk {
    /// A chunk carrying new text.
    pub fn new(id: String, created: u64, model: String, choices: Vec<CompletionChoice>) -> Self {
        Self {
            id,
            object: "text_completion".to_owned(),
            created,
            model,
            choices,
            usage: None,
        }
    }

    /// The `include_usage` final chunk: empty `choices`, `usage` set.
    pub fn usage_only(id: String, created: u64, model: String, usage: Usage) -> Self {
        Self {
            usage: Some(usage),
            ..Self::new(id, created, model, Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::MAX_STOP_BYTES;
    use serde_json::json;

    fn req(v: Value) -> CompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn param_of(v: Value) -> String {
        match req(v).validate() {
            Err(ProviderError::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn prompt_forms() {
        assert_eq!(req(json!({"prompt": "a"})).prompt, Prompt::Text("a".into()));
        assert_eq!(
            req(json!({"prompt": ["a", "b"]})).prompt,
            Prompt::Texts(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            req(json!({"prompt": [1, 2]})).prompt,
            Prompt::Tokens(vec![1, 2])
        );
        assert_eq!(
            req(json!({"prompt": [[1], [2, 3]]})).prompt,
            Prompt::TokenBatches(vec![vec![1], vec![2, 3]])
        );
        assert!(serde_json::from_value::<CompletionRequest>(json!({"prompt": [-1]})).is_err());
    }

    #[test]
    fn defaults_and_accessors() {
        let r = req(json!({"model": "m", "prompt": "a", "echo": true, "logprobs": 2}));
        r.validate().unwrap();
        assert_eq!(r.max_new_tokens(), COMPLETION_DEFAULT_MAX_TOKENS);
        assert_eq!(r.n(), 1);
        assert!(!r.is_stream());
    }

    #[test]
    fn invalid_parameters() {
        assert_eq!(param_of(json!({"prompt": []})), "prompt");
        assert_eq!(param_of(json!({"prompt": [[1], []]})), "prompt");
        assert_eq!(
            param_of(json!({"prompt": "a", "max_tokens": -3})),
            "max_tokens"
        );
        assert_eq!(param_of(json!({"prompt": "a", "logprobs": 21})), "logprobs");
        assert_eq!(param_of(json!({"prompt": "a", "suffix": "x"})), "suffix");
        assert_eq!(
            param_of(json!({"prompt": "a", "n": 3, "best_of": 2})),
            "best_of"
        );
        assert_eq!(
            param_of(json!({"prompt": "a", "best_of": 2, "stream": true})),
            "best_of"
        );
        assert_eq!(
            param_of(json!({"prompt": "a", "temperature": 2.5})),
            "temperature"
        );
    }

    #[test]
    fn fan_out_and_stop_strings_are_bounded() {
        // prompts x n over the cap: refused before anything is tokenized.
        let many: Vec<&str> = vec!["a"; 9];
        assert_eq!(param_of(json!({"prompt": many, "n": 128})), "prompt");
        let batch: Vec<Vec<u32>> = vec![vec![1]; MAX_SEQUENCES_PER_REQUEST + 1];
        assert_eq!(param_of(json!({"prompt": batch})), "prompt");
        let batch: Vec<Vec<u32>> = vec![vec![1]; 9];
        assert_eq!(
            param_of(json!({"prompt": batch, "n": 1, "best_of": 128})),
            "prompt"
        );
        let ok: Vec<&str> = vec!["a"; 8];
        req(json!({"prompt": ok, "n": 128})).validate().unwrap();
        // Stop strings: at most 16, each at most MAX_STOP_BYTES.
        let long = "x".repeat(MAX_STOP_BYTES + 1);
        assert_eq!(param_of(json!({"prompt": "a", "stop": long})), "stop");
        assert_eq!(
            param_of(json!({"prompt": "a", "stop": ["ok", long]})),
            "stop"
        );
        let stops: Vec<String> = (0..17).map(|i| i.to_string()).collect();
        assert_eq!(param_of(json!({"prompt": "a", "stop": stops})), "stop");
        let fits = "x".repeat(MAX_STOP_BYTES);
        let stops: Vec<&str> = vec![fits.as_str(); 16];
        req(json!({"prompt": "a", "stop": stops}))
            .validate()
            .unwrap();
    }

    #[test]
    fn chunk_and_response_shapes() {
        let c = CompletionChunk::new(
            "cmpl-1".into(),
            1,
            "m".into(),
            vec![CompletionChoice {
                index: 0,
                text: "x".into(),
                logprobs: None,
                finish_reason: Some(FinishReason::Length),
            }],
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                   "choices": [{"index": 0, "text": "x", "logprobs": null,
                                "finish_reason": "length"}]})
        );
        let lp = CompletionLogprobs {
            tokens: vec!["x".into()],
            token_logprobs: vec![None],
            top_logprobs: vec![None],
            text_offset: vec![0],
        };
        assert_eq!(
            serde_json::to_value(&lp).unwrap(),
            json!({"tokens": ["x"], "token_logprobs": [null], "top_logprobs": [null],
                   "text_offset": [0]})
        );
    }
}
