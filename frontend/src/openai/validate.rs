//! Range checks shared by chat and text completion requests, each failing
//! with a 400 that names the parameter (OpenAI's ranges, vLLM's for its
//! extra fields).

use super::common::{StopSequences, StreamOptions};
use crate::error::ProviderError;
use std::collections::BTreeMap;

/// Most stop strings accepted (OpenAI allows 4, vLLM any number).
pub(crate) const MAX_STOP_SEQUENCES: usize = 16;
/// Longest stop string, in bytes: OpenAI documents none, and real ones
/// are a few words; the bound keeps the engine's stop matching and
/// hold-back small per token.
pub const MAX_STOP_BYTES: usize = 512;
/// Most choices per request (`n`, `best_of`).
pub(crate) const MAX_N: i64 = 128;
/// Most sequences one text completion may start: prompts in the batch
/// times `n` (or `best_of`). Each is a request in the engine's queue.
pub const MAX_SEQUENCES_PER_REQUEST: usize = 1024;
/// Most top logprobs per token (vLLM's default `max_logprobs`).
pub(crate) const MAX_LOGPROBS: i64 = 20;

/// Borrowed view of the sampling fields both request kinds share, so one
/// function checks them.
pub(crate) struct Sampling<'a> {
    pub n: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub min_tokens: Option<i64>,
    /// `(param name, value)` of the effective max tokens.
    pub max_tokens: Option<(&'static str, i64)>,
    pub stop: Option<&'a StopSequences>,
    pub logit_bias: Option<&'a BTreeMap<String, f32>>,
    pub stream: Option<bool>,
    pub stream_options: Option<&'a StreamOptions>,
}

impl Sampling<'_> {
    pub(crate) fn validate(&self) -> Result<(), ProviderError> {
        if let Some(n) = self.n {
            if !(1..=MAX_N).contains(&n) {
                return Err(ProviderError::invalid(
                    "n",
                    format!("n must be between 1 and {MAX_N}, got {n}"),
                ));
            }
        }
        float_in("temperature", self.temperature, 0.0, 2.0)?;
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(ProviderError::invalid(
                    "top_p",
                    format!("top_p must be in (0, 1], got {p}"),
                ));
            }
        }
        if let Some(k) = self.top_k {
            if k < -1 {
                return Err(ProviderError::invalid(
                    "top_k",
                    format!("top_k must be -1 or 0 (disabled) or at least 1, got {k}"),
                ));
            }
        }
        float_in("min_p", self.min_p, 0.0, 1.0)?;
        float_in("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        float_in("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        if let Some(r) = self.repetition_penalty {
            if !(r > 0.0 && r.is_finite()) {
                return Err(ProviderError::invalid(
                    "repetition_penalty",
                    format!("repetition_penalty must be greater than 0, got {r}"),
                ));
            }
        }
        if let Some((param, m)) = self.max_tokens {
            if m < 1 {
                return Err(ProviderError::invalid(
                    param,
                    format!("{param} must be at least 1, got {m}"),
                ));
            }
        }
        if let Some(m) = self.min_tokens {
            if m < 0 {
                return Err(ProviderError::invalid(
                    "min_tokens",
                    format!("min_tokens must be at least 0, got {m}"),
                ));
            }
            if let Some((param, max)) = self.max_tokens {
                if m > max {
                    return Err(ProviderError::invalid(
                        "min_tokens",
                        format!("min_tokens ({m}) must be at most {param} ({max})"),
                    ));
                }
            }
        }
        if let Some(stop) = self.stop {
            if stop.len() > MAX_STOP_SEQUENCES {
                return Err(ProviderError::invalid(
                    "stop",
                    format!(
                        "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
                        stop.len()
                    ),
                ));
            }
            if stop.to_vec().iter().any(String::is_empty) {
                return Err(ProviderError::invalid(
                    "stop",
                    "stop sequences must not be empty strings",
                ));
            }
            if let Some(long) = stop.to_vec().iter().find(|s| s.len() > MAX_STOP_BYTES) {
                return Err(ProviderError::invalid(
                    "stop",
                    format!(
                        "stop sequences must be at most {MAX_STOP_BYTES} bytes, got one of {}",
                        long.len()
                    ),
                ));
            }
        }
        if let Some(bias) = self.logit_bias {
            for (token, b) in bias {
                if token.parse::<u32>().is_err() {
                    return Err(ProviderError::invalid(
                        "logit_bias",
                        format!("logit_bias keys must be token ids, got {token:?}"),
                    ));
                }
                if !(-100.0..=100.0).contains(b) {
                    return Err(ProviderError::invalid(
                        "logit_bias",
                        format!("logit_bias values must be in [-100, 100], got {b}"),
                    ));
                }
            }
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(ProviderError::invalid(
                "stream_options",
                "stream_options can only be set when stream is true",
            ));
        }
        Ok(())
    }
}

/// Checks `lo <= value <= hi` (and finiteness) for an optional float.
pub(crate) fn float_in(
    param: &str,
    value: Option<f32>,
    lo: f32,
    hi: f32,
) -> Result<(), ProviderError> {
    match value {
        Some(v) if !(lo..=hi).contains(&v) => Err(ProviderError::invalid(
            param,
            format!("{param} must be in [{lo}, {hi}], got {v}"),
        )),
        _ => Ok(()),
    }
}

/// Checks a logprobs count against `0..=MAX_LOGPROBS`.
pub(crate) fn logprobs_count(param: &str, value: Option<i64>) -> Result<(), ProviderError> {
    match value {
        Some(v) if !(0..=MAX_LOGPROBS).contains(&v) => Err(ProviderError::invalid(
            param,
            format!("{param} must be between 0 and {MAX_LOGPROBS}, got {v}"),
        )),
        _ => Ok(()),
    }
}

/// Clamps a validated positive `i64` into `u32` for the engine.
pub(crate) fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
