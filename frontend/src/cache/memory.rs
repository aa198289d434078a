//! [`MemoryCache`]: responses in this process, bounded in bytes.

use super::{CacheError, CachedResponse, ResponseCache};
use async_trait::async_trait;
use bytes::Bytes;
use moka::future::Cache;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A moka cache of response bodies with a per-entry time to live (each
/// `put` may give its own, LiteLLM's `cache.ttl`) and a bound on the total
/// size of keys and bodies; past it, moka evicts the least useful entries
/// (TinyLFU). For one replica; [`super::RedisCache`] shares entries.
#[derive(Clone)]
pub struct MemoryCache {
    entries: Cache<String, Arc<Entry>>,
}

struct Entry {
    body: Bytes,
    stored_at: SystemTime,
    ttl: Duration,
}

/// Expires each entry `ttl` after it was (last) written.
struct PerEntryTtl;

impl Expiry<String, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        entry: &Arc<Entry>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

impl MemoryCache {
    /// An empty cache holding at most about `max_bytes` of keys and bodies.
    pub fn new(max_bytes: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Arc<Entry>| {
                u32::try_from(key.len() + entry.body.len()).unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        Self { entries }
    }

    /// Number of entries (approximate until moka's pending work runs); for
    /// gauges and tests.
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

#[async_trait]
impl ResponseCache for MemoryCache {
    async fn get(
        &self,
        key: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<CachedResponse>, CacheError> {
        let Some(entry) = self.entries.get(key).await else {
            return Ok(None);
        };
        let response = CachedResponse {
            body: entry.body.clone(),
            stored_at: entry.stored_at,
        };
        Ok(response.fresh_for(max_age).then_some(response))
    }

    async fn put(&self, key: &str, body: Bytes, ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            return Ok(());
        }
        let entry = Entry {
            body,
            stored_at: SystemTime::now(),
            ttl,
        };
        self.entries.insert(key.to_owned(), Arc::new(entry)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const MB: u64 = 1 << 20;

    #[tokio::test]
    async fn hit_then_ttl_expiry() {
        let cache = MemoryCache::new(MB);
        assert!(cache.get("k", None).await.unwrap().is_none());
        cache
            .put(
                "k",
                Bytes::from_static(b"{\"a\":1}"),
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        cache
            .put("long", Bytes::from_static(b"{}"), Duration::from_secs(60))
            .await
            .unwrap();
        let hit = cache.get("k", None).await.unwrap().unwrap();
        assert_eq!(hit.body, Bytes::from_static(b"{\"a\":1}"));
        assert!(hit.age() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(cache.get("k", None).await.unwrap().is_none());
        assert!(cache.get("long", None).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_later_put_replaces_body_and_ttl() {
        let cache = MemoryCache::new(MB);
        cache
            .put("k", Bytes::from_static(b"1"), Duration::from_secs(60))
            .await
            .unwrap();
        cache
            .put("k", Bytes::from_static(b"2"), Duration::from_millis(100))
            .await
            .unwrap();
        assert_eq!(
            cache.get("k", None).await.unwrap().unwrap().body,
            Bytes::from_static(b"2")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(cache.get("k", None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn s_maxage_rejects_older_entries_without_removing_them() {
        let cache = MemoryCache::new(MB);
        cache
            .put("k", Bytes::from_static(b"{}"), Duration::from_secs(60))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(cache
            .get("k", Some(Duration::from_millis(50)))
            .await
            .unwrap()
            .is_none());
        assert!(cache
            .get("k", Some(Duration::from_secs(10)))
            .await
            .unwrap()
            .is_some());
        assert!(cache.get("k", None).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn zero_ttl_stores_nothing() {
        let cache = MemoryCache::new(MB);
        cache
            .put("k", Bytes::from_static(b"{}"), Duration::ZERO)
            .await
            .unwrap();
        assert!(cache.get("k", None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn capacity_is_bounded_in_bytes() {
        let cache = MemoryCache::new(10_000);
        let body = Bytes::from(vec![b'x'; 1_000]);
        for i in 0..100 {
            cache
                .put(&format!("k{i}"), body.clone(), Duration::from_secs(60))
                .await
                .unwrap();
        }
        cache.entries.run_pending_tasks().await;
        assert!(cache.entry_count() <= 10, "{} entries", cache.entry_count());
    }
}
