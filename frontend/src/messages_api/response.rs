//! Ingress: an OpenAI chat response → an Anthropic message (text block,
//! `tool_use` blocks, `stop_reason`, usage).

use super::types::{AnthropicUsage, ContentBlock, MessagesResponse, Role, StopReason};
use crate::error::ProviderError;
use crate::openai::{ChatCompletionResponse, FinishReason, Usage};
use serde_json::{Map, Value};

/// stop → end_turn, length → max_tokens, tool_calls → tool_use,
/// content_filter → refusal; abort (which Anthropic's API has no name
/// for) → end_turn.
pub fn stop_reason(reason: FinishReason) -> StopReason {
    match reason {
        FinishReason::Stop | FinishReason::Abort => StopReason::EndTurn,
        FinishReason::Length => StopReason::MaxTokens,
        FinishReason::ToolCalls => StopReason::ToolUse,
        FinishReason::ContentFilter => StopReason::Refusal,
    }
}

/// Anthropic usage from OpenAI's; cached prompt tokens are reported as
/// cache reads, the rest as `input_tokens`.
pub fn usage(u: &Usage) -> AnthropicUsage {
    let cached = u.prompt_tokens_details.as_ref().map(|d| d.cached_tokens);
    AnthropicUsage {
        input_tokens: u.prompt_tokens.saturating_sub(cached.unwrap_or(0)),
        output_tokens: u.completion_tokens,
        cache_creation_input_tokens: None,
        cache_read_input_tokens: cached,
    }
}

/// The `input` object of a tool call's JSON `arguments` (`{}` when empty).
/// Arguments that are not a JSON object are the model's (or provider's)
/// fault: a 502, since Anthropic clients expect an object.
pub fn tool_input(arguments: &str) -> Result<Value, ProviderError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ProviderError::Upstream {
            status: 502,
            message: format!("the model's tool call arguments are not a JSON object: {arguments}"),
            retry_after: None,
        }),
    }
}

/// Translates the first choice of `resp` (Anthropic has no `n`).
pub fn from_openai(resp: ChatCompletionResponse) -> Result<MessagesResponse, ProviderError> {
    let choice = resp.choices.into_iter().next();
    let mut content = Vec::new();
    let mut reason = None;
    if let Some(choice) = choice {
        reason = choice.finish_reason.map(stop_reason);
        if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
            content.push(ContentBlock::Text { text });
        }
        if let Some(Value::Array(calls)) = choice.message.tool_calls {
            for call in calls {
                let s = |p: &str| call.pointer(p).and_then(Value::as_str).unwrap_or("");
                content.push(ContentBlock::ToolUse {
                    id: s("/id").to_owned(),
                    name: s("/function/name").to_owned(),
                    input: tool_input(s("/function/arguments"))?,
                });
            }
        }
    }
    Ok(MessagesResponse {
        id: message_id(&resp.id),
        kind: "message".to_owned(),
        role: Role::Assistant,
        content,
        model: resp.model,
        stop_reason: Some(reason.unwrap_or(StopReason::EndTurn)),
        stop_sequence: None,
        usage: usage(&resp.usage),
    })
}

/// Anthropic ids start with `msg_`; OpenAI's `chatcmpl-x` becomes `msg_x`.
pub fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") {
        return openai_id.to_owned();
    }
    let rest = openai_id
        .strip_prefix("chatcmpl-")
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    format!("msg_{rest}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn openai_answer_becomes_anthropic_message() {
        let resp: ChatCompletionResponse = serde_json::from_value(json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": "sure",
                    "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "f", "arguments": "{\"x\":1}"}}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13,
                      "prompt_tokens_details": {"cached_tokens": 4}}
        }))
        .unwrap();
        let out = serde_json::to_value(from_openai(resp).unwrap()).unwrap();
        assert_eq!(
            out,
            json!({"id": "msg_abc", "type": "message", "role": "assistant", "model": "m",
                   "content": [{"type": "text", "text": "sure"},
                               {"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}}],
                   "stop_reason": "tool_use", "stop_sequence": null,
                   "usage": {"input_tokens": 6, "output_tokens": 3, "cache_read_input_tokens": 4}})
        );
    }

    #[test]
    fn finish_reasons_map_and_bad_arguments_fail() {
        assert_eq!(stop_reason(FinishReason::Stop), StopReason::EndTurn);
        assert_eq!(stop_reason(FinishReason::Length), StopReason::MaxTokens);
        assert_eq!(stop_reason(FinishReason::ToolCalls), StopReason::ToolUse);
        assert_eq!(
            stop_reason(FinishReason::ContentFilter),
            StopReason::Refusal
        );
        assert_eq!(tool_input("").unwrap(), json!({}));
        assert!(tool_input("[1]").is_err());
        assert!(tool_input("{oops").is_err());
        assert!(message_id("x").starts_with("msg_"));
    }
}
