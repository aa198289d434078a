//! One generation, API-agnostic: `n` choices of a prompt through the engine
//! core, turned into text deltas with stop strings applied.
//!
//! The OpenAI layer (`openai.rs`) maps its requests onto
//! [`GenerationParams`] and the [`ChoiceDelta`]s back onto chunks, so chat
//! and completions share every step from token ids to text.

use std::sync::Arc;

use frontend::openai::FinishReason as OpenAiFinish;
use futures::stream::{self, BoxStream, StreamExt};
use scheduler::{FinishReason, SamplingParams, StopParams};

use super::logprob_holdback::LogprobHoldback;
use crate::core::{CoreError, CoreEvent, CoreRequest, EngineCoreHandle, SampledLogprobs};
use crate::detokenizer::{IncrementalDetokenizer, StopChecker};
use crate::structured::Constraint;
use crate::tokenizer::Tokenizer;

/// Everything one request asks of the engine, after validation.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    pub request_id: String,
    pub prompt_token_ids: Vec<u32>,
    pub sampling: SamplingParams,
    pub stop: StopParams,
    pub stop_strings: Vec<String>,
    pub include_stop_str_in_output: bool,
    pub skip_special_tokens: bool,
    /// Number of choices.
    pub n: usize,
    pub priority: i32,
    /// The grammar of a structured output; each choice walks its own copy.
    pub constraint: Option<Constraint>,
}

/// A token with its log-probability and the top alternatives.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub token_id: u32,
    pub logprob: f32,
    pub top: Vec<(String, u32, f32)>,
}

/// New output of one choice.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceDelta {
    pub index: usize,
    pub text: String,
    pub token_ids: Vec<u32>,
    /// When logprobs were asked for, those of the tokens whose text this
    /// delta's content completes (see [`LogprobHoldback`]): joined over the
    /// choice they spell its content, without the EOS or stop token that
    /// ended it, and cut where a stop string matched.
    pub logprobs: Vec<TokenLogprob>,
    /// `"stop"`, `"length"` or `"abort"` on the choice's last delta.
    pub finish_reason: Option<OpenAiFinish>,
    /// Total output tokens of this choice so far.
    pub num_output_tokens: usize,
    /// Prompt tokens served from the prefix cache (first delta only).
    pub num_cached_tokens: Option<usize>,
}

/// State of one choice while it streams.
struct Choice {
    index: usize,
    /// Taken (dropped, which aborts the request) when a stop string ends it.
    events: Option<crate::core::RequestStream>,
    detok: IncrementalDetokenizer,
    stops: StopChecker,
    /// Logprobs wait here until the content covers their text.
    logprobs: LogprobHoldback,
    num_output: usize,
    done: bool,
}

/// Submits the `n` choices and returns one stream of their deltas, in the
/// order they are produced. Dropping the stream aborts unfinished choices.
pub fn generate(
    core: &EngineCoreHandle,
    tokenizer: Arc<Tokenizer>,
    params: GenerationParams,
) -> Result<BoxStream<'static, Result<ChoiceDelta, CoreError>>, CoreError> {
    let mut choices = Vec::with_capacity(params.n);
    for index in 0..params.n.max(1) {
        let mut sampling = params.sampling.clone();
        // Distinct but reproducible seeds per choice.
        sampling.seed = sampling.seed.map(|s| s.wrapping_add(index as u64));
        let events = core.add(CoreRequest {
            id: format!("{}-{index}", params.request_id),
            prompt_token_ids: params.prompt_token_ids.clone(),
            sampling,
            stop: params.stop.clone(),
            priority: params.priority,
            constraint: params.constraint.clone(),
        })?;
        choices.push(Choice {
            index,
            events: Some(events),
            detok: IncrementalDetokenizer::new(
                tokenizer.clone(),
                &params.prompt_token_ids,
                params.skip_special_tokens,
            ),
            stops: StopChecker::new(
                params.stop_strings.clone(),
                params.include_stop_str_in_output,
            ),
            logprobs: LogprobHoldback::default(),
            num_output: 0,
            done: false,
        });
    }
    let streams = choices.into_iter().map(move |choice| {
        let tokenizer = tokenizer.clone();
        stream::unfold(choice, move |mut c| {
            let tokenizer = tokenizer.clone();
            async move {
                if c.done {
                    return None;
                }
                let event = c.events.as_mut()?.next().await;
                let delta = match event {
                    None => {
                        c.done = true;
                        Err(CoreError::Unavailable("engine core stopped".into()))
                    }
                    Some(CoreEvent::Error(e)) => {
                        c.done = true;
                        Err(e)
                    }
                    Some(CoreEvent::Tokens {
                        new_token_ids,
                        logprobs,
                        finish_reason,
                        num_cached_tokens,
                    }) => Ok(on_tokens(
                        &mut c,
                        &tokenizer,
                        new_token_ids,
                        logprobs,
                        finish_reason,
                        num_cached_tokens,
                    )),
                };
                Some((delta, c))
            }
        })
        .boxed()
    });
    Ok(stream::select_all(streams).boxed())
}

/// The OpenAI `finish_reason` of a scheduler's finish (the only place the
/// two meet): EOS and stop tokens are `stop`, both length limits are
/// `length`, an abort is `abort` as in vLLM.
fn openai_finish(reason: FinishReason) -> OpenAiFinish {
    match reason {
        FinishReason::Eos | FinishReason::StopToken(_) => OpenAiFinish::Stop,
        FinishReason::MaxTokens | FinishReason::MaxModelLen => OpenAiFinish::Length,
        FinishReason::Aborted => OpenAiFinish::Abort,
    }
}

fn on_tokens(
    c: &mut Choice,
    tokenizer: &Tokenizer,
    token_ids: Vec<u32>,
    logprobs: Vec<SampledLogprobs>,
    finish: Option<FinishReason>,
    num_cached_tokens: Option<usize>,
) -> ChoiceDelta {
    let mut text = String::new();
    let mut stopped = false;
    let mut kept = Vec::with_capacity(token_ids.len());
    for &t in &token_ids {
        kept.push(t);
        // EOS and stop tokens are not part of the text (skip_special_tokens).
        let piece = c.detok.push(t).unwrap_or_default();
        let update = c.stops.push(&piece);
        text.push_str(&update.emit);
        if update.stopped {
            stopped = true;
            break;
        }
    }
    c.num_output += kept.len();
    let finish_reason = if stopped {
        Some(OpenAiFinish::Stop)
    } else {
        finish.map(openai_finish)
    };
    if finish_reason.is_some() {
        if !stopped {
            text.push_str(&c.stops.flush());
        }
        c.done = true;
        // Dropping the events aborts the request if a stop string ended it
        // before the scheduler did; otherwise it is already finished.
        c.events = None;
    }
    // The EOS or stop token that ended the choice is not part of the
    // content, so not of its logprobs either (as in OpenAI's API, whose
    // clients join the logprob tokens to get the content).
    let spelled =
        if !stopped && matches!(finish, Some(FinishReason::Eos | FinishReason::StopToken(_))) {
            kept.len().saturating_sub(1)
        } else {
            kept.len()
        };
    let sampled = logprobs
        .into_iter()
        .zip(&kept[..spelled])
        .map(|(lp, &id)| TokenLogprob {
            token: token_text(tokenizer, id),
            token_id: id,
            logprob: lp.logprob,
            top: lp
                .top
                .iter()
                .map(|&(t, l)| (token_text(tokenizer, t), t, l))
                .collect(),
        })
        .collect();
    let mut logprobs = c.logprobs.push(sampled, text.len());
    if finish_reason.is_some() {
        logprobs.extend(c.logprobs.finish(stopped));
    }
    ChoiceDelta {
        index: c.index,
        text,
        token_ids: kept,
        logprobs,
        finish_reason,
        num_output_tokens: c.num_output,
        num_cached_tokens,
    }
}

/// A token's own text (as decoded alone), for logprobs.
fn token_text(tokenizer: &Tokenizer, id: u32) -> String {
    tokenizer.decode(&[id], false).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheduler_finish_has_its_openai_reason() {
        let cases = [
            (FinishReason::Eos, "stop"),
            (FinishReason::StopToken(7), "stop"),
            (FinishReason::MaxTokens, "length"),
            (FinishReason::MaxModelLen, "length"),
            (FinishReason::Aborted, "abort"),
        ];
        for (reason, wire) in cases {
            let json = serde_json::to_value(openai_finish(reason)).unwrap();
            assert_eq!(json, wire, "{reason:?}");
        }
    }
}
