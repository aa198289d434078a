//! Bedrock Converse answer → OpenAI: stop-reason and usage mapping (shared
//! with the stream) and the whole-response translation.

use crate::error::ProviderError;
use crate::openai::{
    new_id, ChatChoice, ChatCompletionResponse, ChatResponseMessage, FinishReason,
    PromptTokensDetails, Usage,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// A `converse` answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    /// The generated message.
    pub output: ConverseOutput,
    /// Why generation stopped.
    #[serde(default)]
    pub stop_reason: Option<String>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<TokenUsage>,
}

/// `output`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConverseOutput {
    /// The assistant message.
    pub message: ConverseMessage,
}

/// `output.message`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConverseMessage {
    /// Content blocks: `text`, `toolUse`, `reasoningContent`, ...
    #[serde(default)]
    pub content: Vec<Value>,
}

/// Converse `usage` (also the stream's `metadata.usage`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Prompt tokens.
    #[serde(default)]
    pub input_tokens: u32,
    /// Generated tokens.
    #[serde(default)]
    pub output_tokens: u32,
    /// Prompt tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: Option<u32>,
}

impl TokenUsage {
    /// As OpenAI usage.
    pub fn to_usage(&self) -> Usage {
        let mut u = Usage::new(self.input_tokens, self.output_tokens);
        u.prompt_tokens_details = self
            .cache_read_input_tokens
            .map(|cached_tokens| PromptTokensDetails { cached_tokens });
        u
    }
}

/// Converse's `stopReason` as OpenAI's finish reason.
pub fn finish_reason(stop_reason: Option<&str>) -> FinishReason {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("guardrail_intervened" | "content_filtered") => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// The whole OpenAI response, answering as `model`.
pub fn chat_response(
    resp: ConverseResponse,
    model: &str,
) -> Result<ChatCompletionResponse, ProviderError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in &resp.output.message.content {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            text.push_str(t);
        } else if let Some(tu) = block.get("toolUse") {
            let id = tu.get("toolUseId").and_then(Value::as_str).unwrap_or("");
            let name = tu.get("name").and_then(Value::as_str).unwrap_or("");
            let input = tu.get("input").cloned().unwrap_or_else(|| json!({}));
            calls.push(json!({"id": id, "type": "function",
                              "function": {"name": name, "arguments": input.to_string()}}));
        }
    }
    let message = ChatResponseMessage {
        role: "assistant".to_owned(),
        content: (!text.is_empty() || calls.is_empty()).then_some(text),
        tool_calls: (!calls.is_empty()).then_some(Value::Array(calls)),
        reasoning_content: None,
    };
    let choice = ChatChoice {
        index: 0,
        message,
        logprobs: None,
        finish_reason: Some(finish_reason(resp.stop_reason.as_deref())),
    };
    let usage = resp
        .usage
        .as_ref()
        .map(TokenUsage::to_usage)
        .unwrap_or_default();
    Ok(ChatCompletionResponse::new(
        new_id("chatcmpl"),
        model.to_owned(),
        vec![choice],
        usage,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn parse(v: Value) -> ChatCompletionResponse {
        chat_response(serde_json::from_value(v).unwrap(), "my-bedrock").unwrap()
    }

    #[test]
    fn text_answer_with_usage() {
        let r = parse(json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "hmm"}}},
                {"text": "Hello"}, {"text": " there"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9, "cacheReadInputTokens": 3},
            "metrics": {"latencyMs": 10}
        }));
        assert_eq!(r.model, "my-bedrock");
        assert_eq!(r.choices[0].message.content.as_deref(), Some("Hello there"));
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(
            (
                r.usage.prompt_tokens,
                r.usage.completion_tokens,
                r.usage.total_tokens
            ),
            (7, 2, 9)
        );
        assert_eq!(r.usage.prompt_tokens_details.unwrap().cached_tokens, 3);
    }

    #[test]
    fn tool_use_is_tool_calls() {
        let r = parse(json!({
            "output": {"message": {"role": "assistant", "content": [
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}
        }));
        let m = &r.choices[0].message;
        assert_eq!(m.content, None);
        assert_eq!(
            m.tool_calls.as_ref().unwrap()[0],
            json!({"id": "tooluse_1", "type": "function",
                   "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}})
        );
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn stop_reasons() {
        for (r, f) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("guardrail_intervened", FinishReason::ContentFilter),
            ("content_filtered", FinishReason::ContentFilter),
        ] {
            assert_eq!(finish_reason(Some(r)), f, "{r}");
        }
    }
}
