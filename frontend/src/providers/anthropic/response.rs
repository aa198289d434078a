//! Anthropic Messages response → OpenAI chat response: text blocks joined
//! into `content`, `tool_use` blocks into `tool_calls`, `stop_reason` into
//! `finish_reason`, and usage with cache tokens counted as prompt tokens.

use crate::messages_api::types::{AnthropicUsage, ContentBlock, MessagesResponse, StopReason};
use crate::openai::{
    new_id, ChatChoice, ChatCompletionResponse, ChatResponseMessage, FinishReason,
    PromptTokensDetails, Usage,
};
use serde_json::{json, Value};

/// `end_turn`/`stop_sequence` → stop, `max_tokens` (and a full context
/// window) → length, `tool_use` → tool_calls, `refusal` → content_filter.
/// `pause_turn` and unknown reasons end the turn normally (stop).
pub fn finish_reason(reason: &StopReason) -> FinishReason {
    match reason {
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::Refusal => FinishReason::ContentFilter,
        StopReason::EndTurn
        | StopReason::StopSequence
        | StopReason::PauseTurn
        | StopReason::Other => FinishReason::Stop,
    }
}

/// OpenAI usage from Anthropic's: prompt tokens include cache reads and
/// writes (cache reads also reported as `cached_tokens`).
pub fn usage(u: &AnthropicUsage) -> Usage {
    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
    let prompt = u
        .input_tokens
        .saturating_add(u.cache_creation_input_tokens.unwrap_or(0))
        .saturating_add(cache_read);
    let mut usage = Usage::new(prompt, u.output_tokens);
    if u.cache_read_input_tokens.is_some() {
        usage.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: cache_read,
        });
    }
    usage
}

/// The OpenAI `tool_calls` entry for a `tool_use` block.
pub fn tool_call(id: &str, name: &str, input: &Value) -> Value {
    json!({"id": id, "type": "function",
           "function": {"name": name, "arguments": input.to_string()}})
}

/// Translates a whole response, answering as `model` (the client's name).
pub fn to_openai(resp: MessagesResponse, model: &str) -> ChatCompletionResponse {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in &resp.content {
        match block {
            ContentBlock::Text { text: t } => text.push_str(t),
            ContentBlock::ToolUse { id, name, input } => calls.push(tool_call(id, name, input)),
            _ => {}
        }
    }
    let message = ChatResponseMessage {
        role: "assistant".to_owned(),
        content: (!text.is_empty() || calls.is_empty()).then_some(text),
        tool_calls: (!calls.is_empty()).then_some(Value::Array(calls)),
        reasoning_content: None,
    };
    let id = if resp.id.is_empty() {
        new_id("chatcmpl")
    } else {
        resp.id.clone()
    };
    ChatCompletionResponse::new(
        id,
        model.to_owned(),
        vec![ChatChoice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: Some(
                resp.stop_reason
                    .as_ref()
                    .map_or(FinishReason::Stop, finish_reason),
            ),
        }],
        usage(&resp.usage),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(v: Value) -> MessagesResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn text_and_tool_use_translate() {
        // The documented shape of a tool-using answer.
        let r = parse(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "s"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                 "input": {"location": "Paris"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5,
                      "cache_creation_input_tokens": 2, "cache_read_input_tokens": 3}
        }));
        let out = serde_json::to_value(to_openai(r, "my-claude")).unwrap();
        assert_eq!(out["model"], "my-claude");
        assert_eq!(out["id"], "msg_01");
        assert_eq!(
            out["choices"][0],
            json!({"index": 0, "logprobs": null, "finish_reason": "tool_calls",
                   "message": {"role": "assistant", "content": "Let me check.",
                     "tool_calls": [{"id": "toolu_1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}}]}})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 15, "completion_tokens": 5, "total_tokens": 20,
                   "prompt_tokens_details": {"cached_tokens": 3}})
        );
    }

    #[test]
    fn tool_only_answer_has_null_content() {
        let r = parse(
            json!({"id": "m", "type": "message", "role": "assistant", "model": "c",
            "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 1}}),
        );
        let out = to_openai(r, "x");
        assert_eq!(out.choices[0].message.content, None);
    }

    #[test]
    fn stop_reasons_map() {
        for (reason, expected) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Stop),
            ("something_new", FinishReason::Stop),
        ] {
            let r: StopReason = serde_json::from_value(json!(reason)).unwrap();
            assert_eq!(finish_reason(&r), expected, "{reason}");
        }
    }
}
