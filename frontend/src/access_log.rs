//! One access-log line per request, written when the response is done
//! (for a stream: when its body ends or the client leaves), so a server
//! that is working shows it: method, path, status, model, tokens in and
//! out, latency, the caller's key label and the request id.
//!
//! A middleware puts an [`AccessRecord`] into each request; the auth layer
//! fills in the caller's label ([`crate::control::Caller::label`]: the key
//! alias or `sk-...abcd`, never a secret), handlers the model and usage.
//! The line is written when the last clone of the record drops, which for
//! a stream is when hyper drops its body. Only the path is logged, never
//! the query string or headers, so no key can reach the log.
//! `engine serve --disable-log-requests` (vLLM's flag) turns it off.

use crate::openai::Usage;
use crate::provider::generation::UsageChunk;
use crate::provider::ChunkStream;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What is known of one request so far; cheap to clone (shared).
#[derive(Clone)]
pub struct AccessRecord(Arc<Entry>);

struct Entry {
    enabled: bool,
    start: Instant,
    method: String,
    path: String,
    request_id: Option<String>,
    fields: Mutex<Fields>,
}

#[derive(Default)]
struct Fields {
    status: Option<u16>,
    model: Option<String>,
    key: Option<String>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

impl AccessRecord {
    fn update(&self, f: impl FnOnce(&mut Fields)) {
        if let Ok(mut fields) = self.0.fields.lock() {
            f(&mut fields);
        }
    }

    /// The model the request named (after routing).
    pub fn set_model(&self, model: &str) {
        self.update(|f| f.model = Some(model.to_owned()));
    }

    /// The caller's label (a key alias or display name, never a secret).
    pub fn set_key_label(&self, label: String) {
        self.update(|f| f.key = Some(label));
    }

    /// Tokens in and out.
    pub fn set_usage(&self, usage: &Usage) {
        self.update(|f| {
            f.prompt_tokens = Some(usage.prompt_tokens);
            f.completion_tokens = Some(usage.completion_tokens);
        });
    }
}

impl Entry {
    /// The log line for these fields (without the timestamp and level the
    /// logger adds).
    fn line(&self) -> String {
        let fields = self.fields.lock().map(|f| {
            let opt = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
            format!(
                "{} model={} tokens_in={} tokens_out={} latency_ms={} key={}",
                f.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
                f.model.as_deref().unwrap_or("-"),
                opt(f.prompt_tokens),
                opt(f.completion_tokens),
                self.start.elapsed().as_millis(),
                f.key.as_deref().unwrap_or("-"),
            )
        });
        format!(
            "\"{} {}\" {} request_id={}",
            self.method,
            self.path,
            fields.unwrap_or_default(),
            self.request_id.as_deref().unwrap_or("-")
        )
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        if self.enabled {
            tracing::info!(target: "access", "{}", self.line());
        }
    }
}

/// Middleware: gives each request its [`AccessRecord`] and sets the
/// status once the handler answered. `enabled` false keeps the record
/// (handlers always find one) but writes nothing.
pub(crate) async fn track(State(enabled): State<bool>, mut req: Request, next: Next) -> Response {
    let record = AccessRecord(Arc::new(Entry {
        enabled,
        start: Instant::now(),
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        request_id: req
            .extensions()
            .get::<crate::request_id::RequestId>()
            .map(|id| id.as_str().to_owned()),
        fields: Mutex::new(Fields::default()),
    }));
    req.extensions_mut().insert(record.clone());
    let response = next.run(req).await;
    let status = response.status().as_u16();
    record.update(|f| f.status = Some(status));
    response
}

/// Passes `stream` through, noting its usage chunk in `record`; drops the
/// usage-only chunk unless `client_wants_usage` (the route asked the
/// provider for it so the log has token counts). The stream holds the
/// record, so the line is written when the stream ends or is dropped.
pub fn observe<T>(
    stream: ChunkStream<T>,
    record: AccessRecord,
    client_wants_usage: bool,
) -> ChunkStream<T>
where
    T: UsageChunk,
{
    stream
        .filter_map(move |item| {
            let keep = match &item {
                Ok(chunk) => {
                    if let Some(u) = chunk.usage() {
                        record.set_usage(u);
                    }
                    client_wants_usage || !chunk.is_usage_only()
                }
                Err(_) => true,
            };
            futures::future::ready(keep.then_some(item))
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_line_names_everything_but_secrets() {
        let record = AccessRecord(Arc::new(Entry {
            enabled: false,
            start: Instant::now(),
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            request_id: Some("req-1".into()),
            fields: Mutex::new(Fields::default()),
        }));
        record.set_model("smollm2");
        record.set_key_label("team-a-key".into());
        record.set_usage(&Usage::new(12, 7));
        record.update(|f| f.status = Some(200));
        let line = record.0.line();
        assert!(
            line.starts_with("\"POST /v1/chat/completions\" 200 model=smollm2 tokens_in=12 tokens_out=7 latency_ms="),
            "{line}"
        );
        assert!(line.ends_with("key=team-a-key request_id=req-1"), "{line}");
    }
}
