//! What every adapter does the same way over HTTP: one pooled client, the
//! mapping of transport failures and error statuses to [`ProviderError`]
//! (keeping the upstream's status and message), and the framing of
//! streamed bodies (SSE events, NDJSON lines).
//!
//! Timeouts: a whole answer ([`send`]) must arrive within the
//! deployment's `timeout`. A stream ([`send_stream`]) has no overall
//! limit, which would cut every long answer: its response head must come
//! within the deployment's `stream_timeout` (time to first byte), and then
//! every read of the body within the same time again ([`body_chunks`],
//! an idle-read timeout, as the `httpx` read timeout LiteLLM relies on
//! behaves). A stream that goes silent longer ends with a `504` item.

use crate::error::ProviderError;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// The shared client: pooled keep-alive connections with `TCP_NODELAY`
/// (DESIGN.md's 44 ms Nagle stall applies to clients too). Redirects are
/// not followed, as LiteLLM's `httpx` and the providers' SDKs do not: a
/// provider API answers where it is, a 3xx is an error to see, and
/// following would send the key to another host (and costs a URL parse
/// on every request).
pub fn client() -> Result<reqwest::Client, ProviderError> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| ProviderError::Internal {
            message: format!("cannot build the HTTP client: {e}"),
        })
}

/// Sends `req` with `timeout` for the whole response (head and body) and
/// returns it when its status is a success; an error status becomes
/// [`error_from_response`], a transport failure [`transport_error`]. For
/// whole answers; streams use [`send_stream`].
pub async fn send(
    req: RequestBuilder,
    timeout: Duration,
    error_map: ErrorMap,
) -> Result<Response, ProviderError> {
    let resp = req
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(error_from_response(resp, error_map).await)
    }
}

/// Sends a streaming request: `ttfb` bounds the wait for the response
/// head; the body has no overall limit (read it through [`body_chunks`],
/// [`sse_events`] or [`ndjson_values`] with an idle timeout). Statuses as
/// [`send`].
pub async fn send_stream(
    req: RequestBuilder,
    ttfb: Duration,
    error_map: ErrorMap,
) -> Result<Response, ProviderError> {
    let resp = tokio::time::timeout(ttfb, req.send())
        .await
        .map_err(|_| ProviderError::Timeout)?
        .map_err(|e| transport_error(&e))?;
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(
            tokio::time::timeout(ttfb, error_from_response(resp, error_map))
                .await
                .unwrap_or(ProviderError::Timeout),
        )
    }
}

/// A streamed body's bytes, each read waiting at most `idle`: a silence
/// longer than that ends the stream with a [`ProviderError::Timeout`]
/// item, a broken connection with a `502` item.
pub fn body_chunks(
    resp: Response,
    idle: Duration,
) -> BoxStream<'static, Result<Bytes, ProviderError>> {
    futures::stream::unfold(Some(resp.bytes_stream()), move |bytes| async move {
        let mut bytes = bytes?;
        match tokio::time::timeout(idle, bytes.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(bytes))),
            Ok(Some(Err(e))) => Some((Err(broken_stream(&e)), None)),
            Ok(None) => None,
            Err(_) => {
                tracing::warn!(
                    idle_s = idle.as_secs_f64(),
                    "upstream stream idle too long; cut"
                );
                Some((Err(ProviderError::Timeout), None))
            }
        }
    })
    .boxed()
}

/// The `502` of a connection that broke mid-body.
fn broken_stream(e: &reqwest::Error) -> ProviderError {
    ProviderError::Upstream {
        status: 502,
        message: format!("the upstream stream broke: {e}"),
        retry_after: None,
    }
}

/// Reads a successful response's JSON body (the caller's `timeout` on the
/// request covers it); a body that is not the JSON expected is a `502`.
pub async fn json_body<T: serde::de::DeserializeOwned>(resp: Response) -> Result<T, ProviderError> {
    let bytes = resp.bytes().await.map_err(|e| transport_error(&e))?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(format!("{e}"), &bytes))
}

/// The `502` for an upstream body we cannot parse; carries a short prefix
/// of the body so the log shows what came back.
pub fn malformed(reason: String, body: &[u8]) -> ProviderError {
    let shown: String = String::from_utf8_lossy(body).chars().take(200).collect();
    ProviderError::Upstream {
        status: 502,
        message: format!("the upstream sent a malformed response ({reason}): {shown}"),
        retry_after: None,
    }
}

/// A failure before any status arrived: a timeout is `504`, a refused or
/// reset connection `503` (the router retries both).
pub fn transport_error(e: &reqwest::Error) -> ProviderError {
    if e.is_timeout() {
        ProviderError::Timeout
    } else if e.is_decode() {
        // reqwest's text names the URL (an internal `api_base`): logged.
        tracing::warn!(error = %e, "the upstream's response could not be decoded");
        ProviderError::Upstream {
            status: 502,
            message: "the upstream sent a malformed response".to_owned(),
            retry_after: None,
        }
    } else {
        ProviderError::Unavailable {
            message: format!("cannot reach the upstream: {e}"),
        }
    }
}

/// Turns an error response into a [`ProviderError`] that keeps the status
/// and the upstream's message: context-length and content-policy errors
/// get their own variants (the router's fallbacks key on them), 429 and
/// 503 keep `Retry-After`.
pub async fn error_from_response(resp: Response, error_map: ErrorMap) -> ProviderError {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = resp.bytes().await.unwrap_or_default();
    error_map(status, retry_after, &body)
}

/// Maps an error response (status, `Retry-After`, body) to a
/// [`ProviderError`]: [`error_from_parts`] for most providers; Azure adds
/// its `content_filter` code, Gemini its retry delay in the body.
pub type ErrorMap = fn(StatusCode, Option<u64>, &[u8]) -> ProviderError;

/// [`error_from_response`] over parts already read (streams that carry an
/// error event use it too).
pub fn error_from_parts(
    status: StatusCode,
    retry_after: Option<u64>,
    body: &[u8],
) -> ProviderError {
    let message = error_message(body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text.chars().take(500).collect()
        }
    });
    let lower = message.to_lowercase();
    if status == StatusCode::BAD_REQUEST && is_context_length(&lower) {
        return ProviderError::ContextLengthExceeded { message };
    }
    if status == StatusCode::BAD_REQUEST && is_content_policy(&lower) {
        return ProviderError::ContentPolicy { message };
    }
    ProviderError::Upstream {
        status: status.as_u16(),
        message,
        retry_after,
    }
}

/// The message inside the error shapes providers use: OpenAI's and
/// Anthropic's `{"error": {"message"}}`, Gemini's (same, plus `status`),
/// Bedrock's `{"message"}` / `{"Message"}`, Ollama's `{"error": "..."}`,
/// Cohere's `{"message"}`.
fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let v = match v {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        other => other,
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    v.pointer("/error/message")
        .and_then(text)
        .or_else(|| v.get("error").and_then(text))
        .or_else(|| v.get("message").and_then(text))
        .or_else(|| v.get("Message").and_then(text))
        .or_else(|| v.get("detail").and_then(text))
}

fn is_context_length(message: &str) -> bool {
    [
        "context length",
        "context_length",
        "context window",
        "maximum context",
        "too many tokens",
        "prompt is too long",
        "input is too long",
        "exceeds the maximum number of tokens",
    ]
    .iter()
    .any(|p| message.contains(p))
}

fn is_content_policy(message: &str) -> bool {
    [
        "content_policy",
        "content policy",
        "content_filter",
        "content management policy",
    ]
    .iter()
    .any(|p| message.contains(p))
}

/// `Retry-After` in seconds (the delta-seconds form; an HTTP date is rare
/// from these APIs and ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| !s.is_nan())
        .map(|s| s.clamp(0.0, MAX_RETRY_AFTER_SECS as f64).ceil() as u64)
}

/// Largest `Retry-After` taken from an upstream, in seconds (an hour):
/// `inf` or `1e30` become this, so no upstream can stall a request or
/// cool a deployment down for ever.
pub const MAX_RETRY_AFTER_SECS: u64 = 3600;

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    /// The `event:` field (Anthropic's `message_start`, ...); empty when
    /// absent.
    pub event: String,
    /// The `data:` payload.
    pub data: String,
}

/// The events of an SSE body, each read within `idle` ([`body_chunks`]).
/// A body cut mid-way ends the stream with a `502` error item (so the
/// router and the client can tell it from a normal end only by what the
/// adapter expected: adapters check that they saw their terminal event);
/// a silence longer than `idle` with a `504` item.
pub fn sse_events(
    resp: Response,
    idle: Duration,
) -> BoxStream<'static, Result<SseEvent, ProviderError>> {
    use eventsource_stream::{EventStreamError, Eventsource};
    body_chunks(resp, idle)
        .eventsource()
        .map(|item| match item {
            Ok(ev) => Ok(SseEvent {
                event: ev.event,
                data: ev.data,
            }),
            Err(EventStreamError::Transport(e)) => Err(e),
            Err(e) => Err(ProviderError::Upstream {
                status: 502,
                message: format!("the upstream stream broke: {e}"),
                retry_after: None,
            }),
        })
        .boxed()
}

/// The JSON values of an NDJSON body (Ollama streams, Gemini's array
/// streaming is SSE with `alt=sse`), each read within `idle`. A line that
/// is not JSON is a `502`.
pub fn ndjson_values(
    resp: Response,
    idle: Duration,
) -> BoxStream<'static, Result<Value, ProviderError>> {
    let bytes = body_chunks(resp, idle);
    futures::stream::unfold(
        (bytes, Vec::<u8>::new(), false),
        |(mut bytes, mut buf, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = &line[..line.len() - 1];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let item =
                        serde_json::from_slice(line).map_err(|e| malformed(format!("{e}"), line));
                    return Some((item, (bytes, buf, done)));
                }
                if done {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let rest = std::mem::take(&mut buf);
                    let item =
                        serde_json::from_slice(&rest).map_err(|e| malformed(format!("{e}"), &rest));
                    return Some((item, (bytes, buf, true)));
                }
                match bytes.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    Some(Err(err)) => {
                        return Some((Err(err), (bytes, Vec::new(), true)));
                    }
                    None => done = true,
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn error_shapes_keep_status_and_message() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"error":{"message":"bad key","type":"x"}}"#, "bad key"),
            (
                br#"{"type":"error","error":{"type":"x","message":"anthropic says"}}"#,
                "anthropic says",
            ),
            (br#"{"message":"bedrock says"}"#, "bedrock says"),
            (br#"{"error":"ollama says"}"#, "ollama says"),
            (
                br#"[{"error":{"code":403,"message":"gemini says"}}]"#,
                "gemini says",
            ),
        ];
        for (body, msg) in cases {
            let e = error_from_parts(StatusCode::FORBIDDEN, None, body);
            assert_eq!(
                e,
                ProviderError::Upstream {
                    status: 403,
                    message: msg.to_owned(),
                    retry_after: None
                }
            );
        }
    }

    #[test]
    fn context_length_and_content_policy_get_their_variants() {
        let e = error_from_parts(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":{"message":"This model's maximum context length is 8192 tokens"}}"#,
        );
        assert!(matches!(e, ProviderError::ContextLengthExceeded { .. }));
        let e = error_from_parts(
            StatusCode::BAD_REQUEST,
            None,
            br#"{"error":{"message":"blocked by the content_filter"}}"#,
        );
        assert!(matches!(e, ProviderError::ContentPolicy { .. }));
    }

    #[test]
    fn retry_after_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&h), Some(2));
        h.insert(RETRY_AFTER, "0.5".parse().unwrap());
        assert_eq!(retry_after(&h), Some(1));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
        for huge in ["inf", "1e30", "18446744073709551616"] {
            h.insert(RETRY_AFTER, huge.parse().unwrap());
            assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER_SECS), "{huge}");
        }
        h.insert(RETRY_AFTER, "NaN".parse().unwrap());
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "-inf".parse().unwrap());
        assert_eq!(retry_after(&h), Some(0));
    }
}
