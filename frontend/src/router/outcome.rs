//! What a successful attempt hands back, and how the router finishes it:
//! a whole response counts its tokens and is returned; a stream (already
//! past its first chunk) is wrapped so it keeps the deployment's in-flight
//! count, adds its usage chunk to tpm, reports a mid-stream error to the
//! deployment's failure count, and ends with a Timeout error item at the
//! request's deadline.

use super::deployment::{Deployment, InFlight};
use super::retry;
use super::Shared;
use crate::error::ProviderError;
use crate::openai::{ChatCompletionResponse, CompletionResponse, EmbeddingResponse};
use crate::provider::generation::UsageChunk;
use crate::provider::ChunkStream;
use futures::StreamExt;
use std::sync::Arc;
use tokio::time::Instant;

/// Bookkeeping handed to [`Routed::finish`].
pub struct Finish {
    /// The deployment that answered.
    pub deployment: Arc<Deployment>,
    /// Its in-flight guard, kept alive by streams.
    pub guard: InFlight,
    /// The request's deadline, if any.
    pub deadline: Option<Instant>,
    /// Router state, for failure accounting mid-stream.
    pub shared: Arc<Shared>,
}

/// The result of one successful attempt.
pub trait Routed: Send + 'static {
    /// What the caller gets.
    type Output: Send + 'static;
    /// Whether this is a stream (latency is then time to first chunk).
    const STREAMING: bool;
    /// Accounts for the result and turns it into the output.
    fn finish(self, f: Finish) -> Self::Output;
}

fn count(f: &Finish, tokens: u32) {
    f.deployment.count_tokens(Instant::now(), u64::from(tokens));
}

impl Routed for ChatCompletionResponse {
    type Output = Self;
    const STREAMING: bool = false;
    fn finish(self, f: Finish) -> Self {
        count(&f, self.usage.total_tokens);
        self
    }
}

impl Routed for CompletionResponse {
    type Output = Self;
    const STREAMING: bool = false;
    fn finish(self, f: Finish) -> Self {
        count(&f, self.usage.total_tokens);
        self
    }
}

impl Routed for EmbeddingResponse {
    type Output = Self;
    const STREAMING: bool = false;
    fn finish(self, f: Finish) -> Self {
        count(&f, self.usage.total_tokens);
        self
    }
}

/// A stream that produced its first chunk: only such a stream counts as
/// a successful attempt (an error before it is retried).
pub struct Peeked<C> {
    /// The first chunk.
    pub first: C,
    /// Everything after it.
    pub rest: ChunkStream<C>,
}

impl<C> Peeked<C> {
    /// Polls `stream` to its first chunk: an `Err` first item is the
    /// attempt's error, and an end before any chunk is a 502 (a cut
    /// stream must never look like an empty answer).
    pub async fn first_of(mut stream: ChunkStream<C>) -> Result<Self, ProviderError> {
        match stream.next().await {
            Some(Ok(first)) => Ok(Self {
                first,
                rest: stream,
            }),
            Some(Err(e)) => Err(e),
            None => Err(ProviderError::Upstream {
                status: 502,
                message: "the upstream stream ended before its first chunk".to_owned(),
                retry_after: None,
            }),
        }
    }
}

struct Tail<C> {
    rest: ChunkStream<C>,
    f: Finish,
    done: bool,
}

impl<C: UsageChunk> Routed for Peeked<C> {
    type Output = ChunkStream<C>;
    const STREAMING: bool = true;
    fn finish(self, f: Finish) -> ChunkStream<C> {
        if let Some(t) = self.first.usage().map(|u| u.total_tokens) {
            count(&f, t);
        }
        let tail = Tail {
            rest: self.rest,
            f,
            done: false,
        };
        let rest = futures::stream::unfold(tail, |mut t| async move {
            if t.done {
                return None;
            }
            let next = match t.f.deadline {
                Some(d) => match tokio::time::timeout_at(d, t.rest.next()).await {
                    Ok(item) => item,
                    Err(_) => Some(Err(ProviderError::Timeout)),
                },
                None => t.rest.next().await,
            };
            match next {
                None => None,
                Some(Ok(chunk)) => {
                    if let Some(tokens) = chunk.usage().map(|u| u.total_tokens) {
                        count(&t.f, tokens);
                    }
                    Some((Ok(chunk), t))
                }
                Some(Err(e)) => {
                    // After the first byte nothing is retried: the client
                    // gets the error event; the deployment still pays.
                    if retry::counts_as_failure(&e) {
                        t.f.shared.failed(&t.f.deployment, &e);
                    }
                    t.done = true;
                    Some((Err(e), t))
                }
            }
        });
        futures::stream::once(async move { Ok(self.first) })
            .chain(rest)
            .boxed()
    }
}
