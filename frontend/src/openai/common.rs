//! Pieces shared by chat and text completions: stop sequences, stream
//! options, usage, finish reasons, ids and timestamps.

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// `stop`: OpenAI accepts one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StopSequences {
    /// `"stop": "\n"`.
    One(String),
    /// `"stop": ["\n", "User:"]`.
    Many(Vec<String>),
}

impl StopSequences {
    /// The stop strings as a list, whichever form the client sent.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }

    /// How many stop strings there are (validation caps it).
    pub fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(v) => v.len(),
        }
    }

    /// True when the client sent an empty array.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `stream_options`: only `include_usage` exists; when true the provider
/// ends the stream with one chunk that has empty `choices` and `usage` set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for the final usage chunk.
    #[serde(default)]
    pub include_usage: Option<bool>,
    /// vLLM extra: put running usage on every chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous_usage_stats: Option<bool>,
}

/// Token accounting of one request, as OpenAI reports it (and as spend
/// tracking will bill it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt (after the chat template).
    pub prompt_tokens: u32,
    /// Tokens generated, over all choices.
    pub completion_tokens: u32,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: u32,
    /// Prompt tokens served from the prefix cache, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl Usage {
    /// Usage with `total_tokens` computed, so it can never disagree.
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
            prompt_tokens_details: None,
        }
    }
}

/// OpenAI's `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: u32,
}

/// Why a choice stopped; serialized as OpenAI's lowercase strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// EOS token, a stop string or a stop token id.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The model called a tool.
    ToolCalls,
    /// A guardrail cut the output.
    ContentFilter,
    /// The engine aborted the request before it ended (vLLM's `"abort"`).
    Abort,
}

/// Seconds since the Unix epoch, for the `created` fields.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh response id such as `chatcmpl-3f2a...`; `prefix` is
/// `"chatcmpl"` for chat and `"cmpl"` for completions, like OpenAI's.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A tool call's id as OpenAI writes them (`call_` and random hex), for
/// calls whose model or provider gave none.
pub fn new_call_id() -> String {
    format!("call_{}", uuid::Uuid::new_v4().simple())
}
