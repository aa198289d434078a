//! The store's SQL and logic, written once for both backends.
//!
//! Statements use `$1`-style placeholders, which SQLite accepts as well as
//! PostgreSQL, and only syntax both speak (`RETURNING`, `ON CONFLICT DO
//! NOTHING`); the one dialect difference, cutting a time to its UTC day, is
//! [`Dialect::day_of`]. Parameters travel as [`Param`] values that each
//! backend binds with its own types (JSON is `TEXT` in SQLite, `JSONB` in
//! PostgreSQL), and rows come back through [`SqlRow`]. This file holds
//! those pieces and the mapping from rows to records; `records` has keys,
//! teams and users, `spend` the logs, their queries and budget resets.
//!
//! Lock order: writes that touch several records (`record_spend`,
//! `reset_due_budgets`) lock spend logs by `request_id`, then keys, teams
//! and users in that order, each by id in byte order, so concurrent
//! transactions on PostgreSQL never wait on each other in a cycle.

mod records;
mod spend;

pub(crate) use records::{
    count_keys, create_key, create_team, create_user, delete_keys, delete_teams, delete_users, key,
    list_keys, list_teams, list_users, team, update_key, update_team, update_user, user,
};
pub(crate) use spend::{daily_spend, record_spend, reset_due_budgets, spend_logs, total_spend};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;

use super::types::{BudgetDuration, KeyRecord, SpendLog, SpendStatus, TeamRecord, UserRecord};
use super::StoreError;

/// One bound parameter, typed so each backend picks its own encoding.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    /// `TEXT`.
    Text(Option<String>),
    /// `REAL` / `DOUBLE PRECISION`.
    Real(Option<f64>),
    /// `INTEGER` / `BIGINT`.
    Int(Option<i64>),
    /// `INTEGER` 0/1 / `BOOLEAN`.
    Bool(bool),
    /// `TEXT` (RFC 3339) / `TIMESTAMPTZ`.
    Time(Option<DateTime<Utc>>),
    /// `TEXT` / `JSONB`.
    Json(Value),
}

/// Reads one column of a result row; every getter returns `None` for SQL
/// `NULL`.
pub(crate) trait SqlRow {
    /// A text column.
    fn text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    /// A floating-point column.
    fn real(&self, col: &str) -> Result<Option<f64>, sqlx::Error>;
    /// An integer column.
    fn int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    /// A boolean column.
    fn boolean(&self, col: &str) -> Result<Option<bool>, sqlx::Error>;
    /// A timestamp column.
    fn time(&self, col: &str) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    /// A JSON column.
    fn json(&self, col: &str) -> Result<Option<Value>, sqlx::Error>;
}

/// Where the two SQL dialects differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// SQLite: times are RFC 3339 text in UTC.
    Sqlite,
    /// PostgreSQL: times are `TIMESTAMPTZ`.
    Postgres,
}

impl Dialect {
    /// An expression giving the UTC day of time column `col` as
    /// `YYYY-MM-DD` text.
    pub(super) fn day_of(self, col: &str) -> String {
        match self {
            Self::Sqlite => format!("substr({col}, 1, 10)"),
            Self::Postgres => format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"),
        }
    }
}

/// A connection (or open transaction) the shared logic runs statements on.
#[async_trait::async_trait]
pub(crate) trait SqlConn: Send {
    /// The backend's row type.
    type Row: SqlRow + Send;
    /// The backend's dialect.
    const DIALECT: Dialect;
    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, sqlx::Error>;
    /// Runs a query; returns its rows.
    async fn fetch_all(
        &mut self,
        sql: &str,
        params: Vec<Param>,
    ) -> Result<Vec<Self::Row>, sqlx::Error>;
}

/// A statement being built: text plus the parameters its `$n` refer to.
#[derive(Debug, Default)]
pub(super) struct Statement {
    pub(super) text: String,
    pub(super) params: Vec<Param>,
}

impl Statement {
    pub(super) fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder (`$3`).
    pub(super) fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    /// Adds a parameter and returns an anonymous placeholder where the
    /// dialect has one: `?` in SQLite, whose lookup of a `$n` name scans
    /// every parameter (thousands in a batch insert, so binding grew
    /// quadratic and took a fifth of the gateway's CPU); `$n` in
    /// PostgreSQL. The placeholders must appear in the order they are bound.
    pub(super) fn bind_in_order(&mut self, dialect: Dialect, param: Param) -> String {
        match dialect {
            Dialect::Sqlite => {
                self.params.push(param);
                "?".to_owned()
            }
            Dialect::Postgres => self.bind(param),
        }
    }

    pub(super) fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }
}

/// Appends ` WHERE a AND b ...` when there are conditions.
pub(super) fn push_where(stmt: &mut Statement, conditions: &[String]) {
    if !conditions.is_empty() {
        stmt.push(" WHERE ");
        stmt.push(&conditions.join(" AND "));
    }
}

pub(super) const KEY_COLUMNS: &str = "token_hash, key_name, key_alias, models, max_budget, spend, \
     budget_duration, budget_reset_at, rpm_limit, tpm_limit, expires, metadata, team_id, \
     user_id, blocked, created_at";
pub(super) const TEAM_COLUMNS: &str =
    "team_id, team_alias, models, max_budget, spend, budget_duration, \
     budget_reset_at, rpm_limit, tpm_limit, metadata, created_at";
pub(super) const USER_COLUMNS: &str = "user_id, user_email, user_role, models, max_budget, spend, \
     budget_duration, budget_reset_at, rpm_limit, tpm_limit, metadata, created_at";
pub(super) const LOG_COLUMNS: &str = "request_id, token_hash, key_alias, team_id, user_id, model, \
     provider_model, prompt_tokens, completion_tokens, cost, start_time, end_time, cache_hit, \
     status";

/// The most ids one `IN (...)` list carries (SQLite allows 32,766
/// parameters, PostgreSQL 65,535).
pub(super) const IN_CHUNK: usize = 500;

/// The three tables that carry a budget, in lock order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Budgeted {
    Key,
    Team,
    User,
}

impl Budgeted {
    pub(super) const ALL: [Self; 3] = [Self::Key, Self::Team, Self::User];

    pub(super) fn table(self) -> &'static str {
        match self {
            Self::Key => "virtual_keys",
            Self::Team => "teams",
            Self::User => "users",
        }
    }

    /// The word errors use.
    pub(super) fn what(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
            Self::User => "user",
        }
    }

    pub(super) fn id_column(self) -> &'static str {
        match self {
            Self::Key => "token_hash",
            Self::Team => "team_id",
            Self::User => "user_id",
        }
    }
}

// ---------------------------------------------------------------- params

/// Stored times: microseconds, PostgreSQL's precision, on both backends.
pub(super) fn time(t: DateTime<Utc>) -> Param {
    Param::Time(Some(t.trunc_subsecs(6)))
}

pub(super) fn opt_time(t: Option<DateTime<Utc>>) -> Param {
    Param::Time(t.map(|t| t.trunc_subsecs(6)))
}

pub(super) fn text(s: &str) -> Param {
    Param::Text(Some(s.to_owned()))
}

pub(super) fn opt_text(s: Option<&str>) -> Param {
    Param::Text(s.map(str::to_owned))
}

pub(super) fn count(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput(format!("{what} {n} is too large")))
}

pub(super) fn opt_count(n: Option<u64>, what: &str) -> Result<Param, StoreError> {
    Ok(Param::Int(n.map(|n| count(n, what)).transpose()?))
}

pub(super) fn models(models: &[String]) -> Param {
    Param::Json(Value::from(models.to_vec()))
}

pub(super) fn duration(d: Option<BudgetDuration>) -> Param {
    Param::Text(d.map(|d| d.to_string()))
}

// ---------------------------------------------------------------- rows

pub(super) fn bad(col: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("column `{col}`: {why}"))
}

pub(super) fn required<T>(
    value: Result<Option<T>, sqlx::Error>,
    col: &str,
) -> Result<T, StoreError> {
    value?.ok_or_else(|| bad(col, "unexpected NULL"))
}

pub(super) fn row_count(row: &impl SqlRow, col: &str) -> Result<Option<u64>, StoreError> {
    row.int(col)?
        .map(|n| u64::try_from(n).map_err(|_| bad(col, "negative")))
        .transpose()
}

pub(super) fn row_models(row: &impl SqlRow) -> Result<Vec<String>, StoreError> {
    let value = required(row.json("models"), "models")?;
    serde_json::from_value(value).map_err(|e| bad("models", e))
}

pub(super) fn row_duration(row: &impl SqlRow) -> Result<Option<BudgetDuration>, StoreError> {
    row.text("budget_duration")?
        .map(|s| s.parse().map_err(|e| bad("budget_duration", e)))
        .transpose()
}

pub(super) fn key_from(row: &impl SqlRow) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        token_hash: required(row.text("token_hash"), "token_hash")?,
        key_name: required(row.text("key_name"), "key_name")?,
        key_alias: row.text("key_alias")?,
        models: row_models(row)?,
        max_budget: row.real("max_budget")?,
        spend: required(row.real("spend"), "spend")?,
        budget_duration: row_duration(row)?,
        budget_reset_at: row.time("budget_reset_at")?,
        rpm_limit: row_count(row, "rpm_limit")?,
        tpm_limit: row_count(row, "tpm_limit")?,
        expires: row.time("expires")?,
        metadata: required(row.json("metadata"), "metadata")?,
        team_id: row.text("team_id")?,
        user_id: row.text("user_id")?,
        blocked: required(row.boolean("blocked"), "blocked")?,
        created_at: required(row.time("created_at"), "created_at")?,
    })
}

pub(super) fn team_from(row: &impl SqlRow) -> Result<TeamRecord, StoreError> {
    Ok(TeamRecord {
        team_id: required(row.text("team_id"), "team_id")?,
        team_alias: row.text("team_alias")?,
        models: row_models(row)?,
        max_budget: row.real("max_budget")?,
        spend: required(row.real("spend"), "spend")?,
        budget_duration: row_duration(row)?,
        budget_reset_at: row.time("budget_reset_at")?,
        rpm_limit: row_count(row, "rpm_limit")?,
        tpm_limit: row_count(row, "tpm_limit")?,
        metadata: required(row.json("metadata"), "metadata")?,
        created_at: required(row.time("created_at"), "created_at")?,
    })
}

pub(super) fn user_from(row: &impl SqlRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        user_id: required(row.text("user_id"), "user_id")?,
        user_email: row.text("user_email")?,
        user_role: row.text("user_role")?,
        models: row_models(row)?,
        max_budget: row.real("max_budget")?,
        spend: required(row.real("spend"), "spend")?,
        budget_duration: row_duration(row)?,
        budget_reset_at: row.time("budget_reset_at")?,
        rpm_limit: row_count(row, "rpm_limit")?,
        tpm_limit: row_count(row, "tpm_limit")?,
        metadata: required(row.json("metadata"), "metadata")?,
        created_at: required(row.time("created_at"), "created_at")?,
    })
}

pub(super) fn log_from(row: &impl SqlRow) -> Result<SpendLog, StoreError> {
    let status: String = required(row.text("status"), "status")?;
    Ok(SpendLog {
        request_id: required(row.text("request_id"), "request_id")?,
        token_hash: row.text("token_hash")?,
        key_alias: row.text("key_alias")?,
        team_id: row.text("team_id")?,
        user_id: row.text("user_id")?,
        model: required(row.text("model"), "model")?,
        provider_model: required(row.text("provider_model"), "provider_model")?,
        prompt_tokens: row_count(row, "prompt_tokens")?.unwrap_or(0),
        completion_tokens: row_count(row, "completion_tokens")?.unwrap_or(0),
        cost: required(row.real("cost"), "cost")?,
        start_time: required(row.time("start_time"), "start_time")?,
        end_time: required(row.time("end_time"), "end_time")?,
        cache_hit: required(row.boolean("cache_hit"), "cache_hit")?,
        status: status
            .parse::<SpendStatus>()
            .map_err(|e| bad("status", e))?,
    })
}

/// A unique violation becomes `Conflict`; anything else `Database`.
pub(super) fn conflict(e: sqlx::Error, what: &'static str, id: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            what,
            id: id.to_owned(),
        },
        _ => e.into(),
    }
}

/// The first row, or `NotFound` for `what` `id`.
pub(super) fn one<R>(rows: Vec<R>, what: &'static str, id: &str) -> Result<R, StoreError> {
    rows.into_iter().next().ok_or_else(|| StoreError::NotFound {
        what,
        id: id.to_owned(),
    })
}

/// The one row of an aggregate query (`COUNT`, `SUM`), which SQL always
/// returns.
pub(super) fn aggregate<R>(rows: Vec<R>) -> Result<R, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| StoreError::Database("aggregate query returned no row".to_owned()))
}
