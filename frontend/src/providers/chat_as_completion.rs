//! The legacy `/v1/completions` API served through a provider's chat API,
//! for providers that have no text-completion endpoint (Gemini, Bedrock
//! Converse): the prompt is sent as one user message, as LiteLLM does, and
//! the chat answer is read back as a text completion.
//!
//! Only one text prompt per request is taken (a chat call answers one
//! conversation); token-id prompts, `echo`, `logprobs` and `best_of` > 1
//! have no chat equivalent and are a 400 naming them.

use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    CompletionChoice, CompletionChunk, CompletionRequest, CompletionResponse, Prompt,
};
use crate::provider::ChunkStream;
use futures::stream::StreamExt;

/// The chat request that answers `req`. `max_tokens` is sent only when the
/// client set it (OpenAI's completions default of 16 would cut chat models
/// short, and LiteLLM does not apply it either).
pub fn chat_request(req: &CompletionRequest) -> Result<ChatCompletionRequest, ProviderError> {
    let prompt = match &req.prompt {
        Prompt::Text(p) => p.clone(),
        Prompt::Texts(ps) if ps.len() == 1 => ps[0].clone(),
        Prompt::Texts(_) => {
            return Err(ProviderError::invalid(
                "prompt",
                "this provider takes one prompt per request (it has a chat API only)",
            ))
        }
        Prompt::Tokens(_) | Prompt::TokenBatches(_) => {
            return Err(ProviderError::invalid(
                "prompt",
                "this provider takes text prompts only, not token ids",
            ))
        }
    };
    if req.echo == Some(true) {
        return Err(ProviderError::invalid(
            "echo",
            "echo is not supported by this provider",
        ));
    }
    if req.logprobs.is_some() {
        return Err(ProviderError::invalid(
            "logprobs",
            "logprobs are not supported by this provider",
        ));
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(ProviderError::invalid(
            "best_of",
            "best_of is not supported by this provider",
        ));
    }
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages: vec![ChatMessage::text("user", prompt)],
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stream: req.stream,
        stream_options: req.stream_options.clone(),
        stop: req.stop.clone(),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        user: req.user.clone(),
        logit_bias: req.logit_bias.clone(),
        top_k: req.top_k,
        ..ChatCompletionRequest::default()
    })
}

/// A chat answer read as a text completion (tool calls cannot occur: the
/// request carried no tools).
pub fn completion_response(resp: ChatCompletionResponse) -> CompletionResponse {
    let choices = resp
        .choices
        .into_iter()
        .map(|c| CompletionChoice {
            index: c.index,
            text: c.message.content.unwrap_or_default(),
            logprobs: None,
            finish_reason: c.finish_reason,
        })
        .collect();
    let mut out = CompletionResponse::new(
        resp.id.replacen("chatcmpl", "cmpl", 1),
        resp.model,
        choices,
        resp.usage,
    );
    out.created = resp.created;
    out
}

/// A chat chunk stream read as a completion chunk stream; role-only and
/// empty deltas are skipped unless they carry a finish reason.
pub fn completion_stream(chunks: ChunkStream<ChatCompletionChunk>) -> ChunkStream<CompletionChunk> {
    chunks
        .filter_map(|item| async move {
            match item {
                Err(e) => Some(Err(e)),
                Ok(chunk) => completion_chunk(chunk).map(Ok),
            }
        })
        .boxed()
}

fn completion_chunk(chunk: ChatCompletionChunk) -> Option<CompletionChunk> {
    let id = chunk.id.replacen("chatcmpl", "cmpl", 1);
    if let Some(usage) = chunk.usage {
        return Some(CompletionChunk::usage_only(
            id,
            chunk.created,
            chunk.model,
            usage,
        ));
    }
    let choices: Vec<CompletionChoice> = chunk
        .choices
        .into_iter()
        .filter(|c| c.delta.content.is_some() || c.finish_reason.is_some())
        .map(|c| CompletionChoice {
            index: c.index,
            text: c.delta.content.unwrap_or_default(),
            logprobs: None,
            finish_reason: c.finish_reason,
        })
        .collect();
    (!choices.is_empty()).then(|| CompletionChunk::new(id, chunk.created, chunk.model, choices))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::{ChatChunkChoice, ChatDelta, FinishReason, Usage};
    use serde_json::json;

    #[test]
    fn prompt_becomes_one_user_message() {
        let req: CompletionRequest = serde_json::from_value(json!({
            "model": "m", "prompt": "Say hi", "max_tokens": 5, "stop": ["\n"], "temperature": 0.2
        }))
        .unwrap();
        let chat = chat_request(&req).unwrap();
        assert_eq!(chat.messages, vec![ChatMessage::text("user", "Say hi")]);
        assert_eq!(chat.max_tokens, Some(5));
        assert_eq!(chat.temperature, Some(0.2));
        let bad: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": [1, 2]})).unwrap();
        assert_eq!(
            chat_request(&bad)
                .unwrap_err()
                .body()
                .error
                .param
                .as_deref(),
            Some("prompt")
        );
        let echo: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": "x", "echo": true})).unwrap();
        assert!(chat_request(&echo).is_err());
    }

    #[test]
    fn chunks_map_to_text_chunks() {
        let delta = |content: Option<&str>, role: Option<&str>, fr| {
            ChatCompletionChunk::new(
                "chatcmpl-1".into(),
                1,
                "m".into(),
                vec![ChatChunkChoice {
                    index: 0,
                    delta: ChatDelta {
                        role: role.map(str::to_owned),
                        content: content.map(str::to_owned),
                        tool_calls: None,
                    },
                    logprobs: None,
                    finish_reason: fr,
                }],
            )
        };
        let chunks = vec![
            Ok(delta(None, Some("assistant"), None)),
            Ok(delta(Some("Hel"), None, None)),
            Ok(delta(Some("lo"), None, None)),
            Ok(delta(None, None, Some(FinishReason::Stop))),
            Ok(ChatCompletionChunk::usage_only(
                "chatcmpl-1".into(),
                1,
                "m".into(),
                Usage::new(2, 3),
            )),
        ];
        let out: Vec<CompletionChunk> = futures::executor::block_on(
            completion_stream(futures::stream::iter(chunks).boxed())
                .map(Result::unwrap)
                .collect(),
        );
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].id, "cmpl-1");
        assert_eq!(out[0].choices[0].text, "Hel");
        assert_eq!(out[2].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(out[3].usage, Some(Usage::new(2, 3)));
    }
}
