//! [`RedisCache`]: responses in Redis, shared by every replica that uses
//! the same key prefix.

use super::{CacheError, CachedResponse, ResponseCache};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Entries at `<prefix>:<cache key>`, written with `SET ... PX <ttl>` so
/// Redis expires them itself. The value is the storing time in Unix
/// milliseconds, a newline, then the body bytes unchanged (no second JSON
/// encoding of a JSON body). `s-maxage` compares that time with this
/// replica's clock, so replicas should run NTP.
#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    prefix: String,
}

impl RedisCache {
    /// A cache over `conn` (shareable with the rate limiter's) whose keys
    /// start with `prefix`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

fn backend(e: redis::RedisError) -> CacheError {
    CacheError::Backend(e.to_string())
}

fn unix_millis(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(u64::MAX)
}

/// Splits a stored value into its time and body.
fn decode(key: &str, value: Vec<u8>) -> Result<CachedResponse, CacheError> {
    let corrupt = |reason: &str| CacheError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let newline = value
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| corrupt("no timestamp line"))?;
    let millis: u64 = std::str::from_utf8(&value[..newline])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("timestamp is not an integer"))?;
    let mut body = Bytes::from(value);
    let body = body.split_off(newline + 1);
    Ok(CachedResponse {
        body,
        stored_at: UNIX_EPOCH + Duration::from_millis(millis),
    })
}

#[async_trait]
impl ResponseCache for RedisCache {
    async fn get(
        &self,
        key: &str,
        max_age: Option<Duration>,
    ) -> Result<Option<CachedResponse>, CacheError> {
        let full_key = self.key(key);
        let mut conn = self.conn.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&full_key)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        let Some(value) = value else {
            return Ok(None);
        };
        let response = decode(&full_key, value)?;
        Ok(response.fresh_for(max_age).then_some(response))
    }

    async fn put(&self, key: &str, body: Bytes, ttl: Duration) -> Result<(), CacheError> {
        // PX takes whole milliseconds, at least 1.
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 {
            return Ok(());
        }
        let stamp = unix_millis(SystemTime::now()).to_string();
        let mut value = Vec::with_capacity(stamp.len() + 1 + body.len());
        value.extend_from_slice(stamp.as_bytes());
        value.push(b'\n');
        value.extend_from_slice(&body);
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .query_async::<()>(&mut conn)
            .await
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn decode_splits_time_and_body() {
        let r = decode("k", b"1700000000123\n{\"a\":\"b\\nc\"}\n".to_vec()).unwrap();
        assert_eq!(r.body, Bytes::from_static(b"{\"a\":\"b\\nc\"}\n"));
        assert_eq!(
            r.stored_at,
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)
        );
        assert!(matches!(
            decode("k", b"{}".to_vec()),
            Err(CacheError::Corrupt { .. })
        ));
        assert!(matches!(
            decode("k", b"abc\n{}".to_vec()),
            Err(CacheError::Corrupt { .. })
        ));
    }
}
