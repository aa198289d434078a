//! The store's SQL and logic, written once for both backends.
//!
//! Statements use `$1`-style placeholders, which SQLite accepts as well as
//! PostgreSQL, and only syntax both speak (`RETURNING`, `ON CONFLICT DO
//! NOTHING`); the one dialect difference, cutting a time to its UTC day, is
//! [`Dialect::day_of`]. Parameters travel as [`Param`] values that each
//! backend binds with its own types (JSON is `TEXT` in SQLite, `JSONB` in
//! PostgreSQL), and rows come back through [`SqlRow`], so the mapping from
//! columns to records is here too.
//!
//! Lock order: [`record_spend`] inserts logs sorted by `request_id` and
//! then updates keys, teams and users in that order, each sorted by id, so
//! two concurrent batches on PostgreSQL never wait on each other in a
//! cycle.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde_json::Value;

use super::types::{
    BudgetDuration, DailySpend, KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam, NewUser,
    SpendGroup, SpendLog, SpendQuery, SpendStatus, TeamRecord, TeamUpdate, UserRecord, UserUpdate,
};
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
    fn day_of(self, col: &str) -> String {
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
struct Statement {
    text: String,
    params: Vec<Param>,
}

impl Statement {
    fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter and returns its placeholder (`$3`).
    fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }
}

/// Appends ` WHERE a AND b ...` when there are conditions.
fn push_where(stmt: &mut Statement, conditions: &[String]) {
    if !conditions.is_empty() {
        stmt.push(" WHERE ");
        stmt.push(&conditions.join(" AND "));
    }
}

const KEY_COLUMNS: &str = "token_hash, key_name, key_alias, models, max_budget, spend, \
     budget_duration, budget_reset_at, rpm_limit, tpm_limit, expires, metadata, team_id, \
     user_id, blocked, created_at";
const TEAM_COLUMNS: &str = "team_id, team_alias, models, max_budget, spend, budget_duration, \
     budget_reset_at, rpm_limit, tpm_limit, metadata, created_at";
const USER_COLUMNS: &str = "user_id, user_email, user_role, models, max_budget, spend, \
     budget_duration, budget_reset_at, rpm_limit, tpm_limit, metadata, created_at";
const LOG_COLUMNS: &str = "request_id, token_hash, key_alias, team_id, user_id, model, \
     provider_model, prompt_tokens, completion_tokens, cost, start_time, end_time, cache_hit, \
     status";

/// The most ids one `IN (...)` list carries (SQLite allows 32,766
/// parameters, PostgreSQL 65,535).
const IN_CHUNK: usize = 500;

/// The three tables that carry a budget, in lock order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Budgeted {
    Key,
    Team,
    User,
}

impl Budgeted {
    const ALL: [Self; 3] = [Self::Key, Self::Team, Self::User];

    fn table(self) -> &'static str {
        match self {
            Self::Key => "virtual_keys",
            Self::Team => "teams",
            Self::User => "users",
        }
    }

    /// The word errors use.
    fn what(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Team => "team",
            Self::User => "user",
        }
    }

    fn id_column(self) -> &'static str {
        match self {
            Self::Key => "token_hash",
            Self::Team => "team_id",
            Self::User => "user_id",
        }
    }
}

// ---------------------------------------------------------------- params

/// Stored times: microseconds, PostgreSQL's precision, on both backends.
fn time(t: DateTime<Utc>) -> Param {
    Param::Time(Some(t.trunc_subsecs(6)))
}

fn opt_time(t: Option<DateTime<Utc>>) -> Param {
    Param::Time(t.map(|t| t.trunc_subsecs(6)))
}

fn text(s: &str) -> Param {
    Param::Text(Some(s.to_owned()))
}

fn opt_text(s: Option<&str>) -> Param {
    Param::Text(s.map(str::to_owned))
}

fn count(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidInput(format!("{what} {n} is too large")))
}

fn opt_count(n: Option<u64>, what: &str) -> Result<Param, StoreError> {
    Ok(Param::Int(n.map(|n| count(n, what)).transpose()?))
}

fn models(models: &[String]) -> Param {
    Param::Json(Value::from(models.to_vec()))
}

fn duration(d: Option<BudgetDuration>) -> Param {
    Param::Text(d.map(|d| d.to_string()))
}

// ---------------------------------------------------------------- rows

fn bad(col: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Database(format!("column `{col}`: {why}"))
}

fn required<T>(value: Result<Option<T>, sqlx::Error>, col: &str) -> Result<T, StoreError> {
    value?.ok_or_else(|| bad(col, "unexpected NULL"))
}

fn row_count(row: &impl SqlRow, col: &str) -> Result<Option<u64>, StoreError> {
    row.int(col)?
        .map(|n| u64::try_from(n).map_err(|_| bad(col, "negative")))
        .transpose()
}

fn row_models(row: &impl SqlRow) -> Result<Vec<String>, StoreError> {
    let value = required(row.json("models"), "models")?;
    serde_json::from_value(value).map_err(|e| bad("models", e))
}

fn row_duration(row: &impl SqlRow) -> Result<Option<BudgetDuration>, StoreError> {
    row.text("budget_duration")?
        .map(|s| s.parse().map_err(|e| bad("budget_duration", e)))
        .transpose()
}

fn key_from(row: &impl SqlRow) -> Result<KeyRecord, StoreError> {
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

fn team_from(row: &impl SqlRow) -> Result<TeamRecord, StoreError> {
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

fn user_from(row: &impl SqlRow) -> Result<UserRecord, StoreError> {
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

fn log_from(row: &impl SqlRow) -> Result<SpendLog, StoreError> {
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
fn conflict(e: sqlx::Error, what: &'static str, id: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            what,
            id: id.to_owned(),
        },
        _ => e.into(),
    }
}

// ---------------------------------------------------------------- keys

/// See [`super::Store::create_key`].
pub(crate) async fn create_key<C: SqlConn>(
    c: &mut C,
    key: NewKey,
) -> Result<KeyRecord, StoreError> {
    let reset_at = key.budget_duration.map(|d| d.next_after(key.created_at));
    let params = vec![
        text(&key.token_hash),
        text(&key.key_name),
        opt_text(key.key_alias.as_deref()),
        models(&key.models),
        Param::Real(key.max_budget),
        Param::Real(Some(0.0)),
        duration(key.budget_duration),
        opt_time(reset_at),
        opt_count(key.rpm_limit, "rpm_limit")?,
        opt_count(key.tpm_limit, "tpm_limit")?,
        opt_time(key.expires),
        Param::Json(key.metadata.clone()),
        opt_text(key.team_id.as_deref()),
        opt_text(key.user_id.as_deref()),
        Param::Bool(false),
        time(key.created_at),
    ];
    let sql = format!(
        "INSERT INTO virtual_keys ({KEY_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
         RETURNING {KEY_COLUMNS}"
    );
    let id = key.key_alias.as_deref().unwrap_or(&key.key_name);
    let rows = c
        .fetch_all(&sql, params)
        .await
        .map_err(|e| conflict(e, "key", id))?;
    one(rows, "key", id).and_then(|r| key_from(&r))
}

fn one<R>(rows: Vec<R>, what: &'static str, id: &str) -> Result<R, StoreError> {
    rows.into_iter().next().ok_or_else(|| StoreError::NotFound {
        what,
        id: id.to_owned(),
    })
}

/// See [`super::Store::key`].
pub(crate) async fn key<C: SqlConn>(
    c: &mut C,
    token_hash: &str,
) -> Result<Option<KeyRecord>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE token_hash = $1");
    let rows = c.fetch_all(&sql, vec![text(token_hash)]).await?;
    rows.first().map(key_from).transpose()
}

/// The changes to the fields keys, teams and users share, as their
/// updates carry them.
struct LimitChanges<'a> {
    models: Option<&'a [String]>,
    max_budget: Option<Option<f64>>,
    spend: Option<f64>,
    budget_duration: Option<Option<BudgetDuration>>,
    budget_reset_at: Option<Option<DateTime<Utc>>>,
    rpm_limit: Option<Option<u64>>,
    tpm_limit: Option<Option<u64>>,
    metadata: Option<Value>,
}

/// The `SET` list of an `UPDATE`, built from the fields an update sets.
struct Assignments {
    stmt: Statement,
    sets: Vec<String>,
}

impl Assignments {
    fn new(table: Budgeted) -> Self {
        Self {
            stmt: Statement::new(format!("UPDATE {} SET ", table.table())),
            sets: Vec::new(),
        }
    }

    /// Adds `col = $n` when there is a value.
    fn set(&mut self, col: &str, value: Option<Param>) {
        if let Some(value) = value {
            let ph = self.stmt.bind(value);
            self.sets.push(format!("{col} = {ph}"));
        }
    }

    /// The fields every budgeted record has. A new duration restarts the
    /// period at `now` unless the update names the reset time itself.
    fn limits(&mut self, l: LimitChanges<'_>, now: DateTime<Utc>) -> Result<(), StoreError> {
        let LimitChanges {
            models: models_list,
            max_budget,
            spend,
            budget_duration,
            budget_reset_at,
            rpm_limit,
            tpm_limit,
            metadata,
        } = l;
        self.set("models", models_list.map(models));
        self.set("max_budget", max_budget.map(Param::Real));
        self.set("spend", spend.map(|s| Param::Real(Some(s))));
        let reset_at = match (budget_duration, budget_reset_at) {
            (_, Some(explicit)) => Some(explicit),
            (Some(d), None) => Some(d.map(|d| d.next_after(now))),
            (None, None) => None,
        };
        self.set("budget_duration", budget_duration.map(duration));
        self.set("budget_reset_at", reset_at.map(opt_time));
        self.set(
            "rpm_limit",
            rpm_limit.map(|l| opt_count(l, "rpm_limit")).transpose()?,
        );
        self.set(
            "tpm_limit",
            tpm_limit.map(|l| opt_count(l, "tpm_limit")).transpose()?,
        );
        self.set("metadata", metadata.map(Param::Json));
        Ok(())
    }

    /// Runs the update of record `id` and returns the row after it;
    /// `NotFound` if there is none. With nothing to set, just reads it.
    async fn run<C: SqlConn>(
        mut self,
        c: &mut C,
        table: Budgeted,
        id: &str,
        columns: &str,
        clash: &str,
    ) -> Result<C::Row, StoreError> {
        let what = table.what();
        let id_col = table.id_column();
        let rows = if self.sets.is_empty() {
            let sql = format!(
                "SELECT {columns} FROM {} WHERE {id_col} = $1",
                table.table()
            );
            c.fetch_all(&sql, vec![text(id)]).await?
        } else {
            self.stmt.push(&self.sets.join(", "));
            let ph = self.stmt.bind(text(id));
            self.stmt
                .push(&format!(" WHERE {id_col} = {ph} RETURNING {columns}"));
            c.fetch_all(&self.stmt.text, self.stmt.params)
                .await
                .map_err(|e| conflict(e, what, clash))?
        };
        one(rows, what, id)
    }
}

/// See [`super::Store::update_key`]; `now` starts a new budget period when
/// the duration changes.
pub(crate) async fn update_key<C: SqlConn>(
    c: &mut C,
    token_hash: &str,
    update: KeyUpdate,
    now: DateTime<Utc>,
) -> Result<KeyRecord, StoreError> {
    let mut a = Assignments::new(Budgeted::Key);
    a.set(
        "key_alias",
        update.key_alias.as_ref().map(|v| opt_text(v.as_deref())),
    );
    a.limits(
        LimitChanges {
            models: update.models.as_deref(),
            max_budget: update.max_budget,
            spend: update.spend,
            budget_duration: update.budget_duration,
            budget_reset_at: update.budget_reset_at,
            rpm_limit: update.rpm_limit,
            tpm_limit: update.tpm_limit,
            metadata: update.metadata,
        },
        now,
    )?;
    a.set("expires", update.expires.map(opt_time));
    a.set(
        "team_id",
        update.team_id.as_ref().map(|v| opt_text(v.as_deref())),
    );
    a.set(
        "user_id",
        update.user_id.as_ref().map(|v| opt_text(v.as_deref())),
    );
    a.set("blocked", update.blocked.map(Param::Bool));
    let alias = update.key_alias.flatten();
    let clash = alias.as_deref().unwrap_or(token_hash);
    let row = a
        .run(c, Budgeted::Key, token_hash, KEY_COLUMNS, clash)
        .await?;
    key_from(&row)
}

/// See [`super::Store::update_team`].
pub(crate) async fn update_team<C: SqlConn>(
    c: &mut C,
    team_id: &str,
    update: TeamUpdate,
    now: DateTime<Utc>,
) -> Result<TeamRecord, StoreError> {
    let mut a = Assignments::new(Budgeted::Team);
    a.set(
        "team_alias",
        update.team_alias.as_ref().map(|v| opt_text(v.as_deref())),
    );
    a.limits(
        LimitChanges {
            models: update.models.as_deref(),
            max_budget: update.max_budget,
            spend: update.spend,
            budget_duration: update.budget_duration,
            budget_reset_at: update.budget_reset_at,
            rpm_limit: update.rpm_limit,
            tpm_limit: update.tpm_limit,
            metadata: update.metadata,
        },
        now,
    )?;
    let row = a
        .run(c, Budgeted::Team, team_id, TEAM_COLUMNS, team_id)
        .await?;
    team_from(&row)
}

/// See [`super::Store::update_user`].
pub(crate) async fn update_user<C: SqlConn>(
    c: &mut C,
    user_id: &str,
    update: UserUpdate,
    now: DateTime<Utc>,
) -> Result<UserRecord, StoreError> {
    let mut a = Assignments::new(Budgeted::User);
    a.set(
        "user_email",
        update.user_email.as_ref().map(|v| opt_text(v.as_deref())),
    );
    a.set(
        "user_role",
        update.user_role.as_ref().map(|v| opt_text(v.as_deref())),
    );
    a.limits(
        LimitChanges {
            models: update.models.as_deref(),
            max_budget: update.max_budget,
            spend: update.spend,
            budget_duration: update.budget_duration,
            budget_reset_at: update.budget_reset_at,
            rpm_limit: update.rpm_limit,
            tpm_limit: update.tpm_limit,
            metadata: update.metadata,
        },
        now,
    )?;
    let row = a
        .run(c, Budgeted::User, user_id, USER_COLUMNS, user_id)
        .await?;
    user_from(&row)
}

/// Deletes rows of `table` whose `id_column` is in `ids`, in chunks.
async fn delete_by_id<C: SqlConn>(
    c: &mut C,
    table: &str,
    id_column: &str,
    ids: &[String],
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for chunk in ids.chunks(IN_CHUNK) {
        let mut stmt = Statement::default();
        let placeholders: Vec<String> = chunk.iter().map(|id| stmt.bind(text(id))).collect();
        stmt.push(&format!(
            "DELETE FROM {table} WHERE {id_column} IN ({})",
            placeholders.join(", ")
        ));
        deleted += c.execute(&stmt.text, stmt.params).await?;
    }
    Ok(deleted)
}

/// See [`super::Store::delete_keys`].
pub(crate) async fn delete_keys<C: SqlConn>(
    c: &mut C,
    hashes: &[String],
) -> Result<u64, StoreError> {
    delete_by_id(c, "virtual_keys", "token_hash", hashes).await
}

fn key_conditions(stmt: &mut Statement, filter: &KeyFilter) -> Vec<String> {
    let mut conditions = Vec::new();
    for (col, value) in [
        ("team_id", &filter.team_id),
        ("user_id", &filter.user_id),
        ("key_alias", &filter.key_alias),
    ] {
        if let Some(v) = value {
            let ph = stmt.bind(text(v));
            conditions.push(format!("{col} = {ph}"));
        }
    }
    conditions
}

/// See [`super::Store::list_keys`].
pub(crate) async fn list_keys<C: SqlConn>(
    c: &mut C,
    filter: &KeyFilter,
) -> Result<Vec<KeyRecord>, StoreError> {
    let mut stmt = Statement::new(format!("SELECT {KEY_COLUMNS} FROM virtual_keys"));
    let conditions = key_conditions(&mut stmt, filter);
    push_where(&mut stmt, &conditions);
    stmt.push(" ORDER BY created_at DESC, token_hash DESC");
    if let Some(size) = filter.size {
        let offset = u64::from(filter.page.max(1) - 1) * u64::from(size);
        let limit = stmt.bind(Param::Int(Some(i64::from(size))));
        let offset = stmt.bind(Param::Int(Some(count(offset, "offset")?)));
        stmt.push(&format!(" LIMIT {limit} OFFSET {offset}"));
    }
    let rows = c.fetch_all(&stmt.text, stmt.params).await?;
    rows.iter().map(key_from).collect()
}

/// See [`super::Store::count_keys`].
pub(crate) async fn count_keys<C: SqlConn>(
    c: &mut C,
    filter: &KeyFilter,
) -> Result<u64, StoreError> {
    let mut stmt = Statement::new("SELECT COUNT(*) AS n FROM virtual_keys");
    let conditions = key_conditions(&mut stmt, filter);
    push_where(&mut stmt, &conditions);
    let rows = c.fetch_all(&stmt.text, stmt.params).await?;
    let row = one(rows, "count", "keys")?;
    Ok(row_count(&row, "n")?.unwrap_or(0))
}

// ---------------------------------------------------------------- teams, users

/// See [`super::Store::create_team`].
pub(crate) async fn create_team<C: SqlConn>(
    c: &mut C,
    team: NewTeam,
) -> Result<TeamRecord, StoreError> {
    let reset_at = team.budget_duration.map(|d| d.next_after(team.created_at));
    let params = vec![
        text(&team.team_id),
        opt_text(team.team_alias.as_deref()),
        models(&team.models),
        Param::Real(team.max_budget),
        Param::Real(Some(0.0)),
        duration(team.budget_duration),
        opt_time(reset_at),
        opt_count(team.rpm_limit, "rpm_limit")?,
        opt_count(team.tpm_limit, "tpm_limit")?,
        Param::Json(team.metadata),
        time(team.created_at),
    ];
    let sql = format!(
        "INSERT INTO teams ({TEAM_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING {TEAM_COLUMNS}"
    );
    let rows = c
        .fetch_all(&sql, params)
        .await
        .map_err(|e| conflict(e, "team", &team.team_id))?;
    one(rows, "team", &team.team_id).and_then(|r| team_from(&r))
}

/// See [`super::Store::team`].
pub(crate) async fn team<C: SqlConn>(
    c: &mut C,
    team_id: &str,
) -> Result<Option<TeamRecord>, StoreError> {
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams WHERE team_id = $1");
    let rows = c.fetch_all(&sql, vec![text(team_id)]).await?;
    rows.first().map(team_from).transpose()
}

/// See [`super::Store::list_teams`].
pub(crate) async fn list_teams<C: SqlConn>(c: &mut C) -> Result<Vec<TeamRecord>, StoreError> {
    let sql = format!("SELECT {TEAM_COLUMNS} FROM teams ORDER BY created_at, team_id");
    let rows = c.fetch_all(&sql, Vec::new()).await?;
    rows.iter().map(team_from).collect()
}

/// See [`super::Store::delete_teams`].
pub(crate) async fn delete_teams<C: SqlConn>(c: &mut C, ids: &[String]) -> Result<u64, StoreError> {
    delete_by_id(c, "teams", "team_id", ids).await
}

/// See [`super::Store::create_user`].
pub(crate) async fn create_user<C: SqlConn>(
    c: &mut C,
    user: NewUser,
) -> Result<UserRecord, StoreError> {
    let reset_at = user.budget_duration.map(|d| d.next_after(user.created_at));
    let params = vec![
        text(&user.user_id),
        opt_text(user.user_email.as_deref()),
        opt_text(user.user_role.as_deref()),
        models(&user.models),
        Param::Real(user.max_budget),
        Param::Real(Some(0.0)),
        duration(user.budget_duration),
        opt_time(reset_at),
        opt_count(user.rpm_limit, "rpm_limit")?,
        opt_count(user.tpm_limit, "tpm_limit")?,
        Param::Json(user.metadata),
        time(user.created_at),
    ];
    let sql = format!(
        "INSERT INTO users ({USER_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {USER_COLUMNS}"
    );
    let rows = c
        .fetch_all(&sql, params)
        .await
        .map_err(|e| conflict(e, "user", &user.user_id))?;
    one(rows, "user", &user.user_id).and_then(|r| user_from(&r))
}

/// See [`super::Store::user`].
pub(crate) async fn user<C: SqlConn>(
    c: &mut C,
    user_id: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = $1");
    let rows = c.fetch_all(&sql, vec![text(user_id)]).await?;
    rows.first().map(user_from).transpose()
}

/// See [`super::Store::list_users`].
pub(crate) async fn list_users<C: SqlConn>(c: &mut C) -> Result<Vec<UserRecord>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY created_at, user_id");
    let rows = c.fetch_all(&sql, Vec::new()).await?;
    rows.iter().map(user_from).collect()
}

/// See [`super::Store::delete_users`].
pub(crate) async fn delete_users<C: SqlConn>(c: &mut C, ids: &[String]) -> Result<u64, StoreError> {
    delete_by_id(c, "users", "user_id", ids).await
}

// ---------------------------------------------------------------- spend

/// See [`super::Store::record_spend`]; `c` must be a transaction.
pub(crate) async fn record_spend<C: SqlConn>(
    c: &mut C,
    logs: &[SpendLog],
) -> Result<(), StoreError> {
    let insert = format!(
        "INSERT INTO spend_logs ({LOG_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (request_id) DO NOTHING"
    );
    let mut ordered: Vec<&SpendLog> = logs.iter().collect();
    ordered.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    // Cost per (table, id) of the logs actually inserted, in lock order.
    let mut charges: BTreeMap<(Budgeted, &str), f64> = BTreeMap::new();
    for log in ordered {
        let params = vec![
            text(&log.request_id),
            opt_text(log.token_hash.as_deref()),
            opt_text(log.key_alias.as_deref()),
            opt_text(log.team_id.as_deref()),
            opt_text(log.user_id.as_deref()),
            text(&log.model),
            text(&log.provider_model),
            Param::Int(Some(count(log.prompt_tokens, "prompt_tokens")?)),
            Param::Int(Some(count(log.completion_tokens, "completion_tokens")?)),
            Param::Real(Some(log.cost)),
            time(log.start_time),
            time(log.end_time),
            Param::Bool(log.cache_hit),
            text(log.status.as_str()),
        ];
        if c.execute(&insert, params).await? == 0 {
            continue; // already recorded
        }
        for (table, id) in [
            (Budgeted::Key, &log.token_hash),
            (Budgeted::Team, &log.team_id),
            (Budgeted::User, &log.user_id),
        ] {
            if let Some(id) = id {
                *charges.entry((table, id.as_str())).or_insert(0.0) += log.cost;
            }
        }
    }
    for ((table, id), cost) in charges {
        if cost == 0.0 {
            continue;
        }
        let sql = format!(
            "UPDATE {} SET spend = spend + $1 WHERE {} = $2",
            table.table(),
            table.id_column()
        );
        c.execute(&sql, vec![Param::Real(Some(cost)), text(id)])
            .await?;
    }
    Ok(())
}

fn spend_conditions(stmt: &mut Statement, q: &SpendQuery) -> Vec<String> {
    let mut conditions = Vec::new();
    if let Some(start) = q.start {
        let ph = stmt.bind(time(start));
        conditions.push(format!("start_time >= {ph}"));
    }
    if let Some(end) = q.end {
        let ph = stmt.bind(time(end));
        conditions.push(format!("start_time < {ph}"));
    }
    for (col, value) in [
        ("token_hash", &q.token_hash),
        ("team_id", &q.team_id),
        ("user_id", &q.user_id),
        ("model", &q.model),
    ] {
        if let Some(v) = value {
            let ph = stmt.bind(text(v));
            conditions.push(format!("{col} = {ph}"));
        }
    }
    conditions
}

/// See [`super::Store::spend_logs`].
pub(crate) async fn spend_logs<C: SqlConn>(
    c: &mut C,
    q: &SpendQuery,
) -> Result<Vec<SpendLog>, StoreError> {
    let mut stmt = Statement::new(format!("SELECT {LOG_COLUMNS} FROM spend_logs"));
    let conditions = spend_conditions(&mut stmt, q);
    push_where(&mut stmt, &conditions);
    stmt.push(" ORDER BY start_time DESC, request_id DESC");
    if let Some(limit) = q.limit {
        let ph = stmt.bind(Param::Int(Some(i64::from(limit))));
        stmt.push(&format!(" LIMIT {ph}"));
    }
    let rows = c.fetch_all(&stmt.text, stmt.params).await?;
    rows.iter().map(log_from).collect()
}

/// See [`super::Store::total_spend`].
pub(crate) async fn total_spend<C: SqlConn>(c: &mut C, q: &SpendQuery) -> Result<f64, StoreError> {
    let mut stmt = Statement::new("SELECT COALESCE(SUM(cost), 0.0) AS total FROM spend_logs");
    let conditions = spend_conditions(&mut stmt, q);
    push_where(&mut stmt, &conditions);
    let rows = c.fetch_all(&stmt.text, stmt.params).await?;
    let row = one(rows, "sum", "spend_logs")?;
    Ok(row.real("total")?.unwrap_or(0.0))
}

/// See [`super::Store::daily_spend`].
pub(crate) async fn daily_spend<C: SqlConn>(
    c: &mut C,
    group_by: SpendGroup,
    q: &SpendQuery,
) -> Result<Vec<DailySpend>, StoreError> {
    let group = match group_by {
        SpendGroup::Key => "COALESCE(key_alias, token_hash, '')",
        SpendGroup::Team => "COALESCE(team_id, '')",
        SpendGroup::User => "COALESCE(user_id, '')",
        SpendGroup::Model => "model",
    };
    let day = C::DIALECT.day_of("start_time");
    let mut stmt = Statement::new(format!(
        "SELECT {day} AS day, {group} AS grp, COALESCE(SUM(cost), 0.0) AS spend, \
         COUNT(*) AS requests, \
         CAST(COALESCE(SUM(prompt_tokens), 0) AS BIGINT) AS prompt_tokens, \
         CAST(COALESCE(SUM(completion_tokens), 0) AS BIGINT) AS completion_tokens \
         FROM spend_logs"
    ));
    let conditions = spend_conditions(&mut stmt, q);
    push_where(&mut stmt, &conditions);
    stmt.push(" GROUP BY 1, 2");
    let rows = c.fetch_all(&stmt.text, stmt.params).await?;
    let mut days = rows
        .iter()
        .map(|row| {
            let day: String = required(row.text("day"), "day")?;
            Ok(DailySpend {
                day: NaiveDate::parse_from_str(&day, "%Y-%m-%d").map_err(|e| bad("day", e))?,
                group: row.text("grp")?.unwrap_or_default(),
                spend: row.real("spend")?.unwrap_or(0.0),
                requests: row_count(row, "requests")?.unwrap_or(0),
                prompt_tokens: row_count(row, "prompt_tokens")?.unwrap_or(0),
                completion_tokens: row_count(row, "completion_tokens")?.unwrap_or(0),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    // Sorted here, not in SQL, so both backends agree whatever the
    // database's collation.
    days.sort_by(|a, b| (a.day, &a.group).cmp(&(b.day, &b.group)));
    Ok(days)
}

/// See [`super::Store::reset_due_budgets`]; `c` must be a transaction.
pub(crate) async fn reset_due_budgets<C: SqlConn>(
    c: &mut C,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut reset = 0;
    for table in Budgeted::ALL {
        let (name, id_col) = (table.table(), table.id_column());
        let due = format!(
            "SELECT {id_col} AS id, budget_duration FROM {name} \
             WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1"
        );
        let mut rows = Vec::new();
        for row in c.fetch_all(&due, vec![time(now)]).await? {
            let id: String = required(row.text("id"), "id")?;
            rows.push((id, row_duration(&row)?));
        }
        // Byte order, as `record_spend` locks (not the database's
        // collation, which may differ).
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        // The `<=` guard again: a concurrent reset (another replica) that
        // got there first leaves nothing to do.
        let update = format!(
            "UPDATE {name} SET spend = 0, budget_reset_at = $1 \
             WHERE {id_col} = $2 AND budget_reset_at <= $3"
        );
        for (id, duration) in rows {
            let next = duration.map(|d| d.next_after(now));
            reset += c
                .execute(&update, vec![opt_time(next), text(&id), time(now)])
                .await?;
        }
    }
    Ok(reset)
}
