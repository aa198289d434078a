//! Ingress streaming: OpenAI chat chunks → Anthropic stream events, in
//! Anthropic's order: `message_start`; per block `content_block_start`,
//! its deltas (`text_delta`, or `input_json_delta` for a `tool_use`
//! block), `content_block_stop`; then `message_delta` (stop_reason and
//! usage) and `message_stop`.
//!
//! The stop reason arrives on the finish chunk but usage on the chunk after
//! it (the ingress always asks for `include_usage`), so `message_delta` is
//! sent when the provider stream ends. A provider error becomes an `error`
//! event, after which the stream ends; a provider stream that ends without
//! a finish reason is reported the same way (it was cut).

use super::error::error_body;
use super::response::{message_id, stop_reason, usage};
use super::types::{
    AnthropicUsage, BlockDelta, ContentBlock, MessageDeltaBody, MessagesResponse, Role, StopReason,
    StreamEvent,
};
use crate::error::ProviderError;
use crate::openai::ChatCompletionChunk;
use crate::provider::ChunkStream;
use futures::stream::{BoxStream, StreamExt};
use serde_json::{Map, Value};
use std::collections::VecDeque;

/// Which block is open.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    None,
    Text,
    /// A tool_use block for this OpenAI tool-call index.
    Tool(u64),
}

/// The state of one stream's translation.
#[derive(Debug)]
pub struct EventEncoder {
    model: String,
    started: bool,
    open: Open,
    next_index: u32,
    stop: Option<StopReason>,
    usage: AnthropicUsage,
}

impl EventEncoder {
    /// An encoder naming `model` in `message_start`.
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: Open::None,
            next_index: 0,
            stop: None,
            usage: AnthropicUsage::default(),
        }
    }

    fn start(&mut self, id: &str, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(StreamEvent::MessageStart {
            message: MessagesResponse {
                id: message_id(id),
                kind: "message".to_owned(),
                role: Role::Assistant,
                content: Vec::new(),
                model: self.model.clone(),
                stop_reason: None,
                stop_sequence: None,
                usage: AnthropicUsage::default(),
            },
        });
    }

    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if self.open != Open::None {
            out.push(StreamEvent::ContentBlockStop {
                index: self.next_index - 1,
            });
            self.open = Open::None;
        }
    }

    fn open(&mut self, kind: Open, block: ContentBlock, out: &mut Vec<StreamEvent>) {
        self.close(out);
        out.push(StreamEvent::ContentBlockStart {
            index: self.next_index,
            content_block: block,
        });
        self.next_index += 1;
        self.open = kind;
    }

    fn current(&self) -> u32 {
        self.next_index.saturating_sub(1)
    }

    /// The events one chunk yields.
    pub fn on_chunk(&mut self, chunk: ChatCompletionChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start(&chunk.id, &mut out);
        if let Some(u) = &chunk.usage {
            self.usage = usage(u);
        }
        // Anthropic has one choice; others (n > 1) are not representable.
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                if self.open != Open::Text {
                    let block = ContentBlock::Text {
                        text: String::new(),
                    };
                    self.open(Open::Text, block, &mut out);
                }
                out.push(StreamEvent::ContentBlockDelta {
                    index: self.current(),
                    delta: BlockDelta::TextDelta { text },
                });
            }
            if let Some(Value::Array(calls)) = choice.delta.tool_calls {
                for call in calls {
                    self.tool_call_delta(&call, &mut out);
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.stop = Some(stop_reason(reason));
            }
        }
        out
    }

    fn tool_call_delta(&mut self, call: &Value, out: &mut Vec<StreamEvent>) {
        let k = call.get("index").and_then(Value::as_u64).unwrap_or(0);
        let id = call.get("id").and_then(Value::as_str);
        if id.is_some() || self.open != Open::Tool(k) {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let block = ContentBlock::ToolUse {
                id: id.map_or_else(|| format!("toolu_{k}"), str::to_owned),
                name: name.to_owned(),
                input: Value::Object(Map::new()),
            };
            self.open(Open::Tool(k), block, out);
        }
        if let Some(args) = call
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            out.push(StreamEvent::ContentBlockDelta {
                index: self.current(),
                delta: BlockDelta::InputJsonDelta {
                    partial_json: args.to_owned(),
                },
            });
        }
    }

    /// The closing events once the provider stream ended: the open block's
    /// stop, `message_delta`, `message_stop`; or an `error` event when no
    /// finish reason was seen.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start("", &mut out);
        let Some(stop) = self.stop.take() else {
            out.push(self.error(&ProviderError::Upstream {
                status: 502,
                message: "the model's stream ended without a finish reason".to_owned(),
                retry_after: None,
            }));
            return out;
        };
        self.close(&mut out);
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(stop),
                stop_sequence: None,
            },
            usage: self.usage.clone(),
        });
        out.push(StreamEvent::MessageStop);
        out
    }

    /// The `error` event for a mid-stream failure.
    pub fn error(&self, e: &ProviderError) -> StreamEvent {
        tracing::warn!(error = %e, "provider stream failed mid-response (/v1/messages)");
        StreamEvent::Error {
            error: error_body(e.status(), e.to_string()).error,
        }
    }
}

/// The Anthropic events of a provider's chunk stream. Dropping the result
/// drops the provider stream (cancellation, as on the OpenAI routes).
pub fn events(
    chunks: ChunkStream<ChatCompletionChunk>,
    model: &str,
) -> BoxStream<'static, StreamEvent> {
    let state = (Some(chunks), EventEncoder::new(model), VecDeque::new());
    futures::stream::unfold(state, |(mut chunks, mut enc, mut pending)| async move {
        loop {
            if let Some(ev) = pending.pop_front() {
                return Some((ev, (chunks, enc, pending)));
            }
            let stream = chunks.as_mut()?;
            match stream.next().await {
                Some(Ok(chunk)) => pending.extend(enc.on_chunk(chunk)),
                Some(Err(e)) => {
                    let mut out = Vec::new();
                    enc.start("", &mut out);
                    out.push(enc.error(&e));
                    pending.extend(out);
                    chunks = None;
                }
                None => {
                    pending.extend(enc.finish());
                    chunks = None;
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::{ChatChunkChoice, ChatDelta, FinishReason, Usage};
    use serde_json::json;

    fn chunk(delta: Value, finish: Option<FinishReason>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(
            "chatcmpl-1".into(),
            1,
            "m".into(),
            vec![ChatChunkChoice {
                index: 0,
                delta: serde_json::from_value::<ChatDelta>(delta).unwrap(),
                logprobs: None,
                finish_reason: finish,
            }],
        )
    }

    async fn run(items: Vec<Result<ChatCompletionChunk, ProviderError>>) -> Vec<Value> {
        events(futures::stream::iter(items).boxed(), "client-model")
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
            .await
    }

    fn types(evs: &[Value]) -> Vec<String> {
        evs.iter()
            .map(|e| {
                let t = e["type"].as_str().unwrap().to_owned();
                match e
                    .pointer("/delta/type")
                    .or(e.pointer("/content_block/type"))
                {
                    Some(Value::String(s)) => format!("{t}:{s}"),
                    _ => t,
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn text_then_tool_calls_in_anthropic_order() {
        let evs = run(vec![
            Ok(chunk(json!({"role": "assistant", "content": ""}), None)),
            Ok(chunk(json!({"content": "Hel"}), None)),
            Ok(chunk(json!({"content": "lo"}), None)),
            Ok(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                "function": {"name": "f", "arguments": ""}}]}),
                None,
            )),
            Ok(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":"}}]}),
                None,
            )),
            Ok(chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
                None,
            )),
            Ok(chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                "function": {"name": "g", "arguments": "{}"}}]}),
                None,
            )),
            Ok(chunk(json!({}), Some(FinishReason::ToolCalls))),
            Ok(ChatCompletionChunk::usage_only(
                "chatcmpl-1".into(),
                1,
                "m".into(),
                Usage::new(7, 9),
            )),
        ])
        .await;
        assert_eq!(
            types(&evs),
            [
                "message_start",
                "content_block_start:text",
                "content_block_delta:text_delta",
                "content_block_delta:text_delta",
                "content_block_stop",
                "content_block_start:tool_use",
                "content_block_delta:input_json_delta",
                "content_block_delta:input_json_delta",
                "content_block_stop",
                "content_block_start:tool_use",
                "content_block_delta:input_json_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(evs[0]["message"]["id"], "msg_1");
        assert_eq!(evs[0]["message"]["model"], "client-model");
        assert_eq!(evs[5]["index"], 1);
        assert_eq!(
            evs[5]["content_block"],
            json!({"type": "tool_use", "id": "call_a", "name": "f", "input": {}})
        );
        assert_eq!(evs[9]["index"], 2);
        assert_eq!(evs[12]["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            evs[12]["usage"],
            json!({"input_tokens": 7, "output_tokens": 9})
        );
    }

    #[tokio::test]
    async fn errors_and_cut_streams_end_with_an_error_event() {
        let evs = run(vec![
            Ok(chunk(json!({"content": "a"}), None)),
            Err(ProviderError::Upstream {
                status: 529,
                message: "Overloaded".into(),
                retry_after: None,
            }),
            Ok(chunk(json!({"content": "never"}), None)),
        ])
        .await;
        assert_eq!(
            types(&evs),
            [
                "message_start",
                "content_block_start:text",
                "content_block_delta:text_delta",
                "error"
            ]
        );
        assert_eq!(
            evs[3],
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
        );
        let evs = run(vec![Ok(chunk(json!({"content": "a"}), None))]).await;
        assert_eq!(evs.last().unwrap()["type"], "error");
        let evs = run(vec![]).await;
        assert_eq!(types(&evs), ["message_start", "error"]);
    }
}
