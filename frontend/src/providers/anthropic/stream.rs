//! Anthropic's SSE events → OpenAI chat chunks.
//!
//! `message_start` gives the id and prompt usage (the role chunk),
//! `content_block_start`/`content_block_delta` give text and tool-call
//! deltas (a `tool_use` block is one OpenAI tool call, numbered in order),
//! `message_delta` the stop reason and output usage (the finish chunk), and
//! `message_stop` ends the stream (after the usage chunk when asked for).
//! An `error` event is an `Err` item with the upstream's message; a body
//! that ends before `message_stop` is an `Err` (502), never a quiet end.
//! The chunks come from the shared [`ChunkBuilder`] and the stream from
//! [`crate::providers::stream_pump::pump`].

use super::response::{finish_reason, usage};
use crate::error::ProviderError;
use crate::messages_api::error::status_of;
use crate::messages_api::types::{AnthropicUsage, BlockDelta, ContentBlock, StreamEvent};
use crate::openai::{ChatCompletionChunk, FinishReason};
use crate::providers::http::{malformed, SseEvent};
use crate::providers::stream_pump::{cut_stream, ChunkBuilder, StreamTranslator};
use serde_json::Value;
use std::collections::HashMap;

/// The state of one streamed answer's translation.
#[derive(Debug)]
pub struct AnthropicStream {
    builder: ChunkBuilder,
    /// Anthropic block index → OpenAI tool-call index.
    tools: HashMap<u32, u32>,
    usage: AnthropicUsage,
    finished: bool,
    done: bool,
}

impl AnthropicStream {
    /// A translator building its chunks with `builder` (which takes the
    /// upstream's `msg_...` id at `message_start`).
    pub fn new(builder: ChunkBuilder) -> Self {
        Self {
            builder,
            tools: HashMap::new(),
            usage: AnthropicUsage::default(),
            finished: false,
            done: false,
        }
    }
}

impl StreamTranslator<SseEvent> for AnthropicStream {
    fn on_event(&mut self, ev: SseEvent) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        let event: StreamEvent = match serde_json::from_str(&ev.data) {
            Ok(e) => e,
            // An event type newer than this code: skip it, as the SDKs do.
            Err(_) if !KNOWN.contains(&ev.event.as_str()) && !ev.event.is_empty() => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(malformed(format!("{e}"), ev.data.as_bytes())),
        };
        let b = &mut self.builder;
        Ok(match event {
            StreamEvent::MessageStart { message } => {
                if !message.id.is_empty() {
                    b.set_id(message.id);
                }
                self.usage = message.usage;
                vec![b.content("")]
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                ContentBlock::Text { text } if !text.is_empty() => vec![b.content(&text)],
                ContentBlock::ToolUse { id, name, input } => {
                    self.tools.insert(index, b.next_tool_call_index());
                    let args = match &input {
                        Value::Object(o) if o.is_empty() => String::new(),
                        other => other.to_string(),
                    };
                    vec![b.tool_call_start(&id, &name, &args)]
                }
                _ => Vec::new(),
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } if !text.is_empty() => vec![b.content(&text)],
                BlockDelta::InputJsonDelta { partial_json } if !partial_json.is_empty() => {
                    let k = self.tools.get(&index).copied().ok_or_else(|| {
                        malformed(
                            format!("input_json_delta for block {index}, which is not a tool_use"),
                            ev.data.as_bytes(),
                        )
                    })?;
                    vec![b.tool_call_arguments_at(k, &partial_json)]
                }
                _ => Vec::new(),
            },
            StreamEvent::ContentBlockStop { .. } | StreamEvent::Ping => Vec::new(),
            StreamEvent::MessageDelta { delta, usage: u } => {
                self.usage.output_tokens = u.output_tokens;
                if u.input_tokens > 0 {
                    self.usage.input_tokens = u.input_tokens;
                }
                if u.cache_creation_input_tokens.is_some() {
                    self.usage.cache_creation_input_tokens = u.cache_creation_input_tokens;
                }
                if u.cache_read_input_tokens.is_some() {
                    self.usage.cache_read_input_tokens = u.cache_read_input_tokens;
                }
                let reason = delta
                    .stop_reason
                    .as_ref()
                    .map_or(FinishReason::Stop, finish_reason);
                self.finished = true;
                vec![b.finish_chunk(reason)]
            }
            StreamEvent::MessageStop => {
                let mut out = Vec::new();
                if !self.finished {
                    self.finished = true;
                    out.push(b.finish_chunk(FinishReason::Stop));
                }
                out.extend(b.usage_chunk(usage(&self.usage)));
                self.done = true;
                out
            }
            StreamEvent::Error { error } => {
                return Err(ProviderError::Upstream {
                    status: status_of(&error.kind),
                    message: error.message,
                    retry_after: None,
                })
            }
        })
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        Err(cut_stream("anthropic", "message_stop"))
    }
}

const KNOWN: [&str; 8] = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
];

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::providers::stream_pump::pump;
    use futures::stream::StreamExt;
    use serde_json::json;

    fn ev(name: &str, data: Value) -> Result<SseEvent, ProviderError> {
        Ok(SseEvent {
            event: name.to_owned(),
            data: data.to_string(),
        })
    }

    fn documented_tool_stream() -> Vec<Result<SseEvent, ProviderError>> {
        vec![
            ev(
                "message_start",
                json!({"type": "message_start", "message": {"id": "msg_1",
                "type": "message", "role": "assistant", "content": [], "model": "claude-x",
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 25, "output_tokens": 1}}}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            ),
            ev("ping", json!({"type": "ping"})),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": "Okay"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 0}),
            ),
            ev(
                "content_block_start",
                json!({"type": "content_block_start", "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": ""}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}}),
            ),
            ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": " \"Paris\"}"}}),
            ),
            ev(
                "content_block_stop",
                json!({"type": "content_block_stop", "index": 1}),
            ),
            ev(
                "message_delta",
                json!({"type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                "usage": {"output_tokens": 89}}),
            ),
            ev("message_stop", json!({"type": "message_stop"})),
        ]
    }

    async fn collect(
        events: Vec<Result<SseEvent, ProviderError>>,
        include_usage: bool,
    ) -> Vec<Result<ChatCompletionChunk, ProviderError>> {
        let s = futures::stream::iter(events).boxed();
        pump(
            s,
            AnthropicStream::new(ChunkBuilder::new("mine", include_usage)),
        )
        .collect()
        .await
    }

    #[tokio::test]
    async fn documented_stream_becomes_openai_chunks() {
        let out = collect(documented_tool_stream(), true).await;
        let out: Vec<Value> = out
            .into_iter()
            .map(|c| serde_json::to_value(c.unwrap()).unwrap())
            .collect();
        assert!(out
            .iter()
            .all(|c| c["model"] == "mine" && c["id"] == "msg_1"));
        let deltas: Vec<&Value> = out.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
        assert_eq!(deltas[1], &json!({"content": "Okay"}));
        assert_eq!(
            deltas[2],
            &json!({"tool_calls": [{"index": 0, "id": "toolu_1", "type": "function",
                                    "function": {"name": "get_weather", "arguments": ""}}]})
        );
        assert_eq!(
            deltas[3],
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]})
        );
        assert_eq!(out[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out[6]["choices"], json!([]));
        assert_eq!(
            out[6]["usage"],
            json!({"prompt_tokens": 25, "completion_tokens": 89, "total_tokens": 114})
        );
        assert_eq!(out.len(), 7);
    }

    #[tokio::test]
    async fn no_usage_chunk_unless_asked() {
        let out = collect(documented_tool_stream(), false).await;
        assert_eq!(out.len(), 6);
        assert!(out.iter().all(|c| c.as_ref().unwrap().usage.is_none()));
    }

    #[tokio::test]
    async fn cut_stream_is_an_error() {
        let mut events = documented_tool_stream();
        events.truncate(8);
        let out = collect(events, true).await;
        match out.last().unwrap() {
            Err(ProviderError::Upstream { status: 502, .. }) => {}
            other => panic!("{other:?}"),
        }
        // Cut after message_delta but before message_stop: still an error.
        let mut events = documented_tool_stream();
        events.pop();
        let out = collect(events, false).await;
        assert!(out.last().unwrap().is_err());
    }

    #[tokio::test]
    async fn error_event_keeps_message_and_status() {
        let mut events = documented_tool_stream();
        events.truncate(2);
        events.push(ev(
            "error",
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
        ));
        events.push(ev("message_stop", json!({"type": "message_stop"})));
        let out = collect(events, false).await;
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[1].clone().unwrap_err(),
            ProviderError::Upstream {
                status: 529,
                message: "Overloaded".into(),
                retry_after: None
            }
        );
    }

    #[tokio::test]
    async fn unknown_events_are_skipped_and_garbage_is_502() {
        let mut events = documented_tool_stream();
        events.insert(1, ev("some_new_event", json!({"type": "some_new_event"})));
        assert!(collect(events, false).await.iter().all(Result::is_ok));
        let mut events = documented_tool_stream();
        events.insert(
            1,
            Ok(SseEvent {
                event: "content_block_delta".into(),
                data: "{not json".into(),
            }),
        );
        let out = collect(events, false).await;
        assert!(matches!(
            out.last().unwrap(),
            Err(ProviderError::Upstream { status: 502, .. })
        ));
    }
}
