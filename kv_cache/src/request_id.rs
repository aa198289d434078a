//! The request identifier shared by the KV cache manager and the scheduler.
//!
//! It lives here, at the bottom of the dependency chain
//! (`kv_cache <- scheduler <- engine`), so the per-request block tables and
//! the scheduler's request map use one key type without conversions. It is an
//! `Arc<str>`: the scheduler copies ids into every `SchedulerOutput`, and a
//! reference-count bump is cheaper than a string allocation per request per
//! step.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// A request's id: cheap to clone, compared and hashed by its text.
///
/// ```
/// use kv_cache::RequestId;
/// let id = RequestId::from("req-1");
/// assert_eq!(id.as_str(), "req-1");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Arc<str>);

impl RequestId {
    /// Wraps any string-like id; the engine usually passes its own id text.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The id as text, for logs and for the wire form in `proto`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for RequestId {
    fn from(id: &str) -> Self {
        Self(Arc::from(id))
    }
}

impl From<String> for RequestId {
    fn from(id: String) -> Self {
        Self(Arc::from(id))
    }
}

impl Borrow<str> for RequestId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
