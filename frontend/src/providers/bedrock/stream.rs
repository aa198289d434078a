//! ConverseStream → OpenAI chunks: AWS event-stream frames decoded by
//! `aws-smithy-eventstream` (the AWS SDK's own decoder, CRCs checked), then
//! translated event by event: `messageStart` (role), `contentBlockStart`
//! (a tool call's id and name), `contentBlockDelta` (text, or a tool
//! call's argument fragment), `messageStop` (stop reason: the terminal
//! event), `metadata` (usage). An exception frame becomes an `Err` with
//! its HTTP status (throttling: 429); a body that ends before
//! `messageStop`, or mid-frame, is a 502.

use super::response::{finish_reason, TokenUsage};
use crate::error::ProviderError;
use crate::openai::{ChatCompletionChunk, FinishReason, Usage};
use crate::providers::http::malformed;
use crate::providers::stream_pump::{cut_stream, ChunkBuilder, StreamTranslator};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::Message;
use bytes::BytesMut;
use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;
use std::collections::HashMap;

/// One decoded event-stream message.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `:message-type: event`: `:event-type` and its JSON payload.
    Event {
        /// `messageStart`, `contentBlockDelta`, ...
        event_type: String,
        /// The payload.
        payload: Value,
    },
    /// `:message-type: exception` or `error`: already mapped to an error.
    Error(ProviderError),
}

/// The frames of an event-stream body, each read within `idle` (see
/// [`crate::providers::http::body_chunks`]).
pub fn frames(
    resp: reqwest::Response,
    idle: std::time::Duration,
) -> BoxStream<'static, Result<Frame, ProviderError>> {
    let state = (
        crate::providers::http::body_chunks(resp, idle),
        BytesMut::new(),
        MessageFrameDecoder::new(),
    );
    futures::stream::unfold(Some(state), |state| async move {
        let (mut bytes, mut buf, mut decoder) = state?;
        loop {
            match decoder.decode_frame(&mut buf) {
                Ok(DecodedFrame::Complete(message)) => {
                    return Some((frame(&message), Some((bytes, buf, decoder))));
                }
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => return Some((Err(malformed(e.to_string(), &buf)), None)),
            }
            match bytes.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                Some(Err(err)) => return Some((Err(err), None)),
                None if buf.is_empty() => return None,
                None => return Some((Err(cut_stream("Bedrock", "its final event")), None)),
            }
        }
    })
    .boxed()
}

fn header(message: &Message, name: &str) -> Option<String> {
    message
        .headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| h.value().as_string().ok())
        .map(|s| s.as_str().to_owned())
}

/// One message as a [`Frame`].
pub fn frame(message: &Message) -> Result<Frame, ProviderError> {
    let payload = message.payload();
    let json = || -> Result<Value, ProviderError> {
        if payload.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(payload).map_err(|e| malformed(e.to_string(), payload))
    };
    match header(message, ":message-type").as_deref() {
        Some("event") => Ok(Frame::Event {
            event_type: header(message, ":event-type").unwrap_or_default(),
            payload: json()?,
        }),
        Some("exception") => {
            let kind = header(message, ":exception-type").unwrap_or_default();
            let body = json().unwrap_or(Value::Null);
            let text = body
                .get("message")
                .or_else(|| body.get("Message"))
                .and_then(Value::as_str)
                .map_or_else(|| kind.clone(), str::to_owned);
            Ok(Frame::Error(ProviderError::Upstream {
                status: exception_status(&kind),
                message: text,
                retry_after: None,
            }))
        }
        _ => {
            let code = header(message, ":error-code").unwrap_or_else(|| "error".to_owned());
            let text = header(message, ":error-message").unwrap_or_else(|| code.clone());
            Ok(Frame::Error(ProviderError::Upstream {
                status: exception_status(&code),
                message: text,
                retry_after: None,
            }))
        }
    }
}

/// The HTTP status Bedrock documents for each stream exception.
fn exception_status(kind: &str) -> u16 {
    match kind {
        "throttlingException" | "modelNotReadyException" | "ThrottlingException" => 429,
        "validationException" | "ValidationException" => 400,
        "accessDeniedException" | "AccessDeniedException" => 403,
        "resourceNotFoundException" | "ResourceNotFoundException" => 404,
        "modelTimeoutException" | "ModelTimeoutException" => 408,
        "modelStreamErrorException" | "ModelStreamErrorException" => 424,
        "serviceUnavailableException" | "ServiceUnavailableException" => 503,
        _ => 500,
    }
}

/// One streamed response's translation state.
#[derive(Debug)]
pub struct BedrockStream {
    builder: ChunkBuilder,
    /// contentBlockIndex → OpenAI tool-call index.
    tool_blocks: HashMap<u64, u32>,
    stop: Option<FinishReason>,
    usage: Option<Usage>,
}

impl BedrockStream {
    /// A translator building its chunks with `builder`.
    pub fn new(builder: ChunkBuilder) -> Self {
        Self {
            builder,
            tool_blocks: HashMap::new(),
            stop: None,
            usage: None,
        }
    }

    fn on_payload(&mut self, event_type: &str, p: &Value) -> Vec<ChatCompletionChunk> {
        let block = p
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match event_type {
            "messageStart" if !self.builder.role_sent() => vec![self.builder.content("")],
            "contentBlockStart" => match p.pointer("/start/toolUse") {
                Some(tu) => {
                    let field = |k: &str| tu.get(k).and_then(Value::as_str).unwrap_or_default();
                    self.tool_blocks
                        .insert(block, self.builder.next_tool_call_index());
                    vec![self
                        .builder
                        .tool_call_start(field("toolUseId"), field("name"), "")]
                }
                None => Vec::new(),
            },
            "contentBlockDelta" => {
                if let Some(text) = p.pointer("/delta/text").and_then(Value::as_str) {
                    return vec![self.builder.content(text)];
                }
                match (
                    p.pointer("/delta/toolUse/input").and_then(Value::as_str),
                    self.tool_blocks.get(&block).copied(),
                ) {
                    (Some(input), Some(index)) => {
                        vec![self.builder.tool_call_arguments_at(index, input)]
                    }
                    _ => Vec::new(),
                }
            }
            "messageStop" => {
                let reason = finish_reason(p.get("stopReason").and_then(Value::as_str));
                self.stop = Some(reason);
                vec![self.builder.finish_chunk(reason)]
            }
            "metadata" => {
                if let Some(u) = p.get("usage") {
                    if let Ok(u) = serde_json::from_value::<TokenUsage>(u.clone()) {
                        self.usage = Some(u.to_usage());
                    }
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }
}

impl StreamTranslator<Frame> for BedrockStream {
    fn on_event(&mut self, frame: Frame) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        match frame {
            Frame::Error(e) => Err(e),
            Frame::Event {
                event_type,
                payload,
            } => Ok(self.on_payload(&event_type, &payload)),
        }
    }

    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        if self.stop.is_none() {
            return Err(cut_stream("Bedrock", "its final event"));
        }
        Ok(self
            .builder
            .usage_chunk(self.usage.clone().unwrap_or_default())
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue};
    use serde_json::json;

    fn message(headers: &[(&str, &str)], payload: Value) -> Message {
        let mut m = Message::new(payload.to_string().into_bytes());
        for (k, v) in headers {
            m = m.add_header(Header::new(
                k.to_string(),
                HeaderValue::String(v.to_string().into()),
            ));
        }
        m
    }

    fn event(kind: &str, payload: Value) -> Frame {
        frame(&message(
            &[(":message-type", "event"), (":event-type", kind)],
            payload,
        ))
        .unwrap()
    }

    #[test]
    fn decodes_event_and_exception_frames() {
        let m = message(
            &[
                (":message-type", "event"),
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
            ],
            json!({"contentBlockIndex": 0, "delta": {"text": "hi"}}),
        );
        let mut wire = Vec::new();
        write_message_to(&m, &mut wire).unwrap();
        let mut buf = BytesMut::from(&wire[..]);
        let decoded = match MessageFrameDecoder::new().decode_frame(&mut buf).unwrap() {
            DecodedFrame::Complete(m) => m,
            DecodedFrame::Incomplete => panic!("incomplete"),
        };
        assert_eq!(
            frame(&decoded).unwrap(),
            Frame::Event {
                event_type: "contentBlockDelta".into(),
                payload: json!({"contentBlockIndex": 0, "delta": {"text": "hi"}})
            }
        );
        let e = frame(&message(
            &[
                (":message-type", "exception"),
                (":exception-type", "throttlingException"),
            ],
            json!({"message": "Too many requests"}),
        ))
        .unwrap();
        assert_eq!(
            e,
            Frame::Error(ProviderError::Upstream {
                status: 429,
                message: "Too many requests".into(),
                retry_after: None
            })
        );
    }

    #[test]
    fn text_and_tool_stream() {
        let mut s = BedrockStream::new(ChunkBuilder::new("b", true));
        let mut out = Vec::new();
        for f in [
            event("messageStart", json!({"role": "assistant"})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 0, "start": {}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Let me"}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": " check"}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 0})),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 1,
                "start": {"toolUse": {"toolUseId": "tu_1", "name": "get_weather"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1,
                "delta": {"toolUse": {"input": "{\"city\":"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1,
                "delta": {"toolUse": {"input": "\"Paris\"}"}}}),
            ),
            event("contentBlockStop", json!({"contentBlockIndex": 1})),
            event("messageStop", json!({"stopReason": "tool_use"})),
            event(
                "metadata",
                json!({"usage": {"inputTokens": 5, "outputTokens": 9, "totalTokens": 14}}),
            ),
        ] {
            out.extend(s.on_event(f).unwrap());
        }
        out.extend(s.finish().unwrap());
        assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
        let text: String = out
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.content.clone())
            .collect();
        assert_eq!(text, "Let me check");
        let args: String = out
            .iter()
            .flat_map(|c| &c.choices)
            .filter_map(|c| c.delta.tool_calls.as_ref())
            .map(|t| t[0]["function"]["arguments"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(args, "{\"city\":\"Paris\"}");
        let start = out
            .iter()
            .flat_map(|c| &c.choices)
            .find_map(|c| c.delta.tool_calls.clone())
            .unwrap();
        assert_eq!(start[0]["id"], "tu_1");
        assert_eq!(start[0]["index"], 0);
        let n = out.len();
        assert_eq!(
            out[n - 2].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
        assert_eq!(out[n - 1].usage, Some(Usage::new(5, 9)));
    }

    #[test]
    fn missing_message_stop_is_cut() {
        let mut s = BedrockStream::new(ChunkBuilder::new("b", false));
        s.on_event(event("messageStart", json!({"role": "assistant"})))
            .unwrap();
        assert_eq!(s.finish().unwrap_err().status(), 502);
    }
}
