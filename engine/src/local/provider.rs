//! `frontend::Provider` for the local model: shapes [`ChoiceDelta`]s into
//! OpenAI responses and chunks.

use std::collections::BTreeMap;

use async_trait::async_trait;
use frontend::openai::{
    new_id, unix_now, ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest,
    ChatCompletionResponse, ChatDelta, ChatLogprobToken, ChatLogprobs, ChatResponseMessage,
    CompletionChoice, CompletionChunk, CompletionLogprobs, CompletionRequest, CompletionResponse,
    DetokenizeRequest, DetokenizeResponse, FinishReason, ModelCard, Prompt, TokenizeInput,
    TokenizeRequest, TokenizeResponse, TopLogprob, Usage,
};
use frontend::{ChunkStream, Provider, ProviderError};
use futures::stream::{self, BoxStream, StreamExt};

use super::generation::{generate, ChoiceDelta, TokenLogprob};
use super::requests::{off_the_runtime, Knobs};
use super::tools::{message_parts, rendered_tools, ToolMode, ToolPlan, ToolStream};
use super::{GenerationParams, LocalEngine};
use crate::core::CoreError;
use crate::reasoning::ReasoningStream;
use crate::structured;

type Deltas = BoxStream<'static, Result<ChoiceDelta, ProviderError>>;

/// A started completion: its deltas, number of choices, prompt tokens in
/// all, and each prompt's ids (for `echo`).
struct StartedCompletion {
    deltas: Deltas,
    choices: usize,
    prompt_tokens: usize,
    prompts: Vec<Vec<u32>>,
}

fn core_error(e: CoreError) -> ProviderError {
    match e {
        CoreError::Unavailable(message) => ProviderError::Unavailable { message },
        CoreError::Rejected(message) => ProviderError::invalid("prompt", message),
        e @ CoreError::Failed(_) => ProviderError::Internal {
            message: e.to_string(),
        },
        CoreError::Overloaded(message) => ProviderError::RateLimited {
            message,
            retry_after: Some(crate::core::OVERLOADED_RETRY_AFTER_SECS),
        },
    }
}

/// Everything one choice produced, for non-streaming answers.
#[derive(Default)]
struct Collected {
    text: String,
    logprobs: Vec<TokenLogprob>,
    finish_reason: Option<FinishReason>,
    num_tokens: usize,
}

async fn collect(mut deltas: Deltas, choices: usize) -> Result<Vec<Collected>, ProviderError> {
    let mut out: Vec<Collected> = (0..choices).map(|_| Collected::default()).collect();
    while let Some(delta) = deltas.next().await {
        let d = delta?;
        if let Some(c) = out.get_mut(d.index) {
            c.text.push_str(&d.text);
            c.logprobs.extend(d.logprobs);
            c.num_tokens = d.num_output_tokens;
            c.finish_reason = d.finish_reason.or(c.finish_reason);
        }
    }
    Ok(out)
}

fn chat_logprobs(lps: &[TokenLogprob]) -> ChatLogprobs {
    ChatLogprobs {
        content: lps
            .iter()
            .map(|lp| ChatLogprobToken {
                token: lp.token.clone(),
                logprob: lp.logprob,
                bytes: Some(lp.token.as_bytes().to_vec()),
                top_logprobs: lp
                    .top
                    .iter()
                    .map(|(t, _, l)| TopLogprob {
                        token: t.clone(),
                        logprob: *l,
                        bytes: Some(t.as_bytes().to_vec()),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn completion_logprobs(lps: &[TokenLogprob], start_offset: usize) -> CompletionLogprobs {
    let mut offset = start_offset;
    let mut text_offset = Vec::with_capacity(lps.len());
    for lp in lps {
        text_offset.push(offset as u32);
        offset += lp.token.len();
    }
    CompletionLogprobs {
        tokens: lps.iter().map(|lp| lp.token.clone()).collect(),
        token_logprobs: lps.iter().map(|lp| Some(lp.logprob)).collect(),
        top_logprobs: lps
            .iter()
            .map(|lp| {
                Some(
                    lp.top
                        .iter()
                        .map(|(t, _, l)| (t.clone(), *l))
                        .collect::<BTreeMap<_, _>>(),
                )
            })
            .collect(),
        text_offset,
    }
}

impl LocalEngine {
    fn check_model(&self, model: &str) -> Result<(), ProviderError> {
        if self.names.iter().any(|n| n == model) {
            Ok(())
        } else {
            Err(ProviderError::ModelNotFound {
                model: model.to_string(),
            })
        }
    }

    /// Starts one generation; errors known before the first token
    /// (core unavailable) come back here.
    fn start(
        &self,
        params: GenerationParams,
        index_offset: usize,
    ) -> Result<Deltas, ProviderError> {
        let stream = generate(&self.core, self.tokenizer.clone(), params).map_err(core_error)?;
        Ok(stream
            .map(move |d| {
                d.map(|mut d| {
                    d.index += index_offset;
                    d
                })
                .map_err(core_error)
            })
            .boxed())
    }

    /// Renders, tokenizes and starts a chat request: its deltas, number
    /// of choices, prompt length, and how tool calls are read from it.
    async fn start_chat(
        &self,
        req: &ChatCompletionRequest,
        id: &str,
    ) -> Result<(Deltas, usize, usize, ToolMode), ProviderError> {
        self.check_model(&req.model)?;
        let reads_tools = self.template.as_ref().is_some_and(|t| t.reads_tools());
        let tools = ToolPlan::of(req, self.tools, reads_tools)?;
        let knobs = Knobs::of_chat(req);
        let structured = structured::from_request(knobs.response_format, knobs.extra)?;
        if let (Some(_), Some(s)) = (&tools.grammar, &structured) {
            return Err(ProviderError::invalid(
                &s.param,
                "a structured output cannot be combined with tool_choice \"required\" or a named function",
            ));
        }
        let prompt = self
            .chat_prompt(
                &req.messages,
                req.add_generation_prompt.unwrap_or(true),
                tools.template_tools,
                req.chat_template_kwargs.clone(),
            )
            .await?;
        let prompt_len = prompt.len();
        let mut params = self.params(id.to_string(), prompt, &knobs)?;
        params.constraint = self.compile(tools.grammar.or(structured)).await?;
        let n = params.n;
        Ok((self.start(params, 0)?, n, prompt_len, tools.mode))
    }

    /// Token ids of each prompt of a (possibly batched) completion request;
    /// text is tokenized off the async workers.
    async fn completion_prompts(
        &self,
        req: &CompletionRequest,
    ) -> Result<Vec<Vec<u32>>, ProviderError> {
        let add_special = req.add_special_tokens.unwrap_or(true);
        let texts = match &req.prompt {
            Prompt::Text(t) => vec![t.clone()],
            Prompt::Texts(ts) => ts.clone(),
            Prompt::Tokens(ids) => return Ok(vec![ids.clone()]),
            Prompt::TokenBatches(b) => return Ok(b.clone()),
        };
        let tokenizer = self.tokenizer.clone();
        off_the_runtime(move || {
            texts
                .iter()
                .map(|t| {
                    tokenizer
                        .encode(t, add_special)
                        .map_err(|e| ProviderError::Internal {
                            message: e.to_string(),
                        })
                })
                .collect()
        })
        .await
    }

    async fn start_completion(
        &self,
        req: &CompletionRequest,
        id: &str,
    ) -> Result<StartedCompletion, ProviderError> {
        self.check_model(&req.model)?;
        let prompts = self.completion_prompts(req).await?;
        let knobs = Knobs::of_completion(req);
        let mut all = Vec::new();
        let mut n = 1;
        let mut prompt_tokens = 0;
        let mut params = Vec::new();
        let constraint = self.constraint(&knobs).await?;
        for (i, prompt) in prompts.iter().enumerate() {
            prompt_tokens += prompt.len();
            let mut p = self.params(format!("{id}-p{i}"), prompt.clone(), &knobs)?;
            p.constraint = constraint.clone();
            n = p.n;
            params.push(p);
        }
        for (i, p) in params.into_iter().enumerate() {
            all.push(self.start(p, i * n)?);
        }
        Ok(StartedCompletion {
            deltas: stream::select_all(all).boxed(),
            choices: n * prompts.len(),
            prompt_tokens,
            prompts,
        })
    }
}

#[async_trait]
impl Provider for LocalEngine {
    fn models(&self) -> Vec<ModelCard> {
        self.names
            .iter()
            .map(|n| ModelCard::new(n.clone(), "engine", Some(self.max_model_len as u32)))
            .collect()
    }

    fn health(&self) -> Result<(), ProviderError> {
        self.core.health().map_err(core_error)
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let id = new_id("chatcmpl");
        let (deltas, n, prompt_len, tool_mode) = self.start_chat(&req, &id).await?;
        let collected = collect(deltas, n).await?;
        let completion_tokens: usize = collected.iter().map(|c| c.num_tokens).sum();
        let choices = collected
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let (reasoning_content, text) = match self.reasoning {
                    Some(parser) => parser.split(&c.text),
                    None => (None, c.text),
                };
                let (content, tool_calls, finish_reason) =
                    message_parts(&tool_mode, text, c.finish_reason);
                ChatChoice {
                    index: i as u32,
                    message: ChatResponseMessage {
                        content,
                        tool_calls,
                        reasoning_content,
                        ..ChatResponseMessage::assistant("")
                    },
                    logprobs: req
                        .logprobs
                        .filter(|&l| l)
                        .map(|_| chat_logprobs(&c.logprobs)),
                    finish_reason,
                }
            })
            .collect();
        Ok(ChatCompletionResponse::new(
            id,
            req.model,
            choices,
            Usage::new(prompt_len as u32, completion_tokens as u32),
        ))
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        let id = new_id("chatcmpl");
        let (deltas, n, prompt_len, tool_mode) = self.start_chat(&req, &id).await?;
        let created = unix_now();
        let model = req.model.clone();
        let want_logprobs = req.logprobs == Some(true);
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        // First chunk of each choice carries the role, as OpenAI sends it.
        let first = ChatCompletionChunk::new(
            id.clone(),
            created,
            model.clone(),
            (0..n)
                .map(|i| ChatChunkChoice {
                    index: i as u32,
                    delta: ChatDelta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        tool_calls: None,
                        reasoning_content: None,
                    },
                    logprobs: None,
                    finish_reason: None,
                })
                .collect(),
        );
        let mut tokens_per_choice = vec![0usize; n];
        let mut tool_streams: Vec<ToolStream> =
            (0..n).map(|_| ToolStream::new(&tool_mode)).collect();
        let mut reasoning_streams: Vec<Option<ReasoningStream>> = (0..n)
            .map(|_| self.reasoning.map(ReasoningStream::new))
            .collect();
        let (id2, model2) = (id.clone(), model.clone());
        let body = deltas.filter_map(move |d| {
            let item = d.map(|d| {
                if let Some(t) = tokens_per_choice.get_mut(d.index) {
                    *t = d.num_output_tokens;
                }
                let (reasoning, text) = match reasoning_streams.get_mut(d.index) {
                    Some(Some(s)) => {
                        let routed = s.push(&d.text, d.finish_reason.is_some());
                        (routed.reasoning, routed.content)
                    }
                    _ => (String::new(), d.text),
                };
                let (text, tool_calls, finish_reason) = match tool_streams.get_mut(d.index) {
                    Some(s) => {
                        let out = s.push(text, d.finish_reason);
                        (out.content, out.tool_calls, out.finish)
                    }
                    None => (text, None, d.finish_reason),
                };
                if text.is_empty()
                    && reasoning.is_empty()
                    && tool_calls.is_none()
                    && finish_reason.is_none()
                    && d.logprobs.is_empty()
                {
                    return None;
                }
                let choice = ChatChunkChoice {
                    index: d.index as u32,
                    delta: ChatDelta {
                        role: None,
                        content: (!text.is_empty()
                            || (tool_calls.is_none() && reasoning.is_empty()))
                        .then_some(text),
                        tool_calls,
                        reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                    },
                    logprobs: want_logprobs.then(|| chat_logprobs(&d.logprobs)),
                    finish_reason,
                };
                let total: usize = tokens_per_choice.iter().sum();
                Some((
                    ChatCompletionChunk::new(id2.clone(), created, model2.clone(), vec![choice]),
                    total,
                ))
            });
            async move { item.transpose() }
        });
        let stream = stream::once(async move { Ok((first, 0usize)) })
            .chain(body)
            .boxed();
        Ok(with_usage_tail(stream, include_usage, move |completion| {
            ChatCompletionChunk::usage_only(
                id.clone(),
                created,
                model.clone(),
                Usage::new(prompt_len as u32, completion as u32),
            )
        }))
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        let id = new_id("cmpl");
        let StartedCompletion {
            deltas,
            choices,
            prompt_tokens,
            prompts,
        } = self.start_completion(&req, &id).await?;
        let per_prompt = choices / prompts.len().max(1);
        let collected = collect(deltas, choices).await?;
        let completion_tokens: usize = collected.iter().map(|c| c.num_tokens).sum();
        let echo = req.echo.unwrap_or(false);
        let mut out = Vec::with_capacity(choices);
        for (i, c) in collected.into_iter().enumerate() {
            let prefix = if echo {
                let p = prompts
                    .get(i / per_prompt.max(1))
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                self.tokenizer.decode(p, false).unwrap_or_default()
            } else {
                String::new()
            };
            out.push(CompletionChoice {
                index: i as u32,
                logprobs: req
                    .logprobs
                    .map(|_| completion_logprobs(&c.logprobs, prefix.len())),
                text: prefix + &c.text,
                finish_reason: c.finish_reason,
            });
        }
        Ok(CompletionResponse::new(
            id,
            req.model,
            out,
            Usage::new(prompt_tokens as u32, completion_tokens as u32),
        ))
    }

    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        if req.echo == Some(true) {
            return Err(ProviderError::invalid(
                "echo",
                "echo is not supported with stream",
            ));
        }
        let id = new_id("cmpl");
        let StartedCompletion {
            deltas,
            choices,
            prompt_tokens,
            ..
        } = self.start_completion(&req, &id).await?;
        let created = unix_now();
        let model = req.model.clone();
        let want_logprobs = req.logprobs.is_some();
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let mut tokens_per_choice = vec![0usize; choices];
        let mut offsets = vec![0usize; choices];
        let (id2, model2) = (id.clone(), model.clone());
        let body = deltas.filter_map(move |d| {
            let item = d.map(|d| {
                if let Some(t) = tokens_per_choice.get_mut(d.index) {
                    *t = d.num_output_tokens;
                }
                let offset = offsets.get(d.index).copied().unwrap_or(0);
                if let Some(o) = offsets.get_mut(d.index) {
                    *o += d.text.len();
                }
                let total: usize = tokens_per_choice.iter().sum();
                if d.text.is_empty() && d.finish_reason.is_none() && d.logprobs.is_empty() {
                    return None;
                }
                Some((
                    CompletionChunk::new(
                        id2.clone(),
                        created,
                        model2.clone(),
                        vec![CompletionChoice {
                            index: d.index as u32,
                            logprobs: want_logprobs
                                .then(|| completion_logprobs(&d.logprobs, offset)),
                            text: d.text,
                            finish_reason: d.finish_reason,
                        }],
                    ),
                    total,
                ))
            });
            async move { item.transpose() }
        });
        Ok(with_usage_tail(
            body.boxed(),
            include_usage,
            move |completion| CompletionChunk {
                usage: Some(Usage::new(prompt_tokens as u32, completion as u32)),
                ..CompletionChunk::new(id.clone(), created, model.clone(), Vec::new())
            },
        ))
    }

    async fn tokenize(&self, req: TokenizeRequest) -> Result<TokenizeResponse, ProviderError> {
        if let Some(model) = &req.model {
            self.check_model(model)?;
        }
        let tokens = match req.input()? {
            TokenizeInput::Prompt(text) => {
                let (tokenizer, text) = (self.tokenizer.clone(), text.to_owned());
                let add_special = req.add_special_tokens.unwrap_or(true);
                off_the_runtime(move || {
                    tokenizer
                        .encode(&text, add_special)
                        .map_err(|e| ProviderError::Internal {
                            message: e.to_string(),
                        })
                })
                .await?
            }
            TokenizeInput::Messages(messages) => {
                // The prompt a chat request with these fields would get.
                let reads_tools = self.template.as_ref().is_some_and(|t| t.reads_tools());
                let tools = rendered_tools(req.tools.as_ref(), reads_tools)?;
                let add_generation_prompt = req.add_generation_prompt.unwrap_or(true);
                let kwargs = req.chat_template_kwargs.clone();
                self.chat_prompt(messages, add_generation_prompt, tools, kwargs)
                    .await?
            }
        };
        Ok(TokenizeResponse {
            count: tokens.len(),
            max_model_len: self.max_model_len,
            tokens,
        })
    }

    async fn detokenize(
        &self,
        req: DetokenizeRequest,
    ) -> Result<DetokenizeResponse, ProviderError> {
        if let Some(model) = &req.model {
            self.check_model(model)?;
        }
        let vocab = self.tokenizer.vocab_size();
        if let Some(bad) = req.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ProviderError::invalid(
                "tokens",
                format!("token id {bad} is out of vocabulary ({vocab})"),
            ));
        }
        let prompt =
            self.tokenizer
                .decode(&req.tokens, false)
                .map_err(|e| ProviderError::Internal {
                    message: e.to_string(),
                })?;
        Ok(DetokenizeResponse { prompt })
    }
}

/// Passes chunks through and, when asked, appends the usage chunk built
/// from the last known completion-token total.
fn with_usage_tail<T: Send + 'static>(
    chunks: BoxStream<'static, Result<(T, usize), ProviderError>>,
    include_usage: bool,
    usage_chunk: impl FnOnce(usize) -> T + Send + 'static,
) -> ChunkStream<T> {
    let state = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = state.clone();
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed2 = failed.clone();
    let body = chunks.map(move |item| {
        item.map(|(chunk, total)| {
            seen.fetch_max(total, std::sync::atomic::Ordering::Relaxed);
            chunk
        })
        .inspect_err(|_| failed2.store(true, std::sync::atomic::Ordering::Relaxed))
    });
    let tail = stream::once(async move {
        let total = state.load(std::sync::atomic::Ordering::Relaxed);
        (include_usage && !failed.load(std::sync::atomic::Ordering::Relaxed))
            .then(|| Ok(usage_chunk(total)))
    })
    .filter_map(|x| async move { x });
    body.chain(tail).boxed()
}
