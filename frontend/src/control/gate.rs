//! One request's passage through the control plane, as the routes use it:
//! a [`Gate`] is opened by admission and settled exactly once, by
//! [`Gate::finish`] or, when the request fails or the client goes away, by
//! its `Drop` (a failure at cost 0: nothing was delivered). [`meter`]
//! settles a stream: from its usage chunk when it ends; when it ends
//! without one, fails, hits a timeout or is dropped by the client, for
//! what it delivered (the usage seen so far, else the estimate of
//! [`super::demand`]: the prompt estimate plus the output counted from the
//! deltas). No stream is free because it was cut.

use super::demand::{Delivered, OutputChunk};
use super::{Admission, ControlPlane, Outcome};
use crate::openai::Usage;
use crate::provider::generation::UsageChunk;
use crate::provider::ChunkStream;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
        self.settle(outcome(usage, cache_hit, true))
    }

    /// Charges the request with `outcome`; returns its cost in USD.
    fn settle(&mut self, outcome: Outcome) -> f64 {
        match self.admission.take() {
            Some(admission) => self.plane.settle(admission, outcome),
            None => 0.0,
        }
    }

    /// The admission's prompt estimate (0 once settled).
    fn prompt_estimate(&self) -> u64 {
        self.admission
            .as_ref()
            .map_or(0, Admission::prompt_estimate)
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.settle(outcome(None, false, false));
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

/// What a metered stream has seen; settles its gate when the stream ends
/// or, failing that, when it is dropped.
struct Meter {
    gate: Gate,
    usage: Option<Usage>,
    delivered: Delivered,
}

impl Meter {
    /// Settles: from the usage when the upstream sent it, else from what
    /// was delivered. A failed or abandoned stream is logged as a failure,
    /// at the cost of what it delivered.
    fn settle(&mut self, success: bool) {
        let usage = self.usage.clone();
        let outcome = match usage {
            Some(u) => outcome(Some(&u), false, success),
            None => Outcome {
                prompt_tokens: self.gate.prompt_estimate(),
                completion_tokens: self.delivered.tokens(),
                cache_hit: false,
                success,
            },
        };
        self.gate.settle(outcome);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // Still unsettled: the stream broke off (an error item, a timeout)
        // or the client went away before its end.
        self.settle(false);
    }
}

/// The stream [`meter`] returns.
struct Metered<T> {
    inner: ChunkStream<T>,
    meter: Option<Meter>,
    client_wants_usage: bool,
}

impl<T: UsageChunk + OutputChunk> Stream for Metered<T> {
    type Item = Result<T, crate::error::ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(meter) = this.meter.as_mut() else {
                return Poll::Ready(None);
            };
            match this.inner.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(u) = chunk.usage() {
                        meter.usage = Some(u.clone());
                    }
                    if chunk.is_usage_only() && !this.client_wants_usage {
                        continue;
                    }
                    meter.delivered.add(&chunk);
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    // The route stops after an error item; settle now.
                    if let Some(mut meter) = this.meter.take() {
                        meter.settle(false);
                    }
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    if let Some(mut meter) = this.meter.take() {
                        meter.settle(true);
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }
}

/// Settles `gate` when `stream` ends: from its usage chunk, or from what
/// it delivered when it ends without usage, fails, or is dropped first.
/// The upstream was asked for usage whatever the client wanted;
/// `client_wants_usage` false drops the usage-only chunk again.
pub fn meter<T>(stream: ChunkStream<T>, gate: Gate, client_wants_usage: bool) -> ChunkStream<T>
where
    T: UsageChunk + OutputChunk,
{
    Metered {
        inner: stream,
        meter: Some(Meter {
            gate,
            usage: None,
            delivered: Delivered::default(),
        }),
        client_wants_usage,
    }
    .boxed()
}
