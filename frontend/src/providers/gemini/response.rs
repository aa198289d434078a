//! Gemini `GenerateContentResponse` → OpenAI: the typed payload (shared
//! with the stream, whose events are the same shape), finish-reason and
//! usage mapping, and the whole-response translation.

use crate::error::ProviderError;
use crate::openai::{
    new_id, ChatChoice, ChatCompletionResponse, ChatResponseMessage, FinishReason,
    PromptTokensDetails, Usage,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// One `generateContent` answer, or one event of `streamGenerateContent`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    /// One per `candidateCount`; absent when the prompt was blocked.
    #[serde(default)]
    pub candidates: Vec<Candidate>,
    /// Token counts (cumulative in a stream).
    #[serde(default)]
    pub usage_metadata: Option<UsageMetadata>,
    /// Set when the prompt itself was blocked.
    #[serde(default)]
    pub prompt_feedback: Option<PromptFeedback>,
    /// An error reported inside a stream.
    #[serde(default)]
    pub error: Option<Value>,
}

/// One candidate answer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The generated parts.
    #[serde(default)]
    pub content: Option<Content>,
    /// `STOP`, `MAX_TOKENS`, `SAFETY`, ...; set on the candidate's last event.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Which candidate.
    #[serde(default)]
    pub index: Option<u32>,
}

/// A turn's parts.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Content {
    /// Text, function calls, thoughts.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// One part of a candidate's content.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Generated text.
    #[serde(default)]
    pub text: Option<String>,
    /// True for a thinking-model's thought summary (not answer text).
    #[serde(default)]
    pub thought: Option<bool>,
    /// A call of a declared function.
    #[serde(default)]
    pub function_call: Option<FunctionCall>,
}

/// `functionCall`: a call with its arguments as a JSON object.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments.
    #[serde(default)]
    pub args: Option<Value>,
    /// A call id, when Gemini gives one.
    #[serde(default)]
    pub id: Option<String>,
}

/// `usageMetadata`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_token_count: u32,
    /// Tokens of all candidates.
    #[serde(default)]
    pub candidates_token_count: u32,
    /// Thinking tokens (billed as output).
    #[serde(default)]
    pub thoughts_token_count: u32,
    /// Prompt tokens served from the context cache.
    #[serde(default)]
    pub cached_content_token_count: Option<u32>,
}

impl UsageMetadata {
    /// As OpenAI usage; thinking tokens count as completion tokens.
    pub fn to_usage(&self) -> Usage {
        let mut u = Usage::new(
            self.prompt_token_count,
            self.candidates_token_count
                .saturating_add(self.thoughts_token_count),
        );
        u.prompt_tokens_details = self
            .cached_content_token_count
            .map(|cached_tokens| PromptTokensDetails { cached_tokens });
        u
    }
}

/// `promptFeedback`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    /// `SAFETY`, `BLOCKLIST`, ...: why the prompt was refused.
    #[serde(default)]
    pub block_reason: Option<String>,
}

impl GenerateContentResponse {
    /// The error this payload carries: a blocked prompt (a content-policy
    /// 400, which content-policy fallbacks key on) or an error object
    /// inside a stream (its `code` and `message` kept).
    pub fn error(&self) -> Option<ProviderError> {
        if let Some(err) = &self.error {
            let status = err
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .filter(|c| (400..600).contains(c))
                .unwrap_or(500);
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("Gemini reported an error")
                .to_owned();
            return Some(ProviderError::Upstream {
                status,
                message,
                retry_after: None,
            });
        }
        if self.candidates.is_empty() {
            if let Some(reason) = self
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
            {
                return Some(ProviderError::ContentPolicy {
                    message: format!("Gemini blocked the prompt: {reason}"),
                });
            }
        }
        None
    }
}

/// The seconds of `RetryInfo.retryDelay` (`"7s"`, `"0.5s"`, rounded up)
/// in a Google error body's `error.details`, if any.
pub fn retry_delay(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let v = match v {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    v.pointer("/error/details")?
        .as_array()?
        .iter()
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))?
        .strip_suffix('s')?
        .parse::<f64>()
        .ok()
        .filter(|s| !s.is_nan())
        .map(|s| {
            s.clamp(0.0, crate::providers::http::MAX_RETRY_AFTER_SECS as f64)
                .ceil() as u64
        })
}

/// Gemini's `finishReason` as OpenAI's; `None` for unknown values.
pub fn finish_reason(reason: &str) -> Option<FinishReason> {
    match reason {
        "STOP" => Some(FinishReason::Stop),
        "MAX_TOKENS" => Some(FinishReason::Length),
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            Some(FinishReason::ContentFilter)
        }
        "FUNCTION_CALL" => Some(FinishReason::ToolCalls),
        _ => None,
    }
}

/// The OpenAI finish reason of a candidate: a function call turns a normal
/// stop into `tool_calls` (Gemini says `STOP` there).
pub fn candidate_finish(reason: Option<&str>, has_tool_calls: bool) -> FinishReason {
    match reason.and_then(finish_reason) {
        Some(FinishReason::ContentFilter) => FinishReason::ContentFilter,
        Some(FinishReason::Length) => FinishReason::Length,
        _ if has_tool_calls => FinishReason::ToolCalls,
        Some(r) if r != FinishReason::ToolCalls => r,
        _ => FinishReason::Stop,
    }
}

/// An OpenAI `tool_calls` entry for a Gemini function call, with
/// `index` for stream deltas.
pub fn tool_call_json(call: &FunctionCall, index: Option<u32>) -> Value {
    let id = call.id.clone().unwrap_or_else(crate::openai::new_call_id);
    let arguments = call
        .args
        .as_ref()
        .map_or_else(|| "{}".to_owned(), Value::to_string);
    let mut v = json!({
        "id": id, "type": "function",
        "function": {"name": call.name, "arguments": arguments}
    });
    if let Some(i) = index {
        v["index"] = json!(i);
    }
    v
}

/// The whole OpenAI response, answering as `model`.
pub fn chat_response(
    resp: GenerateContentResponse,
    model: &str,
) -> Result<ChatCompletionResponse, ProviderError> {
    if let Some(e) = resp.error() {
        return Err(e);
    }
    let choices = resp
        .candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let parts = c
                .content
                .as_ref()
                .map(|c| c.parts.as_slice())
                .unwrap_or(&[]);
            let text: String = parts
                .iter()
                .filter(|p| p.thought != Some(true))
                .filter_map(|p| p.text.as_deref())
                .collect();
            let calls: Vec<Value> = parts
                .iter()
                .filter_map(|p| p.function_call.as_ref())
                .map(|f| tool_call_json(f, None))
                .collect();
            let finish = candidate_finish(c.finish_reason.as_deref(), !calls.is_empty());
            ChatChoice {
                index: c.index.unwrap_or(i as u32),
                message: ChatResponseMessage {
                    role: "assistant".to_owned(),
                    content: (!text.is_empty() || calls.is_empty()).then_some(text),
                    tool_calls: (!calls.is_empty()).then_some(Value::Array(calls)),
                    reasoning_content: None,
                },
                logprobs: None,
                finish_reason: Some(finish),
            }
        })
        .collect();
    let usage = resp
        .usage_metadata
        .as_ref()
        .map(UsageMetadata::to_usage)
        .unwrap_or_default();
    Ok(ChatCompletionResponse::new(
        new_id("chatcmpl"),
        model.to_owned(),
        choices,
        usage,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(v: Value) -> GenerateContentResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn text_answer_with_usage() {
        let r = chat_response(
            parse(json!({
                "candidates": [{"content": {"role": "model", "parts": [
                    {"text": "thinking...", "thought": true}, {"text": "Hello"}, {"text": " there"}]},
                    "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2,
                                  "thoughtsTokenCount": 3, "totalTokenCount": 10,
                                  "cachedContentTokenCount": 1}
            })),
            "my-gemini",
        )
        .unwrap();
        assert_eq!(r.model, "my-gemini");
        assert_eq!(r.choices[0].message.content.as_deref(), Some("Hello there"));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(r.usage.prompt_tokens, 5);
        assert_eq!(r.usage.completion_tokens, 5);
        assert_eq!(r.usage.total_tokens, 10);
        assert_eq!(r.usage.prompt_tokens_details.unwrap().cached_tokens, 1);
    }

    #[test]
    fn function_call_is_tool_calls() {
        let r = chat_response(
            parse(
                json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
                "finishReason": "STOP"}]}),
            ),
            "m",
        )
        .unwrap();
        let m = &r.choices[0].message;
        assert_eq!(m.content, None);
        let call = &m.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call["type"], "function");
        assert_eq!(call["function"]["name"], "get_weather");
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(
            candidate_finish(Some("MAX_TOKENS"), false),
            FinishReason::Length
        );
        for r in ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT"] {
            assert_eq!(
                candidate_finish(Some(r), false),
                FinishReason::ContentFilter
            );
        }
        assert_eq!(candidate_finish(Some("OTHER"), false), FinishReason::Stop);
        assert_eq!(
            candidate_finish(Some("FUNCTION_CALL"), true),
            FinishReason::ToolCalls
        );
        assert_eq!(candidate_finish(None, false), FinishReason::Stop);
    }

    #[test]
    fn blocked_prompt_is_content_policy() {
        let err = chat_response(
            parse(json!({"promptFeedback": {"blockReason": "SAFETY"},
                         "usageMetadata": {"promptTokenCount": 4}})),
            "m",
        )
        .unwrap_err();
        assert!(matches!(err, ProviderError::ContentPolicy { .. }));
        assert_eq!(err.status(), 400);
    }

    #[test]
    fn retry_delay_from_retry_info() {
        let body = json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure"},
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "6.2s"}]}});
        assert_eq!(retry_delay(body.to_string().as_bytes()), Some(7));
        assert_eq!(retry_delay(b"{\"error\": {\"code\": 429}}"), None);
        assert_eq!(retry_delay(b"not json"), None);
        let huge = json!({"error": {"details": [{"retryDelay": "1e300s"}]}});
        assert_eq!(
            retry_delay(huge.to_string().as_bytes()),
            Some(crate::providers::http::MAX_RETRY_AFTER_SECS)
        );
    }

    #[test]
    fn error_object_keeps_code_and_message() {
        let err = parse(
            json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}),
        )
        .error()
        .unwrap();
        assert_eq!(
            err,
            ProviderError::Upstream {
                status: 429,
                message: "quota".into(),
                retry_after: None
            }
        );
    }
}
