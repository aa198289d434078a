//! Turning a provider's own stream events into OpenAI chat chunks, for
//! adapters whose wire format is not OpenAI's (Ollama, Cohere): one
//! [`ChunkBuilder`] per response keeps the id, sends `role` once, numbers
//! tool calls, and ends with the finish reason and the `include_usage`
//! chunk; [`translate`] drives it over the upstream events and turns an
//! upstream that stops before its terminal event into a `502` item.

use crate::error::ProviderError;
use crate::openai::{
    new_id, unix_now, ChatChunkChoice, ChatCompletionChunk, ChatDelta, FinishReason, Usage,
};
use crate::provider::ChunkStream;
use futures::stream::{BoxStream, StreamExt};
use serde_json::{json, Value};

/// The OpenAI chunks of one streamed answer, built piece by piece.
#[derive(Debug)]
pub struct ChunkBuilder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
    /// Tool calls started so far; the current one is `tool_calls - 1`.
    tool_calls: u32,
}

impl ChunkBuilder {
    /// A builder answering as `model` (the client's name).
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: new_id("chatcmpl"),
            created: unix_now(),
            model: model.to_owned(),
            include_usage,
            role_sent: false,
            tool_calls: 0,
        }
    }

    /// Whether any tool call was streamed (the finish reason is then
    /// `tool_calls` whatever the upstream said).
    pub fn saw_tool_calls(&self) -> bool {
        self.tool_calls > 0
    }

    fn chunk(&mut self, mut delta: ChatDelta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        if !self.role_sent {
            delta.role = Some("assistant".to_owned());
            self.role_sent = true;
        }
        ChatCompletionChunk::new(
            self.id.clone(),
            self.created,
            self.model.clone(),
            vec![ChatChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
        )
    }

    /// A chunk carrying new text.
    pub fn content(&mut self, text: &str) -> ChatCompletionChunk {
        self.chunk(
            ChatDelta {
                content: Some(text.to_owned()),
                ..ChatDelta::default()
            },
            None,
        )
    }

    /// The first chunk of a new tool call: index, id, type, name and the
    /// arguments known so far (a JSON string, possibly partial or empty).
    pub fn tool_call_start(
        &mut self,
        id: &str,
        name: &str,
        arguments: &str,
    ) -> ChatCompletionChunk {
        let index = self.tool_calls;
        self.tool_calls += 1;
        let call = json!([{
            "index": index,
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments}
        }]);
        self.chunk(
            ChatDelta {
                tool_calls: Some(call),
                ..ChatDelta::default()
            },
            None,
        )
    }

    /// More argument text for the current tool call.
    pub fn tool_call_arguments(&mut self, arguments: &str) -> ChatCompletionChunk {
        let index = self.tool_calls.saturating_sub(1);
        let call = json!([{"index": index, "function": {"arguments": arguments}}]);
        self.chunk(
            ChatDelta {
                tool_calls: Some(call),
                ..ChatDelta::default()
            },
            None,
        )
    }

    /// The last chunks: the finish reason, then the usage chunk when the
    /// client asked for it (`stream_options.include_usage`).
    pub fn finish(&mut self, reason: FinishReason, usage: Usage) -> Vec<ChatCompletionChunk> {
        let reason = if self.saw_tool_calls() && reason == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            reason
        };
        let mut out = vec![self.chunk(ChatDelta::default(), Some(reason))];
        if self.include_usage {
            out.push(ChatCompletionChunk::usage_only(
                self.id.clone(),
                self.created,
                self.model.clone(),
                usage,
            ));
        }
        out
    }
}

/// What one upstream event produced.
#[derive(Debug, Default)]
pub struct Step {
    /// Chunks to send, in order.
    pub chunks: Vec<ChatCompletionChunk>,
    /// True at the upstream's terminal event: the stream ends after these.
    pub done: bool,
}

/// Drives `step` over the upstream `events`, flattening what it produces.
/// The stream ends after a step says `done`, at the first error (sent as
/// an `Err` item), or, when the upstream ends without its terminal event,
/// with a `502` item naming `terminal` (a cut stream is never a silent
/// normal end).
pub fn translate<E, F>(
    events: BoxStream<'static, Result<E, ProviderError>>,
    builder: ChunkBuilder,
    terminal: &'static str,
    step: F,
) -> ChunkStream<ChatCompletionChunk>
where
    E: Send + 'static,
    F: FnMut(&mut ChunkBuilder, E) -> Result<Step, ProviderError> + Send + 'static,
{
    type Items =
        futures::stream::Iter<std::vec::IntoIter<Result<ChatCompletionChunk, ProviderError>>>;
    let stop = |items: Vec<Result<ChatCompletionChunk, ProviderError>>| -> Items {
        futures::stream::iter(items)
    };
    futures::stream::unfold(Some((events, builder, step)), move |state| async move {
        let (mut events, mut builder, mut step) = state?;
        let items = match events.next().await {
            Some(Ok(ev)) => match step(&mut builder, ev) {
                Ok(s) => {
                    let chunks = s.chunks.into_iter().map(Ok).collect();
                    let rest = (!s.done).then_some((events, builder, step));
                    return Some((stop(chunks), rest));
                }
                Err(e) => vec![Err(e)],
            },
            Some(Err(e)) => vec![Err(e)],
            None => vec![Err(ProviderError::Upstream {
                status: 502,
                message: format!("the upstream stream ended before its {terminal}"),
                retry_after: None,
            })],
        };
        Some((stop(items), None))
    })
    .flatten()
    .boxed()
}

/// An OpenAI tool call (`arguments` a JSON string) from a name and the
/// arguments as the provider gave them (a JSON object for Ollama, a
/// string for Cohere).
pub fn tool_call(id: &str, name: &str, arguments: &Value) -> Value {
    let arguments = match arguments {
        Value::String(s) => s.clone(),
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    };
    json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[tokio::test]
    async fn translate_flattens_and_ends_at_done() {
        let events = futures::stream::iter(vec![Ok("a"), Ok("b"), Ok("end"), Ok("never")]).boxed();
        let out: Vec<_> = translate(
            events,
            ChunkBuilder::new("m", true),
            "end event",
            |b, ev: &str| {
                Ok(if ev == "end" {
                    Step {
                        chunks: b.finish(FinishReason::Stop, Usage::new(1, 2)),
                        done: true,
                    }
                } else {
                    Step {
                        chunks: vec![b.content(ev)],
                        done: false,
                    }
                })
            },
        )
        .map(Result::unwrap)
        .collect()
        .await;
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
        assert_eq!(out[1].choices[0].delta.role, None);
        assert_eq!(out[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(out[3].usage.as_ref().unwrap().total_tokens, 3);
        assert!(out.iter().all(|c| c.model == "m" && c.id == out[0].id));
    }

    #[tokio::test]
    async fn a_cut_stream_ends_with_a_502() {
        let events = futures::stream::iter(vec![Ok("a")]).boxed();
        let out: Vec<_> = translate(
            events,
            ChunkBuilder::new("m", false),
            "done",
            |b, ev: &str| {
                Ok(Step {
                    chunks: vec![b.content(ev)],
                    done: false,
                })
            },
        )
        .collect()
        .await;
        assert_eq!(out.len(), 2);
        let err = out[1].as_ref().unwrap_err();
        assert_eq!(err.status(), 502);
        assert!(err.to_string().contains("done"));
    }

    #[test]
    fn tool_calls_are_numbered_and_force_the_finish_reason() {
        let mut b = ChunkBuilder::new("m", false);
        let first = b.tool_call_start("c1", "f", "");
        assert_eq!(
            first.choices[0].delta.tool_calls.as_ref().unwrap()[0]["index"],
            0
        );
        let args = b.tool_call_arguments("{\"a\":1}");
        assert_eq!(
            args.choices[0].delta.tool_calls.as_ref().unwrap()[0]["index"],
            0
        );
        let second = b.tool_call_start("c2", "g", "{}");
        assert_eq!(
            second.choices[0].delta.tool_calls.as_ref().unwrap()[0]["index"],
            1
        );
        let end = b.finish(FinishReason::Stop, Usage::default());
        assert_eq!(
            end[0].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
    }
}
