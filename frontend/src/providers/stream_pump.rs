//! Drives a provider's stream of decoded events (SSE JSON, AWS
//! event-stream frames) through a per-request translator into OpenAI
//! [`ChatCompletionChunk`]s, so each adapter writes only the translation
//! (`on_event`, `finish`) and never the stream plumbing.
//!
//! The contract every adapter relies on: an upstream error item ends the
//! stream with that error; when the upstream ends, [`StreamTranslator::finish`]
//! decides whether it ended normally (terminal event seen: emit the last
//! chunks) or was cut (an `Err`, a 502), so a cut stream never looks like a
//! normal end. Dropping the returned stream drops the upstream body, which
//! closes the connection (cancellation).

use crate::error::ProviderError;
use crate::openai::ChatCompletionChunk;
use crate::provider::ChunkStream;
use futures::stream::{BoxStream, StreamExt};
use std::collections::VecDeque;

/// One request's translation state from upstream events `E` to chunks.
pub trait StreamTranslator<E>: Send + 'static {
    /// The chunks one upstream event yields (often none); an `Err` (an
    /// error event inside the stream) ends the stream with it.
    fn on_event(&mut self, event: E) -> Result<Vec<ChatCompletionChunk>, ProviderError>;
    /// Called once when the upstream body ends: the closing chunks (the
    /// finish reason, the usage chunk), or an `Err` when the terminal event
    /// never came (the stream was cut).
    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError>;
}

struct Pump<E, T> {
    events: BoxStream<'static, Result<E, ProviderError>>,
    translator: T,
    pending: VecDeque<ChatCompletionChunk>,
    done: bool,
}

/// Turns `events` into the chunk stream of one response, via `translator`.
pub fn pump<E, T>(
    events: BoxStream<'static, Result<E, ProviderError>>,
    translator: T,
) -> ChunkStream<ChatCompletionChunk>
where
    E: Send + 'static,
    T: StreamTranslator<E>,
{
    let state = Pump {
        events,
        translator,
        pending: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(chunk) = s.pending.pop_front() {
                return Some((Ok(chunk), s));
            }
            if s.done {
                return None;
            }
            let produced = match s.events.next().await {
                Some(Ok(event)) => s.translator.on_event(event),
                Some(Err(e)) => Err(e),
                None => {
                    s.done = true;
                    s.translator.finish()
                }
            };
            match produced {
                Ok(chunks) => s.pending.extend(chunks),
                Err(e) => {
                    s.done = true;
                    s.pending.clear();
                    return Some((Err(e), s));
                }
            }
        }
    })
    .boxed()
}

/// The `502` for a stream that ended before its terminal event.
pub fn cut_stream(provider: &str) -> ProviderError {
    ProviderError::Upstream {
        status: 502,
        message: format!("the {provider} stream ended before its final event"),
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::openai::Usage;

    /// Emits one usage-only chunk per event; needs the event `0` to finish.
    struct Counter {
        saw_end: bool,
    }

    impl StreamTranslator<u32> for Counter {
        fn on_event(&mut self, event: u32) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
            if event == 0 {
                self.saw_end = true;
                return Ok(Vec::new());
            }
            Ok(vec![ChatCompletionChunk::usage_only(
                "id".into(),
                1,
                "m".into(),
                Usage::new(event, 0),
            )])
        }
        fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>, ProviderError> {
            if self.saw_end {
                Ok(Vec::new())
            } else {
                Err(cut_stream("test"))
            }
        }
    }

    fn run(items: Vec<Result<u32, ProviderError>>) -> Vec<Result<u32, u16>> {
        let events = futures::stream::iter(items).boxed();
        let out: Vec<_> = futures::executor::block_on(
            pump(events, Counter { saw_end: false }).collect::<Vec<_>>(),
        );
        out.into_iter()
            .map(|r| {
                r.map(|c| c.usage.unwrap().prompt_tokens)
                    .map_err(|e| e.status().as_u16())
            })
            .collect()
    }

    #[test]
    fn normal_end_cut_end_and_error_item() {
        assert_eq!(run(vec![Ok(1), Ok(2), Ok(0)]), vec![Ok(1), Ok(2)]);
        assert_eq!(run(vec![Ok(1), Ok(2)]), vec![Ok(1), Ok(2), Err(502)]);
        let boom = ProviderError::Upstream {
            status: 429,
            message: "slow down".into(),
            retry_after: None,
        };
        assert_eq!(run(vec![Ok(1), Err(boom), Ok(2)]), vec![Ok(1), Err(429)]);
    }
}
