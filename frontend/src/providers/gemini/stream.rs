//! `streamGenerateContent?alt=sse` → OpenAI chunks. Each SSE event is a
//! whole `GenerateContentResponse` carrying the new parts; the last event
//! of a candidate carries `finishReason` (with its last text) and
//! `usageMetadata` is cumulative. Gemini has no end-of-stream event, so a
//! stream is complete when every candidate that spoke has a finish
//! reason; one that ends without is cut (a 502 item).

use super::response::{candidate_finish, tool_call_json, GenerateContentResponse};
use crate::error::ProviderError;
use crate::openai::{ChatChunkChoice, ChatCompletionChunk, ChatDelta, Usage};
use crate::providers::http::{malformed, SseEvent};
use crate::providers::stream_pump::{cut_stream, ChunkBuilder, StreamTranslator};
use serde_json::Value;

/// Most candidates a stream may carry: the most choices (`n`) a request
/// can ask for; Gemini itself allows 8.
const MAX_CANDIDATES: usize = 128;

#[derive(Debug, Default)]
struct CandidateState {
    role_sent: bool,
    tool_calls: u32,
    finish: Option<Option<String>>,
}

/// One streamed response's translation state.
#[derive(Debug)]
pub struct GeminiStream {
    builder: ChunkBuilder,
    candidates: Vec<CandidateState>,
    usage: Option<Usage>,
}

impl GeminiStream {
    /// A translator building its chunks with `builder` (each candidate
    /// keeps its own role and tool-call numbering).
    pub fn new(builder: ChunkBuilder) -> Self {
        Self {
            builder,
            candidates: Vec::new(),
            usage: None,
        }
    }

    /// The chunks of one parsed event.
    pub fn on_response(
        &mut self,
        resp: GenerateContentResponse,
    ) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        if let Some(e) = resp.error() {
            return Err(e);
        }
        if let Some(u) = &resp.usage_metadata {
            self.usage = Some(u.to_usage());
        }
        let mut choices = Vec::new();
        for (i, c) in resp.candidates.into_iter().enumerate() {
            let index = c.index.unwrap_or(i as u32);
            let slot = index as usize;
            if slot >= MAX_CANDIDATES {
                // A candidate index is a position in our table: one from an
                // upstream that answers more than we could have asked for
                // would make it allocate without bound.
                return Err(malformed(
                    format!("candidate index {index} is not below {MAX_CANDIDATES}"),
                    b"",
                ));
            }
            if self.candidates.len() <= slot {
                self.candidates
                    .resize_with(slot + 1, CandidateState::default);
            }
            let state = &mut self.candidates[slot];
            let parts = c.content.map(|c| c.parts).unwrap_or_default();
            let text: String = parts
                .iter()
                .filter(|p| p.thought != Some(true))
                .filter_map(|p| p.text.as_deref())
                .collect();
            let calls: Vec<Value> = parts
                .iter()
                .filter_map(|p| p.function_call.as_ref())
                .map(|f| {
                    let v = tool_call_json(f, Some(state.tool_calls));
                    state.tool_calls += 1;
                    v
                })
                .collect();
            if c.finish_reason.is_some() {
                state.finish = Some(c.finish_reason);
            }
            let first = !state.role_sent;
            state.role_sent = true;
            if first || !text.is_empty() || !calls.is_empty() {
                choices.push(ChatChunkChoice {
                    index,
                    delta: ChatDelta {
                        role: first.then(|| "assistant".to_owned()),
                        content: (!text.is_empty() || first).then_some(text),
                        tool_calls: (!calls.is_empty()).then_some(Value::Array(calls)),
                        reasoning_content: None,
                    },
                    logprobs: None,
                    finish_reason: None,
                });
            }
        }
        Ok(if choices.is_empty() {
            Vec::new()
        } else {
            vec![self.builder.choices(choices)]
        })
    }
}

impl StreamTranslator<SseEvent> for GeminiStream {
    fn on_event(&mut self, event: SseEvent) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        if event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let resp: GenerateContentResponse = serde_json::from_str(&event.data)
            .map_err(|e| malformed(e.to_string(), event.data.as_bytes()))?;
        self.on_response(resp)
    }

    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
        if self.candidates.is_empty() || self.candidates.iter().any(|c| c.finish.is_none()) {
            return Err(cut_stream("Gemini", "its final event"));
        }
        let choices = self
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| ChatChunkChoice {
                index: i as u32,
                delta: ChatDelta::default(),
                logprobs: None,
                finish_reason: Some(candidate_finish(
                    c.finish.as_ref().and_then(|f| f.as_deref()),
                    c.tool_calls > 0,
                )),
            })
            .collect();
        let mut out = vec![self.builder.choices(choices)];
        out.extend(
            self.builder
                .usage_chunk(self.usage.clone().unwrap_or_default()),
        );
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::FinishReason;
    use serde_json::json;

    fn ev(v: Value) -> SseEvent {
        SseEvent {
            event: String::new(),
            data: v.to_string(),
        }
    }

    #[test]
    fn text_stream_with_usage() {
        let mut s = GeminiStream::new(ChunkBuilder::new("g", true));
        let mut out = Vec::new();
        for e in [
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "Hel"}]}, "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3}}),
            json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "lo"}]},
                   "finishReason": "STOP", "index": 0}],
                   "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}),
        ] {
            out.extend(s.on_event(ev(e)).unwrap());
        }
        out.extend(s.finish().unwrap());
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].choices[0].delta.role.as_deref(), Some("assistant"));
        assert_eq!(out[0].choices[0].delta.content.as_deref(), Some("Hel"));
        assert_eq!(out[1].choices[0].delta.content.as_deref(), Some("lo"));
        assert_eq!(out[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert!(out[3].choices.is_empty());
        assert_eq!(out[3].usage, Some(Usage::new(3, 2)));
    }

    #[test]
    fn tool_call_deltas_carry_index_and_finish_tool_calls() {
        let mut s = GeminiStream::new(ChunkBuilder::new("g", false));
        let out = s
            .on_event(ev(json!({"candidates": [{"content": {"parts": [
                {"functionCall": {"name": "a", "args": {"x": 1}}},
                {"functionCall": {"name": "b", "args": {}}}]}, "finishReason": "STOP"}]})))
            .unwrap();
        let calls = out[0].choices[0].delta.tool_calls.as_ref().unwrap();
        assert_eq!(calls[0]["index"], 0);
        assert_eq!(calls[1]["index"], 1);
        assert_eq!(calls[1]["function"]["name"], "b");
        let end = s.finish().unwrap();
        assert_eq!(end.len(), 1);
        assert_eq!(
            end[0].choices[0].finish_reason,
            Some(FinishReason::ToolCalls)
        );
    }

    #[test]
    fn cut_stream_and_error_event_are_errors() {
        let mut s = GeminiStream::new(ChunkBuilder::new("g", false));
        s.on_event(ev(
            json!({"candidates": [{"content": {"parts": [{"text": "a"}]}}]}),
        ))
        .unwrap();
        assert_eq!(s.finish().unwrap_err().status(), 502);
        let mut s = GeminiStream::new(ChunkBuilder::new("g", false));
        let err = s
            .on_event(ev(json!({"error": {"code": 503, "message": "overloaded"}})))
            .unwrap_err();
        assert_eq!(err.status(), 503);
        assert_eq!(err.to_string(), "overloaded");
        let err = s
            .on_event(SseEvent {
                event: String::new(),
                data: "{not json".into(),
            })
            .unwrap_err();
        assert_eq!(err.status(), 502);
    }

    #[test]
    fn a_huge_candidate_index_is_an_error_not_an_allocation() {
        let mut s = GeminiStream::new(ChunkBuilder::new("g", false));
        let err = s
            .on_event(ev(
                json!({"candidates": [{"content": {"parts": [{"text": "a"}]},
                                                "index": 4_000_000_000u64}]}),
            ))
            .unwrap_err();
        assert_eq!(err.status(), 502);
        assert!(err.to_string().contains("4000000000"), "{err}");
        // The largest allowed index still works.
        let mut s = GeminiStream::new(ChunkBuilder::new("g", false));
        s.on_event(ev(
            json!({"candidates": [{"content": {"parts": [{"text": "a"}]},
                                             "index": MAX_CANDIDATES - 1}]}),
        ))
        .unwrap();
    }
}
