//! Spend: recording logs (and charging keys, teams and users in the same
//! transaction), querying them, and starting budgets over.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use super::{
    aggregate, bad, count, log_from, opt_text, opt_time, push_where, required, row_count,
    row_duration, text, time, Budgeted, Param, SqlConn, SqlRow, Statement, LOG_COLUMNS,
};
use crate::store::types::{DailySpend, SpendGroup, SpendLog, SpendQuery};
use crate::store::StoreError;

/// Logs per `INSERT`: one statement a chunk rather than one a log (each
/// statement is a round trip, to the server or to the SQLite worker
/// thread); 200 rows of 14 parameters stay far under both databases'
/// limits (SQLite 32,766, PostgreSQL 65,535).
const INSERT_ROWS: usize = 200;

/// See [`super::Store::record_spend`]; `c` must be a transaction.
pub(crate) async fn record_spend<C: SqlConn>(
    c: &mut C,
    logs: &[SpendLog],
) -> Result<(), StoreError> {
    let mut ordered: Vec<&SpendLog> = logs.iter().collect();
    ordered.sort_by(|a, b| a.request_id.cmp(&b.request_id));
    // Cost per (table, id) of the logs actually inserted, in lock order.
    let mut charges: BTreeMap<(Budgeted, &str), f64> = BTreeMap::new();
    for chunk in ordered.chunks(INSERT_ROWS) {
        let mut stmt = Statement::new(format!("INSERT INTO spend_logs ({LOG_COLUMNS}) VALUES "));
        for (i, log) in chunk.iter().enumerate() {
            let placeholders: Vec<String> = log_params(log)?
                .into_iter()
                .map(|p| stmt.bind_in_order(C::DIALECT, p))
                .collect();
            stmt.push(if i == 0 { "(" } else { ", (" });
            stmt.push(&placeholders.join(", "));
            stmt.push(")");
        }
        stmt.push(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
        let rows = c.fetch_all(&stmt.text, stmt.params).await?;
        // Only what this statement inserted is charged: a log the store
        // already held, or a second copy in the batch, is not.
        let mut inserted = rows
            .iter()
            .map(|row| required(row.text("request_id"), "request_id"))
            .collect::<Result<HashSet<String>, _>>()?;
        for log in chunk {
            if !inserted.remove(&log.request_id) {
                continue;
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

/// One log's values, in [`LOG_COLUMNS`] order.
fn log_params(log: &SpendLog) -> Result<[Param; 14], StoreError> {
    Ok([
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
    ])
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
    let row = aggregate(rows)?;
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
///
/// The new period's spend is not 0 but what the logs that ended since the
/// period began (the old `budget_reset_at`) cost: spend written between
/// the end of the period and this sweep belongs to the new period and must
/// not be wiped.
pub(crate) async fn reset_due_budgets<C: SqlConn>(
    c: &mut C,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut reset = 0;
    for table in Budgeted::ALL {
        let (name, id_col) = (table.table(), table.id_column());
        let due = format!(
            "SELECT {id_col} AS id, budget_duration, budget_reset_at FROM {name} \
             WHERE budget_reset_at IS NOT NULL AND budget_reset_at <= $1"
        );
        let mut rows = Vec::new();
        for row in c.fetch_all(&due, vec![time(now)]).await? {
            let id: String = required(row.text("id"), "id")?;
            let period_start = required(row.time("budget_reset_at"), "budget_reset_at")?;
            rows.push((id, row_duration(&row)?, period_start));
        }
        // Byte order, as `record_spend` locks (not the database's
        // collation, which may differ).
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        // The `<=` guard again: a concurrent reset (another replica) that
        // got there first leaves nothing to do. Spend logs name their key,
        // team and user in columns of the same names as the id columns.
        let update = format!(
            "UPDATE {name} SET spend = (SELECT COALESCE(SUM(cost), 0.0) FROM spend_logs \
             WHERE spend_logs.{id_col} = $1 AND end_time >= $2), budget_reset_at = $3 \
             WHERE {id_col} = $4 AND budget_reset_at <= $5"
        );
        for (id, duration, period_start) in rows {
            let next = duration.map(|d| d.next_after(now));
            let params = vec![
                text(&id),
                time(period_start),
                opt_time(next),
                text(&id),
                time(now),
            ];
            reset += c.execute(&update, params).await?;
        }
    }
    Ok(reset)
}
