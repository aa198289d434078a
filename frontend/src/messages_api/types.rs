//! Anthropic Messages wire types, defined once: the adapter
//! ([`crate::providers::anthropic`]) sends and parses them, the ingress
//! (`POST /v1/messages`) accepts and answers them.
//!
//! Field names and shapes follow Anthropic's API reference
//! (<https://docs.anthropic.com/en/api/messages>). Unknown request fields
//! are kept in `extra` (and not forwarded); unknown content-block and delta
//! types deserialize as `Other` so a new block type from the API does not
//! break a stream.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Anthropic's API version header value this code speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A `POST /v1/messages` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessagesRequest {
    /// The model name.
    #[serde(default)]
    pub model: String,
    /// The conversation, alternating user and assistant turns.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The system prompt (a string or text blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    /// Cap on generated tokens; required by Anthropic (`i64` so a negative
    /// value is a clean 400 naming it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Custom stop strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    /// Answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Sampling temperature, 0..=1 at Anthropic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Sample from the k most likely tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Tool definitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model may use the tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// `{"user_id": ...}` for abuse tracking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    /// Every other field (`thinking`, `service_tier`, ...): kept, not forwarded.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `metadata` of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// An opaque end-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The `system` field: a string or a list of text blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// `"system": "be brief"`.
    Text(String),
    /// `"system": [{"type": "text", "text": "be brief"}]`.
    Blocks(Vec<ContentBlock>),
}

impl SystemPrompt {
    /// The prompt's text, blocks joined by `\n`.
    pub fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Blocks(blocks) => join_text(blocks),
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: Role,
    /// A string or content blocks.
    pub content: Content,
}

/// Who speaks a turn; Anthropic has only these two (system is top-level,
/// tool results are user blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The human (and tool results).
    User,
    /// The model.
    Assistant,
}

/// A turn's content: a string, or blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Shorthand for one text block.
    Text(String),
    /// Typed content blocks.
    Blocks(Vec<ContentBlock>),
}

impl Content {
    /// The content as blocks (a string is one text block).
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            Self::Text(text) => vec![ContentBlock::Text { text }],
            Self::Blocks(blocks) => blocks,
        }
    }
}

/// A content block, in requests and responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image (user turns).
    Image {
        /// Inline bytes or a URL.
        source: ImageSource,
    },
    /// The model calls a tool (assistant turns).
    ToolUse {
        /// `toolu_...`; the matching `tool_result` names it.
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments, a JSON object.
        input: Value,
    },
    /// A tool's answer (user turns).
    ToolResult {
        /// The `tool_use` block this answers.
        tool_use_id: String,
        /// The result: a string or blocks (text, images).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<Content>,
        /// Whether the tool failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        is_error: Option<bool>,
    },
    /// Extended thinking (assistant turns); not translated to OpenAI.
    Thinking {
        /// The reasoning text.
        #[serde(default)]
        thinking: String,
        /// Anthropic's signature over it.
        #[serde(default)]
        signature: String,
    },
    /// Encrypted thinking; not translated.
    RedactedThinking {
        /// Opaque data.
        #[serde(default)]
        data: String,
    },
    /// Any block type this code does not know (documents, search results).
    #[serde(other)]
    Other,
}

/// Where an image's bytes are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// Inline base64 bytes.
    Base64 {
        /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
        media_type: String,
        /// The base64 data.
        data: String,
    },
    /// An http(s) URL Anthropic fetches.
    Url {
        /// The URL.
        url: String,
    },
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// The tool's name.
    pub name: String,
    /// What it does (the model reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    #[serde(default = "empty_object_schema")]
    pub input_schema: Value,
}

/// The schema of a tool without parameters.
pub fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one tool call per turn when true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call some tool.
    Any {
        /// At most one tool call per turn when true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must call this tool.
    Tool {
        /// The tool's name.
        name: String,
        /// At most one tool call per turn when true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must not call tools.
    None,
}

/// The non-streaming answer (also the `message` of `message_start`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessagesResponse {
    /// `msg_...`.
    pub id: String,
    /// Always `"message"`.
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: Role,
    /// The generated blocks.
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    /// The model that answered.
    #[serde(default)]
    pub model: String,
    /// Why generation stopped; `null` in `message_start`.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// The stop string hit, when `stop_reason` is `stop_sequence`.
    #[serde(default)]
    pub stop_sequence: Option<String>,
    /// Token accounting.
    #[serde(default)]
    pub usage: AnthropicUsage,
}

fn message_type() -> String {
    "message".to_owned()
}

/// Why generation stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// `max_tokens` was reached.
    MaxTokens,
    /// A custom stop sequence was generated.
    StopSequence,
    /// The model called a tool.
    ToolUse,
    /// A long-running turn was paused (server tools).
    PauseTurn,
    /// The model refused (safety classifiers).
    Refusal,
    /// The context window filled up.
    ModelContextWindowExceeded,
    /// A reason this code does not know yet.
    #[serde(other)]
    Other,
}

/// Anthropic's usage. Cache reads and writes are prompt tokens billed
/// apart; OpenAI's `prompt_tokens` is their sum with `input_tokens`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnthropicUsage {
    /// Uncached prompt tokens.
    #[serde(default)]
    pub input_tokens: u32,
    /// Generated tokens.
    #[serde(default)]
    pub output_tokens: u32,
    /// Prompt tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u32>,
    /// Prompt tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
}

/// One event of a streamed answer; the SSE `event:` name equals `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First: the message with empty content and the prompt's usage.
    MessageStart {
        /// The message shell.
        message: MessagesResponse,
    },
    /// A block begins (text with empty text, tool_use with empty input).
    ContentBlockStart {
        /// The block's position in `content`.
        index: u32,
        /// The block shell.
        content_block: ContentBlock,
    },
    /// More of a block.
    ContentBlockDelta {
        /// The block's position.
        index: u32,
        /// What is new.
        delta: BlockDelta,
    },
    /// A block is complete.
    ContentBlockStop {
        /// The block's position.
        index: u32,
    },
    /// Top-level changes at the end: `stop_reason` and the output usage.
    MessageDelta {
        /// `stop_reason`, `stop_sequence`.
        delta: MessageDeltaBody,
        /// Cumulative usage (`output_tokens`; newer APIs add input counts).
        #[serde(default)]
        usage: AnthropicUsage,
    },
    /// Last event of a complete stream.
    MessageStop,
    /// Keep-alive.
    Ping,
    /// An error after the 200 (overloaded, ...).
    Error {
        /// The error.
        error: ErrorObject,
    },
}

impl StreamEvent {
    /// The SSE `event:` name of this event.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
            Self::Ping => "ping",
            Self::Error { .. } => "error",
        }
    }
}

/// The `delta` of `content_block_delta`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text of a text block.
    TextDelta {
        /// The new text.
        text: String,
    },
    /// More of a tool_use block's input, as a fragment of JSON text.
    InputJsonDelta {
        /// The fragment.
        partial_json: String,
    },
    /// More reasoning of a thinking block.
    ThinkingDelta {
        /// The new reasoning text.
        thinking: String,
    },
    /// The signature of a thinking block.
    SignatureDelta {
        /// The signature.
        signature: String,
    },
    /// A delta type this code does not know.
    #[serde(other)]
    Other,
}

/// The `delta` of `message_delta`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
    /// The stop string hit.
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Always `"error"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: ErrorObject,
}

/// The inside of [`ErrorResponse`] (and of a stream's `error` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// `invalid_request_error`, `overloaded_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Human-readable reason.
    #[serde(default)]
    pub message: String,
}

/// The text blocks of `blocks` joined by `\n`; other blocks are skipped.
pub fn join_text(blocks: &[ContentBlock]) -> String {
    blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trips_documented_shapes() {
        let v = json!({
            "model": "claude-3-5-sonnet", "max_tokens": 100,
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]}
            ],
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "f"},
            "thinking": {"type": "enabled", "budget_tokens": 10}
        });
        let r: MessagesRequest = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.system.as_ref().unwrap().text(), "be brief");
        assert!(r.extra.contains_key("thinking"));
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
    }

    #[test]
    fn unknown_block_and_delta_types_are_other() {
        let b: ContentBlock =
            serde_json::from_value(json!({"type": "document", "source": {}})).unwrap();
        assert_eq!(b, ContentBlock::Other);
        let e: StreamEvent = serde_json::from_value(json!({
            "type": "content_block_delta", "index": 0,
            "delta": {"type": "citations_delta", "citation": {}}}))
        .unwrap();
        assert_eq!(
            e,
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: BlockDelta::Other
            }
        );
    }

    #[test]
    fn event_names_match_their_type() {
        let events = [
            StreamEvent::MessageStop,
            StreamEvent::Ping,
            StreamEvent::ContentBlockStop { index: 1 },
            StreamEvent::MessageDelta {
                delta: MessageDeltaBody::default(),
                usage: AnthropicUsage::default(),
            },
        ];
        for e in events {
            assert_eq!(serde_json::to_value(&e).unwrap()["type"], e.name());
        }
    }
}
