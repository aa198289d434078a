//! The cache of key, team and user records in front of the store, safe
//! against a load that races a write.
//!
//! A record is read on a cache miss and kept [`RECORD_TTL`]. The danger is
//! a load that read a row before a spend batch (or an admin change) was
//! written and finishes after the cache was invalidated for that write: it
//! would put the old row back, and budget checks would then see old stored
//! spend while the ledger had already dropped the written cost (an
//! undercount for up to the TTL). So every invalidation bumps a
//! generation, under the same lock a load takes to insert; a load whose
//! generation moved reads again instead of caching what it read.

use crate::store::{KeyRecord, StoreError, TeamRecord, UserRecord};
use moka::sync::Cache;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long a key, team or user record is reused before it is read from
/// the store again. Changes made through this gateway invalidate at once;
/// another replica's changes (a deleted key, spend) show within this time.
pub const RECORD_TTL: Duration = Duration::from_secs(5);

/// How many times a load that raced an invalidation reads again before it
/// answers with what it read, uncached.
const LOAD_TRIES: usize = 3;

/// The three record caches and their generation.
pub struct Records {
    keys: Cache<String, Option<Arc<KeyRecord>>>,
    teams: Cache<String, Option<Arc<TeamRecord>>>,
    users: Cache<String, Option<Arc<UserRecord>>>,
    /// Bumped by every invalidation; a load caches only if it did not move.
    generation: Mutex<u64>,
}

impl Default for Records {
    fn default() -> Self {
        Self::new()
    }
}

/// Which cache an id belongs to.
#[derive(Debug, Clone, Copy)]
pub enum RecordKind {
    /// Virtual keys, by token hash.
    Key,
    /// Teams, by id.
    Team,
    /// Users, by id.
    User,
}

fn cache<V: Clone + Send + Sync + 'static>() -> Cache<String, V> {
    Cache::builder()
        .max_capacity(100_000)
        .time_to_live(RECORD_TTL)
        .build()
}

impl Records {
    /// Empty caches.
    pub fn new() -> Self {
        Self {
            keys: cache(),
            teams: cache(),
            users: cache(),
            generation: Mutex::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, u64> {
        self.generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forgets the records named by `ids` (after a write changed them).
    pub fn invalidate<'a>(&self, ids: impl IntoIterator<Item = (RecordKind, &'a str)>) {
        let mut generation = self.lock();
        *generation += 1;
        for (kind, id) in ids {
            match kind {
                RecordKind::Key => self.keys.invalidate(id),
                RecordKind::Team => self.teams.invalidate(id),
                RecordKind::User => self.users.invalidate(id),
            }
        }
    }

    /// Forgets every record (budgets were reset).
    pub fn invalidate_all(&self) {
        let mut generation = self.lock();
        *generation += 1;
        self.keys.invalidate_all();
        self.teams.invalidate_all();
        self.users.invalidate_all();
    }

    /// The key with this token hash, from the cache or `load`.
    pub async fn key<F, Fut>(
        &self,
        token: &str,
        load: F,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<KeyRecord>, StoreError>>,
    {
        self.get_or_load(&self.keys, token, load).await
    }

    /// The team with this id, from the cache or `load`.
    pub async fn team<F, Fut>(
        &self,
        id: &str,
        load: F,
    ) -> Result<Option<Arc<TeamRecord>>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<TeamRecord>, StoreError>>,
    {
        self.get_or_load(&self.teams, id, load).await
    }

    /// The user with this id, from the cache or `load`.
    pub async fn user<F, Fut>(
        &self,
        id: &str,
        load: F,
    ) -> Result<Option<Arc<UserRecord>>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<UserRecord>, StoreError>>,
    {
        self.get_or_load(&self.users, id, load).await
    }

    async fn get_or_load<T, F, Fut>(
        &self,
        cache: &Cache<String, Option<Arc<T>>>,
        id: &str,
        load: F,
    ) -> Result<Option<Arc<T>>, StoreError>
    where
        T: Send + Sync + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>, StoreError>>,
    {
        if let Some(hit) = cache.get(id) {
            return Ok(hit);
        }
        let mut loaded = None;
        for _ in 0..LOAD_TRIES {
            let start = *self.lock();
            let record = load().await?.map(Arc::new);
            let generation = self.lock();
            if *generation == start {
                cache.insert(id.to_owned(), record.clone());
                return Ok(record);
            }
            // A write landed while we read: the row may predate it.
            drop(generation);
            loaded = Some(record);
        }
        Ok(loaded.flatten())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use chrono::Utc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn key(spend: f64) -> KeyRecord {
        KeyRecord {
            token_hash: "h".into(),
            key_name: "sk-...abcd".into(),
            key_alias: None,
            models: Vec::new(),
            max_budget: Some(1.0),
            spend,
            budget_duration: None,
            budget_reset_at: None,
            rpm_limit: None,
            tpm_limit: None,
            expires: None,
            metadata: serde_json::Value::Null,
            team_id: None,
            user_id: None,
            blocked: false,
            created_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn a_load_that_raced_a_write_is_not_cached() {
        let records = Records::new();
        let reads = AtomicU32::new(0);
        // The first read returns the row as it was before a write, and the
        // write's invalidation lands before that read finishes.
        let got = records
            .key("h", || {
                let n = reads.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    records.invalidate([(RecordKind::Key, "h")]);
                }
                async move { Ok(Some(key(if n == 0 { 0.0 } else { 5.0 }))) }
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.spend, 5.0);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // The second read was cached.
        let cached = records
            .key("h", || async { panic!("should be cached") })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cached.spend, 5.0);
    }
}
