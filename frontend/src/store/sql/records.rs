//! Keys, teams and users: create, read, update (only the fields an update
//! sets), list and delete.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    aggregate, conflict, count, duration, key_from, models, one, opt_count, opt_text, opt_time,
    push_where, row_count, team_from, text, time, user_from, Budgeted, Param, SqlConn, Statement,
    IN_CHUNK, KEY_COLUMNS, TEAM_COLUMNS, USER_COLUMNS,
};
use crate::store::types::{
    BudgetDuration, KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam, NewUser, TeamRecord,
    TeamUpdate, UserRecord, UserUpdate,
};
use crate::store::StoreError;

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
    let row = aggregate(rows)?;
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
