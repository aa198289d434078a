//! Turning a provider's own stream events (SSE JSON, NDJSON lines, AWS
//! event-stream frames) into OpenAI [`ChatCompletionChunk`]s, for every
//! adapter whose wire format is not OpenAI's. Two pieces: a
//! [`ChunkBuilder`] per response keeps the id, sends `role` once, numbers
//! tool calls, and builds the finish and `include_usage` chunks; a
//! [`StreamTranslator`] (the adapter's per-request state, usually holding a
//! builder) says what each upstream event yields, and [`pump`] drives it,
//! so each adapter writes only the translation and never the stream
//! plumbing.
//!
//! The contract every adapter relies on: an upstream error item ends the
//! stream with that error; the stream ends right after the terminal event
//! when the format has one that nothing follows
//! ([`StreamTranslator::is_done`]); otherwise, when the upstream ends,
//! [`StreamTranslator::finish`] decides whether it ended normally (emit the
//! last chunks) or was cut (an `Err`, a 502: [`cut_stream`]), so a cut
//! stream never looks like a normal end. Dropping the returned stream drops
//! the upstream body, which closes the connection (cancellation).

use crate::error::ProviderError;
use crate::openai::{
    new_id, unix_now, ChatChunkChoice, ChatCompletionChunk, ChatDelta, FinishReason, Usage,
};
use crate::provider::ChunkStream;
use futures::stream::{BoxStream, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;

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

    /// Answers under the upstream's own response id (Anthropic's
    /// `msg_...`) instead of a fresh one; call before the first chunk.
    pub fn set_id(&mut self, id: String) {
        self.id = id;
    }

    /// Whether any chunk went out yet (the first one carries the role).
    pub fn role_sent(&self) -> bool {
        self.role_sent
    }

    /// The index the next [`Self::tool_call_start`] gives its call, for
    /// formats whose argument deltas name their content block.
    pub fn next_tool_call_index(&self) -> u32 {
        self.tool_calls
    }

    /// Whether any tool call was streamed (the finish reason is then
    /// `tool_calls` whatever the upstream said, in [`Self::finish`]).
    pub fn saw_tool_calls(&self) -> bool {
        self.tool_calls > 0
    }

    /// A chunk of the given choices as they are (no role added), for
    /// formats with several candidates per event (Gemini).
    pub fn choices(&self, choices: Vec<ChatChunkChoice>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(self.id.clone(), self.created, self.model.clone(), choices)
    }

    fn chunk(&mut self, mut delta: ChatDelta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        if !self.role_sent {
            delta.role = Some("assistant".to_owned());
            self.role_sent = true;
        }
        self.choices(vec![ChatChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        }])
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
                reasoning_content: None,
                ..ChatDelta::default()
            },
            None,
        )
    }

    /// More argument text for the current tool call.
    pub fn tool_call_arguments(&mut self, arguments: &str) -> ChatCompletionChunk {
        self.tool_call_arguments_at(self.tool_calls.saturating_sub(1), arguments)
    }

    /// More argument text for the tool call numbered `index`.
    pub fn tool_call_arguments_at(&mut self, index: u32, arguments: &str) -> ChatCompletionChunk {
        let call = json!([{"index": index, "function": {"arguments": arguments}}]);
        self.chunk(
            ChatDelta {
                tool_calls: Some(call),
                reasoning_content: None,
                ..ChatDelta::default()
            },
            None,
        )
    }

    /// The chunk carrying `reason`, as given.
    pub fn finish_chunk(&mut self, reason: FinishReason) -> ChatCompletionChunk {
        self.chunk(ChatDelta::default(), Some(reason))
    }

    /// The usage chunk, when the client asked for it
    /// (`stream_options.include_usage`).
    pub fn usage_chunk(&self, usage: Usage) -> Option<ChatCompletionChunk> {
        self.include_usage.then(|| {
            ChatCompletionChunk::usage_only(
                self.id.clone(),
                self.created,
                self.model.clone(),
                usage,
            )
        })
    }

    /// The last chunks: the finish reason (`tool_calls` when a tool call
    /// was streamed and the upstream said `stop`), then the usage chunk
    /// when asked for.
    pub fn finish(&mut self, reason: FinishReason, usage: Usage) -> Vec<ChatCompletionChunk> {
        let reason = if self.saw_tool_calls() && reason == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            reason
        };
        let mut out = vec![self.finish_chunk(reason)];
        out.extend(self.usage_chunk(usage));
        out
    }
}

/// One request's translation state from upstream events `E` to chunks.
pub trait StreamTranslator<E>: Send + 'static {
    /// The chunks one upstream event yields (often none); an `Err` (an
    /// error event inside the stream) ends the stream with it.
    fn on_event(&mut self, event: E) -> Result<Vec<ChatCompletionChunk>, ProviderError>;
    /// True once the terminal event was seen and nothing may follow it
    /// (Ollama's `done: true`, Cohere's `message-end`, Anthropic's
    /// `message_stop`): [`pump`] sends what is pending and ends without
    /// reading further or calling [`Self::finish`]. Formats whose terminal
    /// event is not the last (Bedrock's `metadata` follows `messageStop`)
    /// or that have none (Gemini) keep the default and decide in `finish`.
    fn is_done(&self) -> bool {
        false
    }
    /// Called once when the upstream body ends (and `is_done` is false):
    /// the closing chunks (the finish reason, the usage chunk), or an `Err`
    /// when the terminal event never came (the stream was cut).
    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError>;
}

struct Pump<E, T> {
    events: BoxStream<'static, Result<E, ProviderError>>,
    translator: T,
    pending: VecDeque<ChatCompletionChunk>,
    done: bool,
}

/// Turns `events` into the chunk stream of one response, via `translator`.
pub fn pump<E, T>(
    events: BoxStream<'static, Result<E, ProviderError>>,
    translator: T,
) -> ChunkStream<ChatCompletionChunk>
where
    E: Send + 'static,
    T: StreamTranslator<E>,
{
    let state = Pump {
        events,
        translator,
        pending: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(chunk) = s.pending.pop_front() {
                return Some((Ok(chunk), s));
            }
            if s.done || s.translator.is_done() {
                return None;
            }
            let produced = match s.events.next().await {
                Some(Ok(event)) => s.translator.on_event(event),
                Some(Err(e)) => Err(e),
                None => {
                    s.done = true;
                    s.translator.finish()
                }
            };
            match produced {
                Ok(chunks) => s.pending.extend(chunks),
                Err(e) => {
                    s.done = true;
                    s.pending.clear();
                    return Some((Err(e), s));
                }
            }
        }
    })
    .boxed()
}

/// The `502` for a stream that ended before its terminal event: "the
/// `stream` stream ended before `terminal`".
pub fn cut_stream(stream: &str, terminal: &str) -> ProviderError {
    ProviderError::Upstream {
        status: 502,
        message: format!("the {stream} stream ended before {terminal}"),
        retry_after: None,
    }
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
    use crate::openai::Usage;

    /// Emits one usage-only chunk per event; needs the event `0` to finish.
    struct Counter {
        saw_end: bool,
    }

    impl StreamTranslator<u32> for Counter {
        fn on_event(&mut self, event: u32) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
            if event == 0 {
                self.saw_end = true;
                return Ok(Vec::new());
            }
            Ok(vec![ChatCompletionChunk::usage_only(
                "id".into(),
                1,
                "m".into(),
                Usage::new(event, 0),
            )])
        }
        fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
            if self.saw_end {
                Ok(Vec::new())
            } else {
                Err(cut_stream("test", "its final event"))
            }
        }
    }

    fn run(items: Vec<Result<u32, ProviderError>>) -> Vec<Result<u32, u16>> {
        let events = futures::stream::iter(items).boxed();
        let out: Vec<_> = futures::executor::block_on(
            pump(events, Counter { saw_end: false }).collect::<Vec<_>>(),
        );
        out.into_iter()
            .map(|r| {
                r.map(|c| c.usage.unwrap().prompt_tokens)
                    .map_err(|e| e.status().as_u16())
            })
            .collect()
    }

    #[test]
    fn normal_end_cut_end_and_error_item() {
        assert_eq!(run(vec![Ok(1), Ok(2), Ok(0)]), vec![Ok(1), Ok(2)]);
        assert_eq!(run(vec![Ok(1), Ok(2)]), vec![Ok(1), Ok(2), Err(502)]);
        let boom = ProviderError::Upstream {
            status: 429,
            message: "slow down".into(),
            retry_after: None,
        };
        assert_eq!(run(vec![Ok(1), Err(boom), Ok(2)]), vec![Ok(1), Err(429)]);
    }

    /// Texts become content chunks; `end` finishes and is terminal.
    struct Words {
        builder: ChunkBuilder,
        done: bool,
    }

    impl StreamTranslator<&'static str> for Words {
        fn on_event(&mut self, ev: &str) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
            if ev == "end" {
                self.done = true;
                return Ok(self.builder.finish(FinishReason::Stop, Usage::new(1, 2)));
            }
            Ok(vec![self.builder.content(ev)])
        }
        fn is_done(&self) -> bool {
            self.done
        }
        fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
            Err(cut_stream("test", "end"))
        }
    }

    #[test]
    fn a_terminal_event_ends_the_stream_and_role_goes_once() {
        let events = futures::stream::iter(vec![Ok("a"), Ok("b"), Ok("end"), Ok("never")]).boxed();
        let words = Words {
            builder: ChunkBuilder::new("m", true),
            done: false,
        };
        let out: Vec<_> = futures::executor::block_on(pump(events, words).collect::<Vec<_>>())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
        assert_eq!(out[1].choices[0].delta.role, None);
        assert_eq!(out[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(out[3].usage.as_ref().unwrap().total_tokens, 3);
        assert!(out.iter().all(|c| c.model == "m" && c.id == out[0].id));
    }

    #[test]
    fn tool_calls_are_numbered_and_force_the_finish_reason() {
        let mut b = ChunkBuilder::new("m", false);
        let index = |c: &ChatCompletionChunk| {
            c.choices[0].delta.tool_calls.as_ref().unwrap()[0]["index"].clone()
        };
        assert_eq!(index(&b.tool_call_start("c1", "f", "")), 0);
        assert_eq!(index(&b.tool_call_arguments("{\"a\":1}")), 0);
        assert_eq!(index(&b.tool_call_start("c2", "g", "{}")), 1);
        assert_eq!(index(&b.tool_call_arguments_at(0, "x")), 0);
        let end = b.finish(FinishReason::Stop, Usage::default());
        assert_eq!(end.len(), 1);
        assert_eq!(
            end[0].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
    }
}
