//! `/v1/completions` for providers that only have a chat endpoint
//! (Anthropic, Bedrock, Gemini, Cohere v2, Ollama's `/api/chat`): the
//! prompt is sent as one user message, as LiteLLM does, and the chat answer
//! (whole or streamed) is turned back into a text completion. This is what
//! [`super::Provider::completion`] does unless a provider overrides it.

use super::ChunkStream;
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatMessage,
    CompletionChoice, CompletionChunk, CompletionRequest, CompletionResponse, Prompt,
    StreamOptions,
};
use futures::stream::StreamExt;

/// The chat request carrying `req`'s prompt as one user message. Every
/// parameter with a chat counterpart is carried over (integer `logprobs`
/// as `logprobs: true`), so that the adapter's parameter check names the
/// ones its API lacks, or drops them under `drop_params`, as it does for
/// chat requests. Only one text prompt can be a message: token ids and
/// batches are a 400 naming `prompt`; so is `echo`, which a chat answer
/// cannot honour.
pub fn to_chat(req: &CompletionRequest) -> Result<ChatCompletionRequest, ProviderError> {
    let text =
        match &req.prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Texts(v) if v.len() == 1 => v[0].clone(),
            _ => return Err(ProviderError::invalid(
                "prompt",
                "this provider completes one text prompt per request (no batches, no token ids)",
            )),
        };
    if req.echo == Some(true) {
        return Err(ProviderError::invalid(
            "echo",
            "this provider cannot echo the prompt (it has only a chat endpoint)",
        ));
    }
    Ok(ChatCompletionRequest {
        model: req.model.clone(),
        messages: vec![ChatMessage::text("user", text)],
        max_tokens: Some(i64::from(req.max_new_tokens())),
        temperature: req.temperature,
        top_p: req.top_p,
        n: req.n,
        stream: req.stream,
        stream_options: req.stream_options.as_ref().map(|o| StreamOptions {
            include_usage: o.include_usage,
            continuous_usage_stats: None,
        }),
        stop: req.stop.clone(),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logprobs: req.logprobs.map(|_| true),
        user: req.user.clone(),
        logit_bias: req.logit_bias.clone(),
        top_k: req.top_k,
        min_p: req.min_p,
        repetition_penalty: req.repetition_penalty,
        min_tokens: req.min_tokens,
        ignore_eos: req.ignore_eos,
        stop_token_ids: req.stop_token_ids.clone(),
        ..ChatCompletionRequest::default()
    })
}

/// The text completion of a chat answer: each choice's message text.
pub fn from_chat(resp: ChatCompletionResponse) -> CompletionResponse {
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
    let mut out = CompletionResponse::new(resp.id, resp.model, choices, resp.usage);
    out.created = resp.created;
    out
}

/// The text-completion chunks of a chat stream: content deltas become
/// text, the finish reason and the usage chunk carry over, role-only and
/// tool-call deltas (nothing to say as text) are skipped.
pub fn stream_from_chat(chunks: ChunkStream<ChatCompletionChunk>) -> ChunkStream<CompletionChunk> {
    chunks
        .filter_map(|item| async move {
            match item {
                Err(e) => Some(Err(e)),
                Ok(chunk) => chunk_from_chat(chunk).map(Ok),
            }
        })
        .boxed()
}

fn chunk_from_chat(chunk: ChatCompletionChunk) -> Option<CompletionChunk> {
    if let Some(usage) = chunk.usage {
        if chunk.choices.is_empty() {
            return Some(CompletionChunk::usage_only(
                chunk.id,
                chunk.created,
                chunk.model,
                usage,
            ));
        }
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
    (!choices.is_empty())
        .then(|| CompletionChunk::new(chunk.id, chunk.created, chunk.model, choices))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::{ChatChunkChoice, ChatDelta, FinishReason, Usage};
    use serde_json::json;

    #[test]
    fn prompt_becomes_one_user_message() {
        let req: CompletionRequest = serde_json::from_value(
            json!({"model": "m", "prompt": "Say hi", "max_tokens": 5, "stop": ["\n"]}),
        )
        .unwrap();
        let chat = to_chat(&req).unwrap();
        assert_eq!(chat.messages.len(), 1);
        assert_eq!(chat.messages[0].role, "user");
        assert_eq!(chat.messages[0].text_content(), "Say hi");
        assert_eq!(chat.max_new_tokens(), Some(5));
        let batch: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": ["a", "b"]})).unwrap();
        assert_eq!(to_chat(&batch).unwrap_err().status(), 400);
        let ids: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": [1, 2, 3]})).unwrap();
        assert_eq!(to_chat(&ids).unwrap_err().status(), 400);
        let echo: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": "a", "echo": true})).unwrap();
        assert_eq!(to_chat(&echo).unwrap_err().status(), 400);
        // Parameters a chat API may lack travel on, for its check to name.
        let logprobs: CompletionRequest =
            serde_json::from_value(json!({"model": "m", "prompt": "a", "logprobs": 2})).unwrap();
        assert_eq!(to_chat(&logprobs).unwrap().logprobs, Some(true));
    }

    #[tokio::test]
    async fn chunks_become_text_chunks() {
        let delta = |content: Option<&str>, finish| ChatChunkChoice {
            index: 0,
            delta: ChatDelta {
                role: Some("assistant".into()),
                content: content.map(str::to_owned),
                tool_calls: None,
                reasoning_content: None,
            },
            logprobs: None,
            finish_reason: finish,
        };
        let chat = vec![
            Ok(ChatCompletionChunk::new(
                "i".into(),
                1,
                "m".into(),
                vec![delta(None, None)],
            )),
            Ok(ChatCompletionChunk::new(
                "i".into(),
                1,
                "m".into(),
                vec![delta(Some("hi"), None)],
            )),
            Ok(ChatCompletionChunk::new(
                "i".into(),
                1,
                "m".into(),
                vec![delta(None, Some(FinishReason::Stop))],
            )),
            Ok(ChatCompletionChunk::usage_only(
                "i".into(),
                1,
                "m".into(),
                Usage::new(1, 1),
            )),
        ];
        let out: Vec<_> = stream_from_chat(futures::stream::iter(chat).boxed())
            .collect()
            .await;
        assert_eq!(out.len(), 3);
        let out: Vec<_> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(out[0].choices[0].text, "hi");
        assert_eq!(out[1].choices[0].finish_reason, Some(FinishReason::Stop));
        assert_eq!(out[2].usage.as_ref().unwrap().total_tokens, 2);
    }
}
