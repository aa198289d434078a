//! Ingress: an Anthropic Messages request → the OpenAI chat request every
//! provider takes, so an Anthropic SDK client can use any model.
//!
//! `system` becomes a system message; text and image blocks become content
//! parts (base64 images as `data:` URLs); assistant `tool_use` blocks
//! become `tool_calls`; `tool_result` blocks become `role: tool` messages
//! (before any other content of their user turn, as OpenAI wants them right
//! after the assistant turn); `tool_choice` any → required, tool → a named
//! function; `stop_sequences` → `stop`; `metadata.user_id` → `user`.
//! Thinking blocks are dropped (OpenAI has no field for them).

use super::types::{
    join_text, Content, ContentBlock, ImageSource, MessagesRequest, Role, ToolChoice,
};
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionRequest, ChatMessage, ContentPart, MessageContent, StopSequences, StreamOptions,
};
use serde_json::{json, Map, Value};

impl MessagesRequest {
    /// Checks what Anthropic's API checks before translating: `max_tokens`
    /// present and positive, at least one message. Errors name the param.
    pub fn validate(&self) -> Result<(), ProviderError> {
        match self.max_tokens {
            None => {
                return Err(ProviderError::invalid(
                    "max_tokens",
                    "max_tokens: Field required",
                ))
            }
            Some(m) if m < 1 => {
                return Err(ProviderError::invalid(
                    "max_tokens",
                    format!("max_tokens: must be at least 1, got {m}"),
                ))
            }
            Some(_) => {}
        }
        if self.messages.is_empty() {
            return Err(ProviderError::invalid(
                "messages",
                "messages: at least one message is required",
            ));
        }
        Ok(())
    }

    /// Whether the client asked for server-sent events.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }

    /// The OpenAI chat request for this one. A stream always asks for the
    /// usage chunk, which the `message_delta` event needs.
    pub fn to_openai(&self) -> Result<ChatCompletionRequest, ProviderError> {
        let mut messages = Vec::new();
        if let Some(system) = &self.system {
            messages.push(ChatMessage::text("system", system.text()));
        }
        for (i, m) in self.messages.iter().enumerate() {
            match m.role {
                Role::User => user_messages(m.content.clone(), i, &mut messages)?,
                Role::Assistant => messages.push(assistant_message(m.content.clone())),
            }
        }
        let (tool_choice, parallel) = match &self.tool_choice {
            None => (None, None),
            Some(c) => tool_choice(c),
        };
        let mut extra = Map::new();
        if let Some(p) = parallel {
            extra.insert("parallel_tool_calls".to_owned(), Value::Bool(p));
        }
        Ok(ChatCompletionRequest {
            model: self.model.clone(),
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stream: self.stream,
            stream_options: self.is_stream().then_some(StreamOptions {
                include_usage: Some(true),
                continuous_usage_stats: None,
            }),
            stop: self
                .stop_sequences
                .clone()
                .filter(|s| !s.is_empty())
                .map(StopSequences::Many),
            user: self.metadata.as_ref().and_then(|m| m.user_id.clone()),
            tools: self.tools.as_ref().map(|tools| {
                Value::Array(
                    tools
                        .iter()
                        .map(|t| {
                            let mut f = json!({"name": t.name, "parameters": t.input_schema});
                            if let Some(d) = &t.description {
                                f["description"] = json!(d);
                            }
                            json!({"type": "function", "function": f})
                        })
                        .collect(),
                )
            }),
            tool_choice,
            extra,
            ..ChatCompletionRequest::default()
        })
    }
}

fn user_messages(
    content: Content,
    i: usize,
    out: &mut Vec<ChatMessage>,
) -> Result<(), ProviderError> {
    let mut parts = Vec::new();
    for block in content.into_blocks() {
        match block {
            ContentBlock::Text { text } => parts.push(text_part(text)),
            ContentBlock::Image { source } => parts.push(image_part(source)),
            ContentBlock::ToolResult {
                tool_use_id,
                content,
                ..
            } => {
                let text = match content {
                    None => String::new(),
                    Some(Content::Text(t)) => t,
                    Some(Content::Blocks(b)) => join_text(&b),
                };
                out.push(ChatMessage {
                    role: "tool".to_owned(),
                    content: Some(MessageContent::Text(text)),
                    tool_call_id: Some(Value::String(tool_use_id)),
                    ..ChatMessage::default()
                });
            }
            ContentBlock::Thinking { .. } | ContentBlock::RedactedThinking { .. } => {}
            ContentBlock::ToolUse { .. } | ContentBlock::Other => {
                return Err(ProviderError::invalid(
                    "messages",
                    format!(
                        "messages[{i}]: this content block type is not supported in a user turn"
                    ),
                ))
            }
        }
    }
    if !parts.is_empty() {
        let content = match parts.as_slice() {
            [ContentPart {
                kind,
                text: Some(t),
                ..
            }] if kind == "text" => MessageContent::Text(t.clone()),
            _ => MessageContent::Parts(parts),
        };
        out.push(ChatMessage {
            role: "user".to_owned(),
            content: Some(content),
            ..ChatMessage::default()
        });
    }
    Ok(())
}

fn text_part(text: String) -> ContentPart {
    ContentPart {
        kind: "text".to_owned(),
        text: Some(text),
        extra: Map::new(),
    }
}

fn image_part(source: ImageSource) -> ContentPart {
    let url = match source {
        ImageSource::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        ImageSource::Url { url } => url,
    };
    let mut extra = Map::new();
    extra.insert("image_url".to_owned(), json!({"url": url}));
    ContentPart {
        kind: "image_url".to_owned(),
        text: None,
        extra,
    }
}

fn assistant_message(content: Content) -> ChatMessage {
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in content.into_blocks() {
        match block {
            ContentBlock::Text { text: t } => text.push_str(&t),
            ContentBlock::ToolUse { id, name, input } => calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()}})),
            _ => {}
        }
    }
    ChatMessage {
        role: "assistant".to_owned(),
        content: (!text.is_empty() || calls.is_empty()).then_some(MessageContent::Text(text)),
        tool_calls: (!calls.is_empty()).then_some(Value::Array(calls)),
        ..ChatMessage::default()
    }
}

/// OpenAI's `tool_choice` and `parallel_tool_calls` for Anthropic's.
fn tool_choice(c: &ToolChoice) -> (Option<Value>, Option<bool>) {
    let (choice, no_parallel) = match c {
        ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (json!("auto"), *disable_parallel_tool_use),
        ToolChoice::Any {
            disable_parallel_tool_use,
        } => (json!("required"), *disable_parallel_tool_use),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            json!({"type": "function", "function": {"name": name}}),
            *disable_parallel_tool_use,
        ),
        ToolChoice::None => (json!("none"), None),
    };
    (Some(choice), no_parallel.filter(|d| *d).map(|_| false))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn req(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn full_request_translates() {
        let r = req(json!({
            "model": "any-model", "max_tokens": 64, "stream": true,
            "system": "be brief", "stop_sequences": ["END"], "temperature": 0.5,
            "top_k": 5, "metadata": {"user_id": "u"},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what is in the image?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "checking"},
                    {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": [{"type": "text", "text": "a cat"}]},
                    {"type": "text", "text": "so?"}]}
            ],
            "tools": [{"name": "look", "description": "looks", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true}
        }));
        r.validate().unwrap();
        let out = serde_json::to_value(r.to_openai().unwrap()).unwrap();
        assert_eq!(
            out,
            json!({
                "model": "any-model", "max_tokens": 64, "stream": true,
                "stream_options": {"include_usage": true},
                "stop": ["END"], "temperature": 0.5, "top_k": 5, "user": "u",
                "parallel_tool_calls": false,
                "tool_choice": "required",
                "tools": [{"type": "function", "function": {"name": "look",
                    "description": "looks", "parameters": {"type": "object"}}}],
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [
                        {"type": "text", "text": "what is in the image?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                    {"role": "assistant", "content": "checking", "tool_calls": [
                        {"id": "toolu_1", "type": "function",
                         "function": {"name": "look", "arguments": "{\"q\":1}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
                    {"role": "user", "content": "so?"}
                ]
            })
        );
    }

    #[test]
    fn tool_choices_map() {
        for (choice, expected) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let r = req(json!({"model": "m", "max_tokens": 1, "tool_choice": choice,
                               "messages": [{"role": "user", "content": "x"}]}));
            let out = r.to_openai().unwrap();
            assert_eq!(out.tool_choice, Some(expected));
            assert!(out.extra.is_empty());
            assert_eq!(out.stream_options, None);
        }
    }

    #[test]
    fn validation_names_params() {
        let param = |v: Value| match req(v).validate() {
            Err(ProviderError::InvalidRequest { param, .. }) => param.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            param(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})),
            "max_tokens"
        );
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 0,
                         "messages": [{"role": "user", "content": "x"}]})),
            "max_tokens"
        );
        assert_eq!(
            param(json!({"model": "m", "max_tokens": 5, "messages": []})),
            "messages"
        );
    }
}
