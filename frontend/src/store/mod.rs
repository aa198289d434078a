//! The control plane's persistent store: virtual keys, teams, users and
//! spend logs, behind one [`Store`] trait (DESIGN.md, "Key interfaces").
//!
//! Two backends implement it with the same SQL: [`SqliteStore`], the
//! embedded default (one file, WAL), and [`PostgresStore`] for several
//! gateway replicas sharing one database. The statements, the row mapping
//! and the logic (spend accounting, budget resets) live once, in `sql`; a
//! backend only binds parameters, reads columns and names its dialect's one
//! difference (how to cut a timestamp to a day). Schemas are embedded
//! migrations (`frontend/migrations/{sqlite,postgres}`) run on connect.
//!
//! What it stores follows LiteLLM's proxy (`schema.prisma`): keys are kept
//! as SHA-256 hashes of their secret, spend is accumulated on the key, its
//! team and its user as logs are recorded, and budgets start over when
//! their `budget_reset_at` passes. It must not sit on the request path for
//! writes: the spend writer batches logs into [`Store::record_spend`] off
//! the path, and the auth layer is expected to cache [`Store::key`].
//!
//! Differences from LiteLLM: no organizations, budgets table or per-model
//! spend maps yet; time is always passed in (`created_at`, `now`) so tests
//! control the clock; stored times are truncated to microseconds on both
//! backends (PostgreSQL's precision) so both return the same values.

mod postgres;
mod sql;
mod sqlite;
mod types;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::{
    BudgetDuration, DailySpend, DurationUnit, KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam,
    NewUser, ParseDurationError, SpendGroup, SpendLog, SpendQuery, SpendStatus, TeamRecord,
    TeamUpdate, UserRecord, UserUpdate,
};

use chrono::{DateTime, Utc};

/// Everything a [`Store`] can fail with; the admin routes map `NotFound` to
/// 404, `Conflict` to 400/409 and the rest to 500.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StoreError {
    /// The record to update does not exist.
    #[error("{what} `{id}` not found")]
    NotFound {
        /// `"key"`, `"team"` or `"user"`.
        what: &'static str,
        /// Its id (a key's display name, never more of the secret).
        id: String,
    },
    /// A record with this id (or, for keys, this alias) already exists.
    #[error("{what} `{id}` already exists")]
    Conflict {
        /// `"key"`, `"team"` or `"user"`.
        what: &'static str,
        /// The clashing id or alias.
        id: String,
    },
    /// The caller passed something the store cannot take (a schema name
    /// that is not an identifier, a count above `i64::MAX`).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The database failed or holds something unreadable. The message is
    /// the driver's, which names no connection string or password.
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // `sqlx::Error::Configuration` may quote the URL it failed to
        // parse; report only that it was the configuration.
        match e {
            sqlx::Error::Configuration(_) => {
                Self::Database("invalid database configuration (check the URL)".to_owned())
            }
            other => Self::Database(other.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Database(format!("migration failed: {e}"))
    }
}

/// The control plane's persistence: what LiteLLM's proxy keeps in its
/// database. Implemented by [`SqliteStore`] and [`PostgresStore`]; the
/// gateway holds an `Arc<dyn Store>`.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a new key; `budget_reset_at` becomes `created_at` plus the
    /// duration. `Conflict` if the hash or the alias is taken.
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError>;

    /// The key with this hash, if any (the auth layer's lookup).
    async fn key(&self, token_hash: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Applies the set fields of `update`; `NotFound` if there is no such
    /// key, `Conflict` if the new alias is taken.
    async fn update_key(
        &self,
        token_hash: &str,
        update: KeyUpdate,
    ) -> Result<KeyRecord, StoreError>;

    /// Deletes these keys; returns how many existed.
    async fn delete_keys(&self, token_hashes: &[String]) -> Result<u64, StoreError>;

    /// Keys matching `filter`, newest first, one page.
    async fn list_keys(&self, filter: KeyFilter) -> Result<Vec<KeyRecord>, StoreError>;

    /// How many keys match `filter` (its page and size ignored), for the
    /// admin list's `total_count`.
    async fn count_keys(&self, filter: KeyFilter) -> Result<u64, StoreError>;

    /// Stores a new team; `Conflict` if the id is taken.
    async fn create_team(&self, team: NewTeam) -> Result<TeamRecord, StoreError>;

    /// The team with this id, if any.
    async fn team(&self, team_id: &str) -> Result<Option<TeamRecord>, StoreError>;

    /// Applies the set fields of `update` (as [`Store::update_key`]);
    /// `NotFound` if there is no such team.
    async fn update_team(
        &self,
        team_id: &str,
        update: TeamUpdate,
    ) -> Result<TeamRecord, StoreError>;

    /// Every team, oldest first.
    async fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError>;

    /// Deletes these teams, not their keys (`/team/delete` deletes those
    /// first); returns how many existed.
    async fn delete_teams(&self, team_ids: &[String]) -> Result<u64, StoreError>;

    /// Stores a new user; `Conflict` if the id is taken.
    async fn create_user(&self, user: NewUser) -> Result<UserRecord, StoreError>;

    /// The user with this id, if any.
    async fn user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Applies the set fields of `update` (as [`Store::update_key`]);
    /// `NotFound` if there is no such user.
    async fn update_user(
        &self,
        user_id: &str,
        update: UserUpdate,
    ) -> Result<UserRecord, StoreError>;

    /// Every user, oldest first.
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Deletes these users (their keys stay); returns how many existed.
    async fn delete_users(&self, user_ids: &[String]) -> Result<u64, StoreError>;

    /// One transaction: insert the logs and add each log's cost to the
    /// spend of its key, team and user. A `request_id` already stored is
    /// skipped, so a retried batch never counts twice. Called by a batching
    /// writer off the request path.
    async fn record_spend(&self, logs: &[SpendLog]) -> Result<(), StoreError>;

    /// Logs matching `query`, newest first, at most `query.limit`.
    async fn spend_logs(&self, query: &SpendQuery) -> Result<Vec<SpendLog>, StoreError>;

    /// Sum of the cost of the logs matching `query` (`limit` ignored).
    async fn total_spend(&self, query: &SpendQuery) -> Result<f64, StoreError>;

    /// Spend per UTC day per group (key alias-or-hash, team, user or
    /// model) of the logs matching `query`, sorted by day then group: the
    /// admin UI's chart.
    async fn daily_spend(
        &self,
        group_by: SpendGroup,
        query: &SpendQuery,
    ) -> Result<Vec<DailySpend>, StoreError>;

    /// Keys, teams and users whose `budget_reset_at <= now` get spend 0 and
    /// `budget_reset_at = now + their duration`. Returns how many were
    /// reset. Time is a parameter so tests (and a replica's scheduler)
    /// control the clock; running it twice, or on two replicas at once,
    /// resets each record once.
    async fn reset_due_budgets(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
