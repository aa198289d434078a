//! Turns a provider's [`ChunkStream`] into an OpenAI-style SSE body:
//! `data: {chunk}` per item, then `data: [DONE]`.
//!
//! The body owns the provider stream, so when the client disconnects and
//! hyper drops the body, the provider stream is dropped with it and the
//! provider aborts the request (the [`crate::Provider`] contract). A
//! mid-stream `Err` becomes one `data: {"error": {...}}` event (the same
//! body a non-streaming error would have had; the status is already 200)
//! and the stream ends there, without `[DONE]`, and the provider stream is
//! dropped at once.

use crate::error::ProviderError;
use crate::provider::ChunkStream;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use std::convert::Infallible;

/// The streaming response for `stream`.
pub(crate) fn response<T>(stream: ChunkStream<T>) -> Response
where
    T: Serialize + Send + 'static,
{
    let events = futures::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        let (event, next) = match stream.next().await {
            Some(Ok(chunk)) => match Event::default().json_data(&chunk) {
                Ok(event) => (event, Some(stream)),
                Err(e) => (
                    error_event(&ProviderError::Internal {
                        message: format!("could not serialize a chunk: {e}"),
                    }),
                    None,
                ),
            },
            Some(Err(e)) => (error_event(&e), None),
            None => (Event::default().data("[DONE]"), None),
        };
        Some((Ok::<_, Infallible>(event), next))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The SSE event carrying a mid-stream error.
fn error_event(e: &ProviderError) -> Event {
    tracing::warn!(error = %e, "provider stream failed mid-response");
    Event::default()
        .json_data(e.body())
        .unwrap_or_else(|_| Event::default().data(r#"{"error":{"message":"internal error","type":"server_error","param":null,"code":"internal_error"}}"#))
}
