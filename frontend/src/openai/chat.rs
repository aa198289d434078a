//! `POST /v1/chat/completions`: the request, the whole response, and the
//! streamed chunk.

use super::common::{unix_now, FinishReason, StopSequences, StreamOptions, Usage};
use super::validate::{logprobs_count, to_u32, Sampling};
use crate::error::ProviderError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A chat completion request: OpenAI's fields plus vLLM's sampling extras.
///
/// `model` may be left out (vLLM allows it); the router then fills in the
/// first served model before a provider sees the request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// Which model; routes the request to a provider.
    #[serde(default)]
    pub model: String,
    /// The conversation. Missing is treated as empty, which `validate`
    /// rejects naming `messages` (clearer than a serde error).
    #[serde(default)]
    pub messages: Vec<ChatMessage>,
    /// Legacy cap on generated tokens (`i64`: negatives get a clean 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Newer name for `max_tokens`; wins when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<i64>,
    /// Sampling temperature in [0, 2]; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in (0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Number of choices, 1..=128.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`); only valid with `stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Stop strings (not included in the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// OpenAI presence penalty in [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// OpenAI frequency penalty in [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Return log probabilities of the chosen tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Alternatives per token, 0..=20; needs `logprobs: true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// End-user id (for abuse tracking and spend attribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Token id (as a string) to bias in [-100, 100]; accepted, and
    /// providers may ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<BTreeMap<String, f32>>,
    /// Tool definitions, passed through to the chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// Tool choice, passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Response format (JSON mode), passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// vLLM: sample from the k most likely tokens; -1 or 0 disables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// vLLM: drop tokens below `min_p` times the top probability, [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f32>,
    /// vLLM: multiplicative repetition penalty, > 0 (1 disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f32>,
    /// vLLM: generate at least this many tokens before EOS/stop may end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<i64>,
    /// vLLM: keep generating past EOS (benchmarks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// vLLM: scheduling priority under `--scheduling-policy priority`,
    /// lower first (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// vLLM: drop special tokens when detokenizing (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_special_tokens: Option<bool>,
    /// vLLM: extra token ids that stop generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_token_ids: Option<Vec<u32>>,
    /// vLLM: append the assistant header (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_generation_prompt: Option<bool>,
    /// vLLM: extra variables for the chat template (`enable_thinking`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template_kwargs: Option<Map<String, Value>>,
    /// Every other field the client sent; ignored but kept, so a gateway
    /// can forward provider-specific fields unchanged.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// Checks every parameter range; errors name the `param`.
    pub fn validate(&self) -> Result<(), ProviderError> {
        if self.messages.is_empty() {
            return Err(ProviderError::invalid(
                "messages",
                "messages must contain at least one message",
            ));
        }
        for (i, m) in self.messages.iter().enumerate() {
            m.validate(i)?;
        }
        logprobs_count("top_logprobs", self.top_logprobs)?;
        if self.top_logprobs.is_some_and(|k| k > 0) && self.logprobs != Some(true) {
            return Err(ProviderError::invalid(
                "top_logprobs",
                "top_logprobs requires logprobs to be true",
            ));
        }
        self.sampling().validate()
    }

    fn sampling(&self) -> Sampling<'_> {
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(m), _) => Some(("max_completion_tokens", m)),
            (None, Some(m)) => Some(("max_tokens", m)),
            (None, None) => None,
        };
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
            max_tokens,
            stop: self.stop.as_ref(),
            logit_bias: self.logit_bias.as_ref(),
            stream: self.stream,
            stream_options: self.stream_options.as_ref(),
        }
    }

    /// The validated output cap (`max_completion_tokens`, else
    /// `max_tokens`); `None` means "up to the context length".
    pub fn max_new_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens).map(to_u32)
    }

    /// Number of choices (default 1).
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

/// One message of the conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`; kept as a
    /// string because chat templates accept other roles too.
    pub role: String,
    /// Text or content parts; `null` for an assistant turn with only tool calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Assistant tool calls, passed through to the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// For `tool` messages: which call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<Value>,
    /// Any other field (`reasoning_content`, ...), kept for the template.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// A message with plain text content (tests and adapters build these).
    pub fn text(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: Some(MessageContent::Text(content.into())),
            ..Self::default()
        }
    }

    /// The text of the message with text parts joined by `\n` (vLLM's
    /// flattening for string-only templates); non-text parts are skipped.
    pub fn text_content(&self) -> String {
        self.content
            .as_ref()
            .map(MessageContent::text)
            .unwrap_or_default()
    }

    fn validate(&self, index: usize) -> Result<(), ProviderError> {
        if self.role.is_empty() {
            return Err(ProviderError::invalid(
                "messages",
                format!("messages[{index}].role must not be empty"),
            ));
        }
        if let Some(MessageContent::Parts(parts)) = &self.content {
            for part in parts {
                if part.kind == "text" && part.text.is_none() {
                    return Err(ProviderError::invalid(
                        "messages",
                        format!("messages[{index}]: a content part of type text needs `text`"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Message content: a string, or an array of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// `"content": "hello"`.
    Text(String),
    /// `"content": [{"type": "text", "text": "hello"}, ...]`.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The text parts joined by `\n`.
    pub fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => parts
                .iter()
                .filter(|p| p.kind == "text")
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

/// One content part. Only `text` is interpreted today; other types
/// (`image_url`, ...) are kept whole in `extra` for multimodal providers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPart {
    /// The part type (`"text"`, `"image_url"`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Everything else in the part.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The non-streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always `"chat.completion"`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// One per `n`.
    pub choices: Vec<ChatChoice>,
    /// Token accounting.
    pub usage: Usage,
}

impl ChatCompletionResponse {
    /// Fills `object` and `created`, so providers only supply the content.
    pub fn new(id: String, model: String, choices: Vec<ChatChoice>, usage: Usage) -> Self {
        Self {
            id,
            object: "chat.completion".to_owned(),
            created: unix_now(),
            model,
            choices,
            usage,
        }
    }
}

/// One choice of a non-streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Position among the `n` choices.
    pub index: u32,
    /// The generated assistant message.
    pub message: ChatResponseMessage,
    /// Token logprobs when asked for; `null` otherwise.
    pub logprobs: Option<ChatLogprobs>,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
}

/// The assistant message in a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponseMessage {
    /// Always `"assistant"`.
    pub role: String,
    /// The generated text.
    pub content: Option<String>,
    /// Parsed tool calls, when a tool parser produced some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// A thinking model's reasoning, split off by `--reasoning-parser`
    /// (vLLM's field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ChatResponseMessage {
    /// An assistant message with text content.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self {
            role: "assistant".to_owned(),
            content: Some(content.into()),
            tool_calls: None,
            reasoning_content: None,
        }
    }
}

/// Chat-format logprobs: one entry per generated token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatLogprobs {
    /// Per-token logprobs, in order.
    pub content: Vec<ChatLogprobToken>,
}

/// The chosen token's logprob and its alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLogprobToken {
    /// The token's text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes (tokens may split characters).
    pub bytes: Option<Vec<u8>>,
    /// The `top_logprobs` most likely tokens at this position.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
}

/// One server-sent event of a streaming chat answer.
///
/// `usage` is omitted from ordinary chunks (as vLLM does; OpenAI sends
/// `null`, and clients treat both alike) and set on the final chunk that a
/// provider emits, with empty `choices`, when `stream_options.include_usage`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id on every chunk of one response.
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    pub object: String,
    /// Unix seconds, same on every chunk.
    pub created: u64,
    /// The model that answers.
    pub model: String,
    /// Deltas, one per choice that advanced.
    pub choices: Vec<ChatChunkChoice>,
    /// Only on the final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

impl ChatCompletionChunk {
    /// A chunk carrying deltas.
    pub fn new(id: String, created: u64, model: String, choices: Vec<ChatChunkChoice>) -> Self {
        Self {
            id,
            object: "chat.completion.chunk".to_owned(),
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

/// One choice's delta in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunkChoice {
    /// Which choice.
    pub index: u32,
    /// What is new.
    pub delta: ChatDelta,
    /// Logprobs of the tokens in this delta, or `null`.
    pub logprobs: Option<ChatLogprobs>,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// New text of a choice; `role` only on the first delta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatDelta {
    /// `"assistant"` on the first chunk of a choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Newly generated text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call deltas, when a tool parser streams them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// New reasoning text (`--reasoning-parser`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn req(v: Value) -> ChatCompletionRequest {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(field: &str, value: Value) -> ChatCompletionRequest {
        let mut v = base();
        v[field] = value;
        req(v)
    }

    fn param_of(r: &ChatCompletionRequest) -> String {
        match r.validate() {
            Err(ProviderError::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }

    #[test]
    fn parses_full_request_and_keeps_unknown_fields() {
        let r = req(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"},
                                             {"type": "image_url", "image_url": {"url": "x"}},
                                             {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]},
                {"role": "tool", "tool_call_id": "1", "content": "42"}
            ],
            "max_tokens": 5, "temperature": 0.5, "top_p": 0.9, "n": 2,
            "stream": true, "stream_options": {"include_usage": true},
            "stop": "\n", "seed": 7, "logprobs": true, "top_logprobs": 3,
            "logit_bias": {"50256": -100}, "top_k": 40, "min_p": 0.1,
            "repetition_penalty": 1.1, "min_tokens": 1, "ignore_eos": false,
            "stop_token_ids": [2], "chat_template_kwargs": {"enable_thinking": false},
            "some_future_field": {"x": 1}
        }));
        r.validate().unwrap();
        assert_eq!(r.messages[1].text_content(), "a\nb");
        assert_eq!(
            r.messages[1]
                .content
                .as_ref()
                .map(MessageContent::text)
                .unwrap(),
            "a\nb"
        );
        assert!(r.messages[2].content.is_none());
        assert_eq!(r.extra.get("some_future_field"), Some(&json!({"x": 1})));
        assert_eq!(r.max_new_tokens(), Some(5));
        assert_eq!(r.n(), 2);
        assert!(r.is_stream() && r.include_usage());
        assert_eq!(r.stop.as_ref().unwrap().to_vec(), vec!["\n".to_owned()]);
    }

    #[test]
    fn max_completion_tokens_wins() {
        let mut v = base();
        v["max_tokens"] = json!(10);
        v["max_completion_tokens"] = json!(3);
        assert_eq!(req(v).max_new_tokens(), Some(3));
        assert_eq!(req(base()).max_new_tokens(), None);
    }

    #[test]
    fn missing_or_empty_messages_name_messages() {
        assert_eq!(param_of(&req(json!({"model": "m"}))), "messages");
        assert_eq!(
            param_of(&req(json!({"model": "m", "messages": []}))),
            "messages"
        );
    }

    #[test]
    fn out_of_range_parameters_name_their_param() {
        let cases = [
            ("max_tokens", json!(-1)),
            ("max_tokens", json!(0)),
            ("max_completion_tokens", json!(-5)),
            ("temperature", json!(3)),
            ("temperature", json!(-0.1)),
            ("top_p", json!(0)),
            ("top_p", json!(1.5)),
            ("n", json!(0)),
            ("n", json!(129)),
            ("presence_penalty", json!(2.5)),
            ("frequency_penalty", json!(-3)),
            ("top_logprobs", json!(21)),
            ("repetition_penalty", json!(0)),
            ("min_p", json!(1.5)),
            ("top_k", json!(-2)),
            ("min_tokens", json!(-1)),
            ("stop", json!(vec!["a"; 17])),
            ("stop", json!([""])),
            ("logit_bias", json!({"abc": 1})),
            ("logit_bias", json!({"1": 101})),
            ("stream_options", json!({"include_usage": true})),
        ];
        for (field, value) in cases {
            assert_eq!(
                param_of(&with(field, value.clone())),
                field,
                "{field}={value}"
            );
        }
    }

    #[test]
    fn top_logprobs_requires_logprobs() {
        assert_eq!(param_of(&with("top_logprobs", json!(2))), "top_logprobs");
        let mut v = base();
        v["logprobs"] = json!(true);
        v["top_logprobs"] = json!(2);
        req(v).validate().unwrap();
    }

    #[test]
    fn min_tokens_at_most_max_tokens() {
        let mut v = base();
        v["max_tokens"] = json!(2);
        v["min_tokens"] = json!(3);
        assert_eq!(param_of(&req(v)), "min_tokens");
    }

    #[test]
    fn boundaries_are_accepted() {
        for (field, value) in [
            ("temperature", json!(0)),
            ("temperature", json!(2)),
            ("top_p", json!(1)),
            ("n", json!(128)),
            ("presence_penalty", json!(-2)),
            ("top_k", json!(-1)),
            ("min_p", json!(0)),
            ("stop", json!(vec!["a"; 16])),
        ] {
            with(field, value).validate().unwrap();
        }
    }

    #[test]
    fn chunk_serialization_matches_openai() {
        let c = ChatCompletionChunk::new(
            "id".into(),
            1,
            "m".into(),
            vec![ChatChunkChoice {
                index: 0,
                delta: ChatDelta {
                    role: Some("assistant".into()),
                    content: Some("hi".into()),
                    tool_calls: None,
                    reasoning_content: None,
                },
                logprobs: None,
                finish_reason: None,
            }],
        );
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"id": "id", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hi"},
                                "logprobs": null, "finish_reason": null}]})
        );
        let u = ChatCompletionChunk::usage_only("id".into(), 1, "m".into(), Usage::new(3, 4));
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            json!({"id": "id", "object": "chat.completion.chunk", "created": 1, "model": "m",
                   "choices": [],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
        );
    }

    #[test]
    fn response_serialization_matches_openai() {
        let mut r = ChatCompletionResponse::new(
            "chatcmpl-1".into(),
            "m".into(),
            vec![ChatChoice {
                index: 0,
                message: ChatResponseMessage::assistant("hello"),
                logprobs: Some(ChatLogprobs {
                    content: vec![ChatLogprobToken {
                        token: "hello".into(),
                        logprob: -0.5,
                        bytes: Some(b"hello".to_vec()),
                        top_logprobs: vec![TopLogprob {
                            token: "hello".into(),
                            logprob: -0.5,
                            bytes: None,
                        }],
                    }],
                }),
                finish_reason: Some(FinishReason::Stop),
            }],
            Usage::new(2, 1),
        );
        r.created = 5;
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
                   "choices": [{"index": 0,
                                "message": {"role": "assistant", "content": "hello"},
                                "logprobs": {"content": [{"token": "hello", "logprob": -0.5,
                                    "bytes": [104, 101, 108, 108, 111],
                                    "top_logprobs": [{"token": "hello", "logprob": -0.5,
                                                      "bytes": null}]}]},
                                "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}})
        );
    }
}
