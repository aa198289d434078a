//! The response cache as the routes use it: the request's `cache`
//! controls are taken out of the body (no provider should see them), the
//! key is computed from what is actually sent (after guardrails), hits and
//! stores go to the configured backend. A cache failure is logged and
//! treated as a miss: LiteLLM never fails a request because of its cache.

use super::{ControlError, ControlPlane};
use crate::cache::{cache_key, CacheControls};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

/// A request's cache controls, before its key is known.
pub struct CacheRequest {
    route: &'static str,
    controls: CacheControls,
}

/// A request's cache key and controls.
pub struct CacheLookup {
    key: String,
    controls: CacheControls,
}

impl CacheRequest {
    /// The lookup for `request` as it will be sent.
    pub fn keyed<T: Serialize>(self, request: &T) -> CacheLookup {
        let mut value = serde_json::to_value(request).unwrap_or(Value::Null);
        // The controls were taken out of the body; the namespace still
        // separates entries.
        if let (Some(ns), Value::Object(map)) = (&self.controls.namespace, &mut value) {
            map.insert("cache".to_owned(), serde_json::json!({"namespace": ns}));
        }
        CacheLookup {
            key: cache_key(self.route, &value),
            controls: self.controls,
        }
    }
}

impl ControlPlane {
    /// Takes `cache` out of the request's extra fields and, when a cache is
    /// configured, returns what the lookup needs. A malformed `cache`
    /// object is a 400 even without a cache.
    pub fn cache_lookup(
        &self,
        route: &'static str,
        extra: &mut Map<String, Value>,
    ) -> Result<Option<CacheRequest>, ControlError> {
        let controls = CacheControls::parse(extra.remove("cache").as_ref())
            .map_err(|e| ControlError::invalid("cache", e.to_string()))?;
        Ok(self.cache().map(|_| CacheRequest { route, controls }))
    }

    /// The cached body for `lookup`, unless the request said `no-cache`.
    pub async fn cached(&self, lookup: &CacheLookup) -> Option<Value> {
        let cache = self.cache()?;
        if !lookup.controls.reads() {
            return None;
        }
        match cache
            .backend
            .get(&lookup.key, lookup.controls.s_maxage)
            .await
        {
            Ok(Some(hit)) => serde_json::from_slice(&hit.body).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "response cache lookup failed; treating as a miss");
                None
            }
        }
    }

    /// Stores `response` for `lookup`, unless the request said `no-store`.
    pub async fn store_cached<T: Serialize>(&self, lookup: &CacheLookup, response: &T) {
        let Some(cache) = self.cache() else {
            return;
        };
        if !lookup.controls.writes() {
            return;
        }
        let Ok(body) = serde_json::to_vec(response) else {
            return;
        };
        let ttl = lookup.controls.ttl_or(cache.default_ttl);
        if let Err(e) = cache.backend.put(&lookup.key, Bytes::from(body), ttl).await {
            tracing::warn!(error = %e, "response cache store failed");
        }
    }
}
