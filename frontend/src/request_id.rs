//! The request id: one per HTTP request, taken from the client's
//! `x-request-id` when it is a sane token, else generated (`req-<uuid>`).
//! It is answered in the `x-request-id` header of every response, named in
//! the tracing span of every log line the request causes, and quoted in the
//! body of errors whose details stay in the log (`crate::error`): the
//! client gets a stable message and the id, the operator finds the rest.
//!
//! The id is also a task-local ([`RequestId::current`]) for the handler and,
//! through a body wrapper, for every poll of a streamed response, so a
//! mid-stream error event quotes it too.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tracing::Instrument as _;

/// The request and response header.
pub const HEADER: &str = "x-request-id";

/// The longest client-chosen id kept (a longer one is replaced).
const MAX_CLIENT_ID: usize = 128;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// One request's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(format!("req-{}", uuid::Uuid::new_v4().simple()).into())
    }

    /// The client's id, when it is 1 to 128 characters of `A-Z a-z 0-9 .
    /// _ : -` (anything else could forge log lines or headers).
    pub fn from_client(value: &str) -> Option<Self> {
        let sane = !value.is_empty()
            && value.len() <= MAX_CLIENT_ID
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        sane.then(|| Self(value.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the request being handled on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Runs `fut` with this id as [`Self::current`] (the middleware does
    /// this for every request).
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Middleware: assigns the id, runs the request in its span and scope,
/// answers the header, and keeps the scope for the body's polls.
pub async fn assign(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::from_client)
        .unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let mut resp = CURRENT
        .scope(id.clone(), next.run(req))
        .instrument(span.clone())
        .await;
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        resp.headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }
    resp.map(|inner| Body::new(Scoped { id, span, inner }))
}

/// A response body polled inside its request's span and id scope.
struct Scoped {
    id: RequestId,
    span: tracing::Span,
    inner: Body,
}

impl http_body::Body for Scoped {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let _entered = this.span.enter();
        let inner = &mut this.inner;
        CURRENT.sync_scope(this.id.clone(), || Pin::new(inner).poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn client_ids_are_kept_only_when_sane() {
        assert_eq!(
            RequestId::from_client("trace-42:a.b_c").unwrap().as_str(),
            "trace-42:a.b_c"
        );
        for bad in ["", "a b", "a\nb", "ü", &"x".repeat(129), "a\"b"] {
            assert!(RequestId::from_client(bad).is_none(), "{bad:?}");
        }
        let a = RequestId::generate();
        assert!(a.as_str().starts_with("req-") && a != RequestId::generate());
    }

    #[tokio::test]
    async fn current_is_set_inside_the_scope_only() {
        assert!(RequestId::current().is_none());
        let id = RequestId::generate();
        let seen = id.clone().scope(async { RequestId::current() }).await;
        assert_eq!(seen, Some(id));
    }
}
