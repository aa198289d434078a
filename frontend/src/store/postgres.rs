//! [`PostgresStore`]: the store several gateway replicas share.
//!
//! Concurrency comes from PostgreSQL's row locks: `spend = spend + $1`
//! under READ COMMITTED adds to the latest committed value, duplicate
//! `request_id`s wait for the first insert and then do nothing, and
//! budget resets re-check `budget_reset_at <= now` on the row they lock, so
//! two replicas resetting at once reset each record once.
//!
//! [`PostgresStore::connect_with_schema`] keeps every table (and sqlx's
//! migration table) in one schema, so tests, or several gateways, can share
//! a database without seeing each other.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, Postgres, Row};

use super::sql::{self, Dialect, Param, SqlConn, SqlRow};
use super::types::{
    DailySpend, KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam, NewUser, SpendGroup, SpendLog,
    SpendQuery, TeamRecord, TeamUpdate, UserRecord, UserUpdate,
};
use super::{Store, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a statement waits for a connection, connecting included,
/// before it fails: with the database down, a call fails after this
/// rather than sqlx's default 30 s (the control plane bounds record
/// lookups at 5 s on top).
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A [`Store`] in a PostgreSQL database.
///
/// ```no_run
/// # async fn demo() -> Result<(), frontend::store::StoreError> {
/// let url = "postgres://postgres@127.0.0.1:5432/engine";
/// let store = frontend::store::PostgresStore::connect(url).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `database_url` (a `postgres://` URL; tables go where the
    /// server's default `search_path` puts them, usually `public`) and
    /// brings the schema up to date.
    pub async fn connect(database_url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(database_url)?;
        Self::open(options).await
    }

    /// Like [`PostgresStore::connect`], but keeps everything in `schema`,
    /// creating it if missing: the connections' `search_path` is set to it.
    /// `schema` must be a plain identifier (letters, digits, `_`).
    pub async fn connect_with_schema(database_url: &str, schema: &str) -> Result<Self, StoreError> {
        let schema = identifier(schema)?;
        let options = PgConnectOptions::from_str(database_url)?;
        let mut conn = PgConnection::connect_with(&options).await?;
        // Look before creating: `CREATE SCHEMA IF NOT EXISTS` needs the
        // CREATE privilege on the database even when the schema exists.
        let exists = sqlx::query("SELECT 1 FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_optional(&mut conn)
            .await?
            .is_some();
        let created = if exists {
            Ok(())
        } else {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&mut conn)
                .await
                .map(|_| ())
        };
        conn.close().await?;
        match created {
            Ok(()) => {}
            // Two replicas creating the schema at once: the loser sees a
            // unique violation on pg_namespace, and the schema exists.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
            Err(e) => return Err(e.into()),
        }
        Self::open(options.options([("search_path", schema)])).await
    }

    async fn open(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Waits for running statements and closes every connection; calls
    /// made afterwards fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `schema` if it is a plain SQL identifier, which is then safe to quote
/// into `CREATE SCHEMA` and the `search_path`.
fn identifier(schema: &str) -> Result<&str, StoreError> {
    let mut chars = schema.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && schema.len() <= 63 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(schema)
    } else {
        Err(StoreError::InvalidInput(format!(
            "schema name `{schema}` is not a plain identifier"
        )))
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        sql::create_key(&mut *self.pool.acquire().await?, key).await
    }

    async fn key(&self, token_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        sql::key(&mut *self.pool.acquire().await?, token_hash).await
    }

    async fn update_key(
        &self,
        token_hash: &str,
        update: KeyUpdate,
    ) -> Result<KeyRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sql::update_key(&mut *conn, token_hash, update, Utc::now()).await
    }

    async fn delete_keys(&self, token_hashes: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sql::delete_keys(&mut *tx, token_hashes).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        sql::list_keys(&mut *self.pool.acquire().await?, &filter).await
    }

    async fn count_keys(&self, filter: KeyFilter) -> Result<u64, StoreError> {
        sql::count_keys(&mut *self.pool.acquire().await?, &filter).await
    }

    async fn create_team(&self, team: NewTeam) -> Result<TeamRecord, StoreError> {
        sql::create_team(&mut *self.pool.acquire().await?, team).await
    }

    async fn team(&self, team_id: &str) -> Result<Option<TeamRecord>, StoreError> {
        sql::team(&mut *self.pool.acquire().await?, team_id).await
    }

    async fn update_team(
        &self,
        team_id: &str,
        update: TeamUpdate,
    ) -> Result<TeamRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sql::update_team(&mut *conn, team_id, update, Utc::now()).await
    }

    async fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        sql::list_teams(&mut *self.pool.acquire().await?).await
    }

    async fn delete_teams(&self, team_ids: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sql::delete_teams(&mut *tx, team_ids).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError> {
        sql::create_user(&mut *self.pool.acquire().await?, user).await
    }

    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        sql::user(&mut *self.pool.acquire().await?, user_id).await
    }

    async fn update_user(
        &self,
        user_id: &str,
        update: UserUpdate,
    ) -> Result<UserRecord, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sql::update_user(&mut *conn, user_id, update, Utc::now()).await
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        sql::list_users(&mut *self.pool.acquire().await?).await
    }

    async fn delete_users(&self, user_ids: &[String]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let deleted = sql::delete_users(&mut *tx, user_ids).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn record_spend(&self, logs: &[SpendLog]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sql::record_spend(&mut *tx, logs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn spend_logs(&self, query: &SpendQuery) -> Result<Vec<SpendLog>, StoreError> {
        sql::spend_logs(&mut *self.pool.acquire().await?, query).await
    }

    async fn total_spend(&self, query: &SpendQuery) -> Result<f64, StoreError> {
        sql::total_spend(&mut *self.pool.acquire().await?, query).await
    }

    async fn daily_spend(
        &self,
        group_by: SpendGroup,
        query: &SpendQuery,
    ) -> Result<Vec<DailySpend>, StoreError> {
        sql::daily_spend(&mut *self.pool.acquire().await?, group_by, query).await
    }

    async fn reset_due_budgets(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let reset = sql::reset_due_budgets(&mut *tx, now).await?;
        tx.commit().await?;
        Ok(reset)
    }
}

/// Binds [`Param`]s with PostgreSQL's types: JSON as `JSONB`, times as
/// `TIMESTAMPTZ`.
fn bind(
    mut query: Query<'_, Postgres, PgArguments>,
    params: Vec<Param>,
) -> Query<'_, Postgres, PgArguments> {
    for param in params {
        query = match param {
            Param::Text(v) => query.bind(v),
            Param::Real(v) => query.bind(v),
            Param::Int(v) => query.bind(v),
            Param::Bool(v) => query.bind(v),
            Param::Time(v) => query.bind(v),
            Param::Json(v) => query.bind(Json(v)),
        };
    }
    query
}

#[async_trait::async_trait]
impl SqlConn for PgConnection {
    type Row = PgRow;
    const DIALECT: Dialect = Dialect::Postgres;

    async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, sqlx::Error> {
        let done = bind(sqlx::query(sql), params).execute(&mut *self).await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all(
        &mut self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        bind(sqlx::query(sql), params).fetch_all(&mut *self).await
    }
}

impl SqlRow for PgRow {
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
        let value: Option<Json<Value>> = self.try_get(col)?;
        Ok(value.map(|j| j.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn schema_names_are_identifiers() {
        assert!(identifier("store_test_1").is_ok());
        assert!(identifier("_x").is_ok());
        for bad in [
            "",
            "1x",
            "a-b",
            "a\"; DROP TABLE x; --",
            "é",
            &"a".repeat(64),
        ] {
            assert!(identifier(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn bad_url_does_not_leak_it() {
        let err = PostgresStore::connect("postgres://user:hunter2@[::1")
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
