//! [`SqliteStore`]: the embedded default, one database file next to the
//! gateway.
//!
//! SQLite allows one writer at a time. Rather than let writers spin in
//! SQLite's busy handler, the store sends every write through a pool of a
//! single connection (so they queue fairly in sqlx's pool) and reads
//! through a pool of several, which WAL lets run beside the writer. The
//! busy timeout (5 s) then only matters when another process opens the
//! same file.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection};

use super::sql::{self, Dialect, Param, SqlConn, SqlRow};
use super::types::{
    DailySpend, KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam, NewUser, SpendGroup, SpendLog,
    SpendQuery, TeamRecord, TeamUpdate, UserRecord, UserUpdate,
};
use super::{Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Readers beside the single writer.
const READERS: u32 = 8;

/// A [`Store`] in one SQLite file (or in memory, for tests).
///
/// ```no_run
/// # async fn demo() -> Result<(), frontend::store::StoreError> {
/// let store = frontend::store::SqliteStore::connect("engine.db").await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// One connection: every write.
    writer: SqlitePool,
    /// Several connections: every read (the same pool as `writer` in
    /// memory, where each connection would otherwise see its own
    /// database).
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database at `path_or_url`, a file
    /// path or a `sqlite:` URL, in WAL mode with a 5 s busy timeout, and
    /// brings its schema up to date. `sqlite::memory:` gives
    /// [`SqliteStore::in_memory`].
    pub async fn connect(path_or_url: &str) -> Result<Self, StoreError> {
        if path_or_url.contains(":memory:") || path_or_url.contains("mode=memory") {
            return Self::in_memory().await;
        }
        let options = if path_or_url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(path_or_url)?
        } else {
            SqliteConnectOptions::new().filename(path_or_url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        Ok(Self { writer, reader })
    }

    /// A private database in memory that lives as long as this store (and
    /// its clones): for tests. It has a single connection, so reads and
    /// writes take turns.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
        })
    }

    /// Waits for running statements and closes every connection (the WAL
    /// is checkpointed into the file); calls made afterwards fail.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        sql::create_key(&mut *self.writer.acquire().await?, key).await
    }

    async fn key(&self, token_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        sql::key(&mut *self.reader.acquire().await?, token_hash).await
    }

    async fn update_key(
        &self,
        token_hash: &str,
        update: KeyUpdate,
    ) -> Result<KeyRecord, StoreError> {
        let mut conn = self.writer.acquire().await?;
        sql::update_key(&mut *conn, token_hash, update, Utc::now()).await
    }

    async fn delete_keys(&self, token_hashes: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = sql::delete_keys(&mut *tx, token_hashes).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        sql::list_keys(&mut *self.reader.acquire().await?, &filter).await
    }

    async fn count_keys(&self, filter: KeyFilter) -> Result<u64, StoreError> {
        sql::count_keys(&mut *self.reader.acquire().await?, &filter).await
    }

    async fn create_team(&self, team: NewTeam) -> Result<TeamRecord, StoreError> {
        sql::create_team(&mut *self.writer.acquire().await?, team).await
    }

    async fn team(&self, team_id: &str) -> Result<Option<TeamRecord>, StoreError> {
        sql::team(&mut *self.reader.acquire().await?, team_id).await
    }

    async fn update_team(
        &self,
        team_id: &str,
        update: TeamUpdate,
    ) -> Result<TeamRecord, StoreError> {
        let mut conn = self.writer.acquire().await?;
        sql::update_team(&mut *conn, team_id, update, Utc::now()).await
    }

    async fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        sql::list_teams(&mut *self.reader.acquire().await?).await
    }

    async fn delete_teams(&self, team_ids: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = sql::delete_teams(&mut *tx, team_ids).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        sql::create_user(&mut *self.writer.acquire().await?, user).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        sql::user(&mut *self.reader.acquire().await?, user_id).await
    }

    async fn update_user(
        &self,
        user_id: &str,
        update: UserUpdate,
    ) -> Result<UserRecord, StoreError> {
        let mut conn = self.writer.acquire().await?;
        sql::update_user(&mut *conn, user_id, update, Utc::now()).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        sql::list_users(&mut *self.reader.acquire().await?).await
    }

    async fn delete_users(&self, user_ids: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let deleted = sql::delete_users(&mut *tx, user_ids).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn record_spend(&self, logs: &[SpendLog]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sql::record_spend(&mut *tx, logs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn spend_logs(&self, query: &SpendQuery) -> Result<Vec<SpendLog>, StoreError> {
        sql::spend_logs(&mut *self.reader.acquire().await?, query).await
    }

    async fn total_spend(&self, query: &SpendQuery) -> Result<f64, StoreError> {
        sql::total_spend(&mut *self.reader.acquire().await?, query).await
    }

    async fn daily_spend(
        &self,
        group_by: SpendGroup,
        query: &SpendQuery,
    ) -> Result<Vec<DailySpend>, StoreError> {
        sql::daily_spend(&mut *self.reader.acquire().await?, group_by, query).await
    }

    async fn reset_due_budgets(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let reset = sql::reset_due_budgets(&mut *tx, now).await?;
        tx.commit().await?;
        Ok(reset)
    }
}

/// Binds [`Param`]s with SQLite's types: JSON as text, booleans as 0/1,
/// times as RFC 3339 text.
fn bind<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments<'q>>,
    params: Vec<Param>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for param in params {
        query = match param {
            Param::Text(v) => query.bind(v),
            Param::Real(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
            Param::Bool(v) => query.bind(v),
            Param::Time(v) => query.bind(v),
            Param::Json(v) => query.bind(v.to_string()),
        };
    }
    query
}

#[async_trait::async_trait]
impl SqlConn for SqliteConnection {
    type Row = SqliteRow;
    const DIALECT: Dialect = Dialect::Sqlite;

    async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, sqlx::Error> {
        let done = bind(sqlx::query(sql), params).execute(&mut *self).await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all(
        &mut self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        bind(sqlx::query(sql), params).fetch_all(&mut *self).await
    }
}

impl SqlRow for SqliteRow {
    fn text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }

    fn real(&self, col: &str) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(col)
    }

    fn int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(col)
    }

    fn boolean(&self, col: &str) -> Result<Option<bool>, sqlx::Error> {
        self.try_get(col)
    }

    fn time(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        self.try_get(col)
    }

    fn json(&self, col: &str) -> Result<Option<Value>, sqlx::Error> {
        let text: Option<String> = self.try_get(col)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| sqlx::Error::ColumnDecode {
                index: col.to_owned(),
                source: Box::new(e),
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::store::SpendStatus;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn in_memory_round_trip() {
        let store = SqliteStore::in_memory().await.unwrap();
        let key = NewKey {
            models: vec!["gpt-4o".into()],
            budget_duration: Some("1d".parse().unwrap()),
            ..NewKey::new("h1", "sk-...0001", t("2025-01-01T00:00:00.123456789Z"))
        };
        let created = store.create_key(key).await.unwrap();
        // Times are kept to the microsecond, as PostgreSQL does.
        assert_eq!(created.created_at, t("2025-01-01T00:00:00.123456Z"));
        assert_eq!(
            created.budget_reset_at,
            Some(t("2025-01-02T00:00:00.123456Z"))
        );
        assert_eq!(store.key("h1").await.unwrap(), Some(created));
        let log = SpendLog {
            request_id: "r1".into(),
            token_hash: Some("h1".into()),
            key_alias: None,
            team_id: None,
            user_id: None,
            model: "gpt-4o".into(),
            provider_model: "openai/gpt-4o".into(),
            prompt_tokens: 3,
            completion_tokens: 4,
            cost: 0.5,
            start_time: t("2025-01-01T01:00:00Z"),
            end_time: t("2025-01-01T01:00:01Z"),
            cache_hit: false,
            status: SpendStatus::Success,
        };
        store.record_spend(&[log.clone(), log]).await.unwrap();
        assert_eq!(store.key("h1").await.unwrap().unwrap().spend, 0.5);
    }

    #[tokio::test]
    async fn memory_url_is_in_memory() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        assert!(store.list_teams().await.unwrap().is_empty());
    }
}
