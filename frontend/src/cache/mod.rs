//! The response cache: LiteLLM's exact-match caching of whole responses,
//! in memory or in Redis.
//!
//! What it owns:
//! - [`cache_key`]: which requests count as "the same" (model, messages
//!   and every parameter that can change the answer; not `stream`, `user`,
//!   `metadata`, ... — see [`IGNORED_FIELDS`]);
//! - [`CacheControls`]: LiteLLM's per-request `"cache": {...}` object
//!   (`no-cache`, `no-store`, `ttl`, `s-maxage`, `namespace`), parsed
//!   strictly so a typo is a `400` rather than a silent miss;
//! - [`ResponseCache`] and its two stores, [`MemoryCache`] (one replica,
//!   bounded, per-entry ttl) and [`RedisCache`] (shared by replicas).
//!
//! The flow the integrator wires (as LiteLLM does): parse the controls;
//! unless `no-cache`, `get(key, s_maxage)` and answer a hit without calling
//! a provider; on a miss call the provider and, unless `no-store`,
//! `put(key, body, ttl.unwrap_or(default))` a successful, complete,
//! non-streamed body. Bodies are the JSON bytes of the response, stored and
//! returned unchanged.
//!
//! It must not know about routes, providers or config; a store error is a
//! [`CacheError`] the caller logs and treats as a miss (LiteLLM never fails
//! a request because of its cache).

mod controls;
mod key;
mod memory;
mod redis_backend;

pub use controls::CacheControls;
pub use key::{cache_key, IGNORED_FIELDS};
pub use memory::MemoryCache;
pub use redis_backend::RedisCache;

use async_trait::async_trait;
use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// A stored response and when it was stored (for `s-maxage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedResponse {
    /// The response body as the provider's answer was serialized.
    pub body: Bytes,
    /// When [`ResponseCache::put`] stored it (the writer's clock).
    pub stored_at: SystemTime,
}

impl CachedResponse {
    /// How old the entry is now; zero if `stored_at` is in the future (a
    /// replica's clock ahead of ours).
    pub fn age(&self) -> Duration {
        SystemTime::now()
            .duration_since(self.stored_at)
            .unwrap_or_default()
    }

    /// True when the entry is no older than `max_age` (LiteLLM's
    /// `s-maxage`), or when there is no such bound.
    pub fn fresh_for(&self, max_age: Option<Duration>) -> bool {
        max_age.is_none_or(|max| self.age() <= max)
    }
}

/// What a cache store fails with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CacheError {
    /// The store (Redis) did not answer or refused the command.
    #[error("response cache unavailable: {0}")]
    Backend(String),
    /// An entry exists but is not in the stored format (another program
    /// wrote the key); treated as a miss by callers.
    #[error("response cache entry {key} is malformed: {reason}")]
    Corrupt {
        /// The store's key.
        key: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// A store of whole responses by [`cache_key`].
#[async_trait]
pub trait ResponseCache: Send + Sync {
    /// The entry under `key`, if present, unexpired and no older than
    /// `max_age` (`s-maxage`; `None` accepts any age).
    async fn get(
        &self,
        key: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<CachedResponse>, CacheError>;

    /// Stores `body` under `key` for `ttl`, replacing any entry; a zero
    /// `ttl` stores nothing.
    async fn put(&self, key: &str, body: Bytes, ttl: Duration) -> Result<(), CacheError>;
}
