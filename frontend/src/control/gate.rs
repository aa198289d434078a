//! One request's passage through the control plane, as the routes use it:
//! a [`Gate`] is opened by admission and settled exactly once, by
//! [`Gate::finish`] or, when the request fails or the client goes away, by
//! its `Drop` (a failure at cost 0). [`meter`] settles a stream from its
//! usage chunk when it ends or is dropped.

use super::{Admission, ControlPlane, Outcome};
use crate::openai::{ChatCompletionChunk, CompletionChunk, Usage};
use crate::provider::ChunkStream;
use futures::StreamExt;
use std::sync::Arc;

/// An admitted request not yet charged.
pub struct Gate {
    plane: Arc<ControlPlane>,
    admission: Option<Admission>,
}

impl Gate {
    /// Wraps `admission` of `plane`.
    pub fn new(plane: Arc<ControlPlane>, admission: Admission) -> Self {
        Self {
            plane,
            admission: Some(admission),
        }
    }

    /// The plane.
    pub fn plane(&self) -> &Arc<ControlPlane> {
        &self.plane
    }

    /// Charges the request; returns its cost in USD.
    pub fn finish(mut self, usage: Option<&Usage>, cache_hit: bool) -> f64 {
        match self.admission.take() {
            Some(admission) => self
                .plane
                .settle(admission, outcome(usage, cache_hit, true)),
            None => 0.0,
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if let Some(admission) = self.admission.take() {
            self.plane.settle(admission, outcome(None, false, false));
        }
    }
}

fn outcome(usage: Option<&Usage>, cache_hit: bool, success: bool) -> Outcome {
    Outcome {
        prompt_tokens: usage.map_or(0, |u| u64::from(u.prompt_tokens)),
        completion_tokens: usage.map_or(0, |u| u64::from(u.completion_tokens)),
        cache_hit,
        success,
    }
}

/// A streamed chunk that may carry the final usage.
pub trait UsageChunk {
    /// The usage, on the `include_usage` chunk.
    fn usage(&self) -> Option<&Usage>;
    /// Whether this is the usage-only chunk (no choices), which is dropped
    /// when the client did not ask for it.
    fn is_usage_only(&self) -> bool;
}

impl UsageChunk for ChatCompletionChunk {
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
    fn is_usage_only(&self) -> bool {
        self.usage.is_some() && self.choices.is_empty()
    }
}

impl UsageChunk for CompletionChunk {
    fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }
    fn is_usage_only(&self) -> bool {
        self.usage.is_some() && self.choices.is_empty()
    }
}

/// Settles `gate` from `stream`'s usage chunk when the stream ends (or as
/// a failure when it errs or is dropped first). The upstream was asked for
/// usage whatever the client wanted; `client_wants_usage` false drops the
/// usage-only chunk again.
pub fn meter<T>(stream: ChunkStream<T>, gate: Gate, client_wants_usage: bool) -> ChunkStream<T>
where
    T: UsageChunk + Send + 'static,
{
    let mut gate = Some(gate);
    let mut usage: Option<Usage> = None;
    let mut failed = false;
    stream
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .filter_map(move |item| {
            let out = match item {
                Some(Ok(chunk)) => {
                    if let Some(u) = chunk.usage() {
                        usage = Some(u.clone());
                    }
                    if chunk.is_usage_only() && !client_wants_usage {
                        None
                    } else {
                        Some(Ok(chunk))
                    }
                }
                Some(Err(e)) => {
                    failed = true;
                    Some(Err(e))
                }
                None => {
                    if let Some(gate) = gate.take() {
                        if failed {
                            drop(gate);
                        } else {
                            gate.finish(usage.as_ref(), false);
                        }
                    }
                    None
                }
            };
            futures::future::ready(out)
        })
        .boxed()
}
