//! OpenAI request parameters to [`GenerationParams`]: defaults as OpenAI and
//! vLLM define them (the model's own, `--generation-config`, first), prompts through the chat template, and the context
//! length check.

use frontend::openai::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, MessageContent, StopSequences,
};
use frontend::ProviderError;
use scheduler::{SamplingParams, StopParams};
use serde_json::{Map, Value};

use crate::chat_template::RenderExtras;
use crate::structured::{self, Constraint, SpecSource};

use super::{GenerationParams, LocalEngine};

/// The sampling fields chat and completions share.
pub(super) struct Knobs<'a> {
    pub max_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub n: Option<i64>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub min_tokens: Option<i64>,
    pub ignore_eos: Option<bool>,
    pub priority: Option<i32>,
    pub skip_special_tokens: Option<bool>,
    pub stop: Option<&'a StopSequences>,
    pub stop_token_ids: Option<&'a Vec<u32>>,
    /// Top logprobs to return per token; `None` for no logprobs.
    pub logprobs: Option<u32>,
    /// `max_tokens` when the client sent none: OpenAI's and vLLM's 16 for
    /// text completions; `None` (the rest of the context) for chat.
    pub default_max_tokens: Option<usize>,
    /// OpenAI's `response_format`.
    pub response_format: Option<&'a Value>,
    /// The fields the OpenAI types leave to `extra`, vLLM's
    /// `structured_outputs` and `guided_*` among them.
    pub extra: &'a Map<String, Value>,
}

impl<'a> Knobs<'a> {
    pub fn of_chat(r: &'a ChatCompletionRequest) -> Self {
        Self {
            max_tokens: r.max_completion_tokens.or(r.max_tokens),
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            min_p: r.min_p,
            n: r.n,
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            repetition_penalty: r.repetition_penalty,
            min_tokens: r.min_tokens,
            ignore_eos: r.ignore_eos,
            priority: r.priority,
            skip_special_tokens: r.skip_special_tokens,
            stop: r.stop.as_ref(),
            stop_token_ids: r.stop_token_ids.as_ref(),
            logprobs: (r.logprobs == Some(true)).then(|| r.top_logprobs.unwrap_or(0).max(0) as u32),
            default_max_tokens: None,
            response_format: r.response_format.as_ref(),
            extra: &r.extra,
        }
    }

    pub fn of_completion(r: &'a CompletionRequest) -> Self {
        Self {
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: r.top_k,
            min_p: r.min_p,
            n: r.n,
            seed: r.seed,
            presence_penalty: r.presence_penalty,
            frequency_penalty: r.frequency_penalty,
            repetition_penalty: r.repetition_penalty,
            min_tokens: r.min_tokens,
            ignore_eos: r.ignore_eos,
            priority: r.priority,
            skip_special_tokens: r.skip_special_tokens,
            stop: r.stop.as_ref(),
            stop_token_ids: r.stop_token_ids.as_ref(),
            logprobs: r.logprobs.map(|k| k.max(0) as u32),
            default_max_tokens: Some(frontend::openai::COMPLETION_DEFAULT_MAX_TOKENS as usize),
            // vLLM takes it on completions too; OpenAI's type has none.
            response_format: r.extra.get("response_format"),
            extra: &r.extra,
        }
    }
}

/// Runs CPU-heavy work (chat templating, tokenizing a large body) on
/// tokio's blocking pool, so a 30 MB prompt never stalls the async workers
/// that serve every other connection.
pub(super) async fn off_the_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ProviderError::Internal {
            message: format!("tokenizer task failed: {e}"),
        })?
}

impl LocalEngine {
    /// Renders `messages` with the model's chat template and tokenizes the
    /// result (special tokens come from the template itself), off the
    /// async workers. `tools` and `kwargs` (vLLM's
    /// `chat_template_kwargs`, e.g. Qwen3's `enable_thinking`) go to the
    /// template as given.
    pub(super) async fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tools: Option<Value>,
        kwargs: Option<serde_json::Map<String, Value>>,
    ) -> Result<Vec<u32>, ProviderError> {
        let template = self.template.clone().ok_or_else(|| {
            ProviderError::invalid(
                "messages",
                "this model has no chat template; use /v1/completions",
            )
        })?;
        refuse_non_text_parts(messages)?;
        let messages: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| {
                let mut v = serde_json::json!({
                    "role": m.role,
                    "content": m.content.as_ref().map(|c| c.text()).unwrap_or_default(),
                });
                if let Some(name) = &m.name {
                    v["name"] = serde_json::Value::String(name.clone());
                }
                if let Some(calls) = &m.tool_calls {
                    v["tool_calls"] = template_tool_calls(calls);
                }
                if let Some(id) = &m.tool_call_id {
                    v["tool_call_id"] = id.clone();
                }
                v
            })
            .collect();
        let tokenizer = self.tokenizer.clone();
        off_the_runtime(move || {
            let extras = RenderExtras {
                tools: tools.as_ref(),
                kwargs: kwargs.as_ref(),
                ..RenderExtras::default()
            };
            let text = template
                .render_with(
                    &serde_json::Value::Array(messages),
                    add_generation_prompt,
                    extras,
                )
                .map_err(|e| ProviderError::invalid("messages", format!("chat template: {e}")))?;
            tokenizer
                .encode(&text, false)
                .map_err(|e| ProviderError::Internal {
                    message: e.to_string(),
                })
        })
        .await
    }

    /// Builds the engine's parameters, refusing prompts that do not fit.
    pub(super) fn params(
        &self,
        request_id: String,
        prompt_token_ids: Vec<u32>,
        k: &Knobs<'_>,
    ) -> Result<GenerationParams, ProviderError> {
        let prompt_len = prompt_token_ids.len();
        if prompt_len == 0 {
            return Err(ProviderError::invalid("prompt", "the prompt is empty"));
        }
        let vocab = self.tokenizer.vocab_size();
        if let Some(bad) = prompt_token_ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(ProviderError::invalid(
                "prompt",
                format!("token id {bad} is out of vocabulary ({vocab})"),
            ));
        }
        if prompt_len >= self.max_model_len {
            return Err(ProviderError::ContextLengthExceeded {
                message: format!(
                    "This model's maximum context length is {} tokens. However, your prompt has {prompt_len} tokens.",
                    self.max_model_len
                ),
            });
        }
        let priority = k.priority.unwrap_or(0);
        if priority != 0 && !self.priority_scheduling {
            return Err(ProviderError::invalid(
                "priority",
                format!("priority {priority} needs the server started with --scheduling-policy priority"),
            ));
        }
        let room = self.max_model_len - prompt_len;
        let d = &self.defaults;
        let max_tokens = match k.max_tokens {
            // The endpoint's default (16 on /v1/completions) and
            // generation_config's max_new_tokens only cap.
            None => [
                k.default_max_tokens,
                d.max_tokens.map(|m| m.max(1) as usize),
            ]
            .into_iter()
            .flatten()
            .min()
            .map_or(room, |m| m.min(room)),
            Some(m) => {
                let m = m.max(1) as usize;
                if m > room {
                    return Err(ProviderError::ContextLengthExceeded {
                        message: format!(
                            "This model's maximum context length is {} tokens. However, you requested {} tokens ({prompt_len} in the prompt, {m} for the completion).",
                            self.max_model_len,
                            prompt_len + m
                        ),
                    });
                }
                m
            }
        };
        let sampling = SamplingParams {
            // Below 1e-5 (subnormals included) is greedy, as in vLLM.
            temperature: greedy_below_eps(k.temperature.or(d.temperature).unwrap_or(1.0)),
            top_p: k.top_p.or(d.top_p).unwrap_or(1.0),
            top_k: k
                .top_k
                .or(d.top_k)
                .filter(|&t| t > 0)
                .map_or(0, |t| t as u32),
            min_p: k.min_p.or(d.min_p).unwrap_or(0.0),
            seed: k.seed.map(|s| s as u64),
            presence_penalty: k.presence_penalty.unwrap_or(0.0),
            frequency_penalty: k.frequency_penalty.unwrap_or(0.0),
            repetition_penalty: k.repetition_penalty.or(d.repetition_penalty).unwrap_or(1.0),
            logprobs: k.logprobs,
        };
        let stop = StopParams {
            max_tokens,
            min_tokens: k.min_tokens.unwrap_or(0).max(0) as usize,
            ignore_eos: k.ignore_eos.unwrap_or(false),
            eos_token_ids: self.tokenizer.eos_token_ids().to_vec(),
            stop_token_ids: k.stop_token_ids.cloned().unwrap_or_default(),
        };
        Ok(GenerationParams {
            request_id,
            prompt_token_ids,
            n: k.n.unwrap_or(1).max(1) as usize,
            sampling,
            stop,
            stop_strings: k.stop.map(StopSequences::to_vec).unwrap_or_default(),
            include_stop_str_in_output: false,
            skip_special_tokens: k.skip_special_tokens.unwrap_or(true),
            priority,
            constraint: None,
        })
    }

    /// The compiled grammar of the request's structured output, if it asks
    /// for one (compiling a large schema takes milliseconds: off the async
    /// workers). A model whose vocabulary llguidance cannot read answers a
    /// constrained request with a 400 saying so.
    pub(super) async fn constraint(
        &self,
        k: &Knobs<'_>,
    ) -> Result<Option<Constraint>, ProviderError> {
        self.compile(structured::from_request(k.response_format, k.extra)?)
            .await
    }

    /// Compiles a grammar (a structured output's, or the one that
    /// enforces a tool choice) off the async workers.
    pub(super) async fn compile(
        &self,
        source: Option<SpecSource>,
    ) -> Result<Option<Constraint>, ProviderError> {
        let Some(source) = source else {
            return Ok(None);
        };
        let outputs = self.structured.clone().map_err(|why| {
            ProviderError::invalid(
                &source.param,
                format!("structured outputs are not available for this model: {why}"),
            )
        })?;
        let markers = self.reasoning_markers;
        off_the_runtime(move || {
            outputs
                .compile(&source)
                .map(|c| Some(c.after_reasoning(markers)))
        })
        .await
    }
}

/// An assistant turn's `tool_calls` as templates read them: each
/// `function.arguments` JSON string parsed into an object, as vLLM does
/// (templates write `arguments | tojson`); other shapes pass as sent.
fn template_tool_calls(calls: &Value) -> Value {
    let mut calls = calls.clone();
    if let Some(list) = calls.as_array_mut() {
        for call in list {
            let Some(args) = call.pointer_mut("/function/arguments") else {
                continue;
            };
            if let Some(parsed) = args
                .as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .filter(Value::is_object)
            {
                *args = parsed;
            }
        }
    }
    calls
}

/// The local models read text only: a part of another type (an image, an
/// audio clip, a file) is refused with a 400 naming it, where dropping it
/// would answer a question the user did not ask.
fn refuse_non_text_parts(messages: &[ChatMessage]) -> Result<(), ProviderError> {
    for (i, message) in messages.iter().enumerate() {
        let Some(MessageContent::Parts(parts)) = &message.content else {
            continue;
        };
        if let Some((j, part)) = parts.iter().enumerate().find(|(_, p)| p.kind != "text") {
            return Err(ProviderError::invalid(
                "messages",
                format!(
                    "messages[{i}].content[{j}] is a `{}` part; this model reads text parts only",
                    part.kind
                ),
            ));
        }
    }
    Ok(())
}

/// `temperature`, or 0 (greedy) when it is below
/// [`proto::sampling::MIN_TEMPERATURE`] (vLLM's `_SAMPLING_EPS`), so a
/// subnormal such as `1e-40` never reaches the sampler as a divisor.
fn greedy_below_eps(temperature: f32) -> f32 {
    if f64::from(temperature) < proto::sampling::MIN_TEMPERATURE {
        0.0
    } else {
        temperature
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temperatures_below_the_epsilon_are_greedy() {
        for t in [0.0, 1e-40, f32::MIN_POSITIVE, 1e-6, 9.99e-6] {
            assert_eq!(greedy_below_eps(t), 0.0, "{t}");
        }
        // Compared as the worker's sampler does (in f64), so both agree.
        for t in [2e-5, 0.01, 0.7, 2.0] {
            assert_eq!(greedy_below_eps(t), t, "{t}");
        }
    }
}
