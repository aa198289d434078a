//! LiteLLM's admin API, master key only (the auth layer checks): keys
//! (`/key/generate`, `/key/info`, `/key/update`, `/key/delete`,
//! `/key/list`), teams (`/team/new`, `/team/info`, `/team/list`,
//! `/team/delete`), users (`/user/new`, `/user/info`) and spend
//! (`/global/spend`, `/global/spend/report`, `/spend/logs`). Request and
//! response fields are LiteLLM's; a key's id is `token`, the SHA-256 of its
//! secret, and the secret itself is answered once, by `/key/generate`.

use crate::control::{secret, store_error, ControlError, ControlPlane};
use crate::extract::OpenAiJson;
use crate::gateway_error::GatewayError;
use crate::state::AppState;
use crate::store::{
    BudgetDuration, KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam, NewUser, SpendGroup,
    SpendQuery, TeamRecord, UserRecord,
};
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

type Answer = Result<Json<Value>, GatewayError>;

fn plane(state: &AppState) -> Result<Arc<ControlPlane>, GatewayError> {
    state.control().cloned().ok_or_else(|| {
        ControlError::InvalidRequest {
            message: "the admin API needs `engine serve --config` with general_settings.master_key"
                .to_owned(),
            param: None,
        }
        .into()
    })
}

fn parse_duration(
    field: &str,
    value: Option<&str>,
) -> Result<Option<BudgetDuration>, ControlError> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            v.parse::<BudgetDuration>()
                .map_err(|e| ControlError::invalid(field, e.to_string()))
        })
        .transpose()
}

fn check_budget(field: &str, value: Option<f64>) -> Result<Option<f64>, ControlError> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(ControlError::invalid(
            field,
            format!("{field} must be a non-negative number"),
        )),
        other => Ok(other),
    }
}

/// A key as the API shows it: the record with `token` for its id.
fn key_json(key: &KeyRecord) -> Value {
    let mut v = serde_json::to_value(key).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        if let Some(token) = map.remove("token_hash") {
            map.insert("token".to_owned(), token);
        }
    }
    v
}

/// The record a lookup found, or the 404 naming `what` and `id`.
fn found<T>(
    lookup: Result<Option<T>, crate::store::StoreError>,
    what: &'static str,
    id: &str,
) -> Result<T, ControlError> {
    lookup.map_err(store_error)?.ok_or(ControlError::NotFound {
        what,
        id: id.to_owned(),
    })
}

/// The keys `filter` selects, as the API shows them.
async fn keys_of(control: &ControlPlane, filter: KeyFilter) -> Result<Vec<Value>, ControlError> {
    let keys = control
        .store()
        .list_keys(filter)
        .await
        .map_err(store_error)?;
    Ok(keys.iter().map(key_json).collect())
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `/key/generate` body.
#[derive(Debug, Default, Deserialize)]
pub struct GenerateKey {
    key_alias: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    /// Lifetime (`30d`, `1h`), LiteLLM's `duration`.
    duration: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    team_id: Option<String>,
    user_id: Option<String>,
    /// Guardrails this key's requests always run.
    guardrails: Option<Vec<String>>,
}

/// `POST /key/generate`.
pub async fn key_generate(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<GenerateKey>,
) -> Answer {
    let control = plane(&state)?;
    Ok(Json(generate(&control, body).await?))
}

async fn generate(control: &ControlPlane, body: GenerateKey) -> Result<Value, GatewayError> {
    let now = control.now();
    let lifetime = parse_duration("duration", body.duration.as_deref())?;
    if let Some(team_id) = &body.team_id {
        if control
            .store()
            .team(team_id)
            .await
            .map_err(store_error)?
            .is_none()
        {
            return Err(ControlError::NotFound {
                what: "team",
                id: team_id.clone(),
            }
            .into());
        }
    }
    if let Some(names) = &body.guardrails {
        for name in names {
            if !control.guardrails().names().any(|n| n == name) {
                return Err(ControlError::invalid(
                    "guardrails",
                    format!("no guardrail named `{name}` is configured"),
                )
                .into());
            }
        }
    }
    let mut metadata = body.metadata.unwrap_or_default();
    if let Some(names) = body.guardrails {
        metadata.insert("guardrails".to_owned(), json!(names));
    }
    let secret = secret::generate();
    let mut key = NewKey::new(
        secret::token_of(&secret),
        secret::display_name(&secret),
        now,
    );
    key.key_alias = body.key_alias.filter(|a| !a.is_empty());
    key.models = body.models;
    key.max_budget = check_budget("max_budget", body.max_budget)?;
    key.budget_duration = parse_duration("budget_duration", body.budget_duration.as_deref())?;
    key.rpm_limit = body.rpm_limit;
    key.tpm_limit = body.tpm_limit;
    key.expires = lifetime.map(|d| d.next_after(now));
    key.metadata = Value::Object(metadata);
    key.team_id = body.team_id;
    key.user_id = body.user_id;
    let record = control.store().create_key(key).await.map_err(store_error)?;
    control.invalidate_key(&record.token_hash);
    let mut v = key_json(&record);
    if let Value::Object(map) = &mut v {
        map.insert("key".to_owned(), Value::String(secret));
    }
    Ok(v)
}

/// `?key=` of `/key/info`.
#[derive(Debug, Deserialize)]
pub struct KeyParam {
    key: String,
}

/// `GET /key/info?key=<secret or token>`.
pub async fn key_info(State(state): State<AppState>, Query(q): Query<KeyParam>) -> Answer {
    let control = plane(&state)?;
    let token = secret::handle_of(&q.key);
    let key = control
        .store()
        .key(&token)
        .await
        .map_err(store_error)?
        .ok_or(ControlError::NotFound {
            what: "key",
            id: secret::display_name(&q.key),
        })?;
    Ok(Json(json!({"key": token, "info": key_json(&key)})))
}

/// `/key/update` body: the key and the fields to change (`null` clears).
#[derive(Debug, Deserialize)]
pub struct UpdateKey {
    key: String,
    #[serde(flatten)]
    fields: Map<String, Value>,
}

/// `POST /key/update`.
pub async fn key_update(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<UpdateKey>,
) -> Answer {
    let control = plane(&state)?;
    let token = secret::handle_of(&body.key);
    let mut update = KeyUpdate::default();
    for (field, value) in body.fields {
        let bad = |e: serde_json::Error| ControlError::invalid(&field, e.to_string());
        match field.as_str() {
            "key_alias" => update.key_alias = Some(serde_json::from_value(value).map_err(bad)?),
            "models" => update.models = Some(serde_json::from_value(value).map_err(bad)?),
            "max_budget" => {
                let v: Option<f64> = serde_json::from_value(value).map_err(bad)?;
                update.max_budget = Some(check_budget("max_budget", v)?);
            }
            "spend" => update.spend = Some(serde_json::from_value(value).map_err(bad)?),
            "budget_duration" => {
                let v: Option<String> = serde_json::from_value(value).map_err(bad)?;
                update.budget_duration = Some(parse_duration("budget_duration", v.as_deref())?);
            }
            "rpm_limit" => update.rpm_limit = Some(serde_json::from_value(value).map_err(bad)?),
            "tpm_limit" => update.tpm_limit = Some(serde_json::from_value(value).map_err(bad)?),
            "expires" => update.expires = Some(serde_json::from_value(value).map_err(bad)?),
            "metadata" => update.metadata = Some(value),
            "team_id" => update.team_id = Some(serde_json::from_value(value).map_err(bad)?),
            "user_id" => update.user_id = Some(serde_json::from_value(value).map_err(bad)?),
            "blocked" => update.blocked = Some(serde_json::from_value(value).map_err(bad)?),
            other => {
                return Err(
                    ControlError::invalid(other, format!("`{other}` cannot be updated")).into(),
                )
            }
        }
    }
    let record = control
        .store()
        .update_key(&token, update)
        .await
        .map_err(store_error)?;
    control.invalidate_key(&token);
    Ok(Json(key_json(&record)))
}

/// `/key/delete` body.
#[derive(Debug, Deserialize)]
pub struct DeleteKeys {
    #[serde(default)]
    keys: Vec<String>,
}

/// `POST /key/delete`: takes secrets or tokens.
pub async fn key_delete(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<DeleteKeys>,
) -> Answer {
    let control = plane(&state)?;
    let tokens: Vec<String> = body.keys.iter().map(|k| secret::handle_of(k)).collect();
    let mut deleted = Vec::new();
    for token in &tokens {
        if control
            .store()
            .key(token)
            .await
            .map_err(store_error)?
            .is_some()
        {
            deleted.push(token.clone());
        }
    }
    control
        .store()
        .delete_keys(&deleted)
        .await
        .map_err(store_error)?;
    for token in &tokens {
        control.invalidate_key(token);
    }
    Ok(Json(json!({"deleted_keys": deleted})))
}

/// `/key/list` query.
#[derive(Debug, Deserialize)]
pub struct ListKeys {
    page: Option<u32>,
    size: Option<u32>,
    team_id: Option<String>,
    user_id: Option<String>,
    key_alias: Option<String>,
    #[serde(default)]
    return_full_object: Option<bool>,
}

/// `GET /key/list`.
pub async fn key_list(State(state): State<AppState>, Query(q): Query<ListKeys>) -> Answer {
    let control = plane(&state)?;
    let size = q.size.unwrap_or(100).clamp(1, 1000);
    let page = q.page.unwrap_or(1).max(1);
    let filter = KeyFilter {
        team_id: q.team_id,
        user_id: q.user_id,
        key_alias: q.key_alias,
        page,
        size: Some(size),
    };
    let total = control
        .store()
        .count_keys(KeyFilter {
            page: 1,
            size: None,
            ..filter.clone()
        })
        .await
        .map_err(store_error)?;
    let keys = control
        .store()
        .list_keys(filter)
        .await
        .map_err(store_error)?;
    let keys: Vec<Value> = if q.return_full_object.unwrap_or(false) {
        keys.iter().map(key_json).collect()
    } else {
        keys.iter()
            .map(|k| Value::String(k.token_hash.clone()))
            .collect()
    };
    Ok(Json(json!({
        "keys": keys,
        "total_count": total,
        "current_page": page,
        "total_pages": total.div_ceil(u64::from(size)),
    })))
}

/// `/team/new` body.
#[derive(Debug, Default, Deserialize)]
pub struct NewTeamBody {
    team_id: Option<String>,
    team_alias: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// `POST /team/new`.
pub async fn team_new(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<NewTeamBody>,
) -> Answer {
    let control = plane(&state)?;
    let team_id = body
        .team_id
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut team = NewTeam::new(team_id, control.now());
    team.team_alias = body.team_alias;
    team.models = body.models;
    team.max_budget = check_budget("max_budget", body.max_budget)?;
    team.budget_duration = parse_duration("budget_duration", body.budget_duration.as_deref())?;
    team.rpm_limit = body.rpm_limit;
    team.tpm_limit = body.tpm_limit;
    team.metadata = Value::Object(body.metadata.unwrap_or_default());
    let record = control
        .store()
        .create_team(team)
        .await
        .map_err(store_error)?;
    control.invalidate_team(&record.team_id);
    Ok(Json(to_json(&record)))
}

/// `?team_id=` of `/team/info`.
#[derive(Debug, Deserialize)]
pub struct TeamParam {
    team_id: String,
}

/// `GET /team/info?team_id=`: the team and its keys.
pub async fn team_info(State(state): State<AppState>, Query(q): Query<TeamParam>) -> Answer {
    let control = plane(&state)?;
    let team: TeamRecord = found(control.store().team(&q.team_id).await, "team", &q.team_id)?;
    let keys = keys_of(
        &control,
        KeyFilter {
            team_id: Some(q.team_id.clone()),
            ..KeyFilter::default()
        },
    )
    .await?;
    Ok(Json(json!({
        "team_id": team.team_id,
        "team_info": to_json(&team),
        "keys": keys,
    })))
}

/// `GET /team/list`.
pub async fn team_list(State(state): State<AppState>) -> Answer {
    let control = plane(&state)?;
    let teams = control.store().list_teams().await.map_err(store_error)?;
    Ok(Json(to_json(&teams)))
}

/// `/team/delete` body.
#[derive(Debug, Deserialize)]
pub struct DeleteTeams {
    #[serde(default)]
    team_ids: Vec<String>,
}

/// `POST /team/delete`: the teams and their keys, as LiteLLM does. The
/// keys go first; a key created for the team meanwhile outlives it but is
/// refused at authentication, whose team lookup finds nothing.
pub async fn team_delete(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<DeleteTeams>,
) -> Answer {
    let control = plane(&state)?;
    let mut deleted = Vec::new();
    let mut deleted_keys = Vec::new();
    for id in &body.team_ids {
        if control
            .store()
            .team(id)
            .await
            .map_err(store_error)?
            .is_some()
        {
            let keys = control
                .store()
                .list_keys(KeyFilter {
                    team_id: Some(id.clone()),
                    ..KeyFilter::default()
                })
                .await
                .map_err(store_error)?;
            deleted_keys.extend(keys.into_iter().map(|k| k.token_hash));
            deleted.push(id.clone());
        }
    }
    control
        .store()
        .delete_keys(&deleted_keys)
        .await
        .map_err(store_error)?;
    for token in &deleted_keys {
        control.invalidate_key(token);
    }
    control
        .store()
        .delete_teams(&deleted)
        .await
        .map_err(store_error)?;
    for id in &body.team_ids {
        control.invalidate_team(id);
    }
    Ok(Json(
        json!({"deleted_teams": deleted, "deleted_keys": deleted_keys}),
    ))
}

/// `/user/new` body.
#[derive(Debug, Default, Deserialize)]
pub struct NewUserBody {
    user_id: Option<String>,
    user_email: Option<String>,
    user_role: Option<String>,
    #[serde(default)]
    models: Vec<String>,
    max_budget: Option<f64>,
    budget_duration: Option<String>,
    rpm_limit: Option<u64>,
    tpm_limit: Option<u64>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
    /// LiteLLM creates a key for the new user unless told not to.
    auto_create_key: Option<bool>,
}

/// `POST /user/new`: the user, and (by default, as LiteLLM) a key for it.
pub async fn user_new(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<NewUserBody>,
) -> Answer {
    let control = plane(&state)?;
    let user_id = body
        .user_id
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut user = NewUser::new(user_id, control.now());
    user.user_email = body.user_email;
    user.user_role = body.user_role;
    user.models = body.models;
    user.max_budget = check_budget("max_budget", body.max_budget)?;
    user.budget_duration = parse_duration("budget_duration", body.budget_duration.as_deref())?;
    user.rpm_limit = body.rpm_limit;
    user.tpm_limit = body.tpm_limit;
    user.metadata = Value::Object(body.metadata.unwrap_or_default());
    let record: UserRecord = control
        .store()
        .create_user(user)
        .await
        .map_err(store_error)?;
    control.invalidate_user(&record.user_id);
    let mut v = to_json(&record);
    if body.auto_create_key.unwrap_or(true) {
        let key = generate(
            &control,
            GenerateKey {
                user_id: Some(record.user_id.clone()),
                ..GenerateKey::default()
            },
        )
        .await?;
        if let (Value::Object(map), Some(secret)) = (&mut v, key.get("key")) {
            map.insert("key".to_owned(), secret.clone());
        }
    }
    Ok(Json(v))
}

/// `?user_id=` of `/user/info`.
#[derive(Debug, Deserialize)]
pub struct UserParam {
    user_id: String,
}

/// `GET /user/info?user_id=`: the user and its keys.
pub async fn user_info(State(state): State<AppState>, Query(q): Query<UserParam>) -> Answer {
    let control = plane(&state)?;
    let user = found(control.store().user(&q.user_id).await, "user", &q.user_id)?;
    let keys = keys_of(
        &control,
        KeyFilter {
            user_id: Some(q.user_id.clone()),
            ..KeyFilter::default()
        },
    )
    .await?;
    Ok(Json(json!({
        "user_id": user.user_id,
        "user_info": to_json(&user),
        "keys": keys,
    })))
}

/// Date-range and owner filters of the spend endpoints (LiteLLM's names:
/// `start_date`/`end_date` as `YYYY-MM-DD`, end inclusive, or RFC 3339
/// times; `api_key` takes a secret or a token).
#[derive(Debug, Default, Deserialize)]
pub struct SpendParams {
    start_date: Option<String>,
    end_date: Option<String>,
    api_key: Option<String>,
    team_id: Option<String>,
    user_id: Option<String>,
    model: Option<String>,
    group_by: Option<String>,
    limit: Option<u32>,
}

fn parse_time(field: &str, s: &str, end: bool) -> Result<DateTime<Utc>, ControlError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let day = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        ControlError::invalid(
            field,
            format!("{field} must be YYYY-MM-DD or an RFC 3339 time"),
        )
    })?;
    // An end date includes its whole day.
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    Ok(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

impl SpendParams {
    fn query(&self) -> Result<SpendQuery, ControlError> {
        Ok(SpendQuery {
            start: self
                .start_date
                .as_deref()
                .map(|s| parse_time("start_date", s, false))
                .transpose()?,
            end: self
                .end_date
                .as_deref()
                .map(|s| parse_time("end_date", s, true))
                .transpose()?,
            token_hash: self.api_key.as_deref().map(secret::handle_of),
            team_id: self.team_id.clone(),
            user_id: self.user_id.clone(),
            model: self.model.clone(),
            limit: self.limit,
        })
    }
}

/// `GET /global/spend`: total spend (optionally filtered).
pub async fn global_spend(State(state): State<AppState>, Query(q): Query<SpendParams>) -> Answer {
    let control = plane(&state)?;
    control.flush_spend().await;
    let total = control
        .store()
        .total_spend(&q.query()?)
        .await
        .map_err(store_error)?;
    Ok(Json(json!({"spend": total, "max_budget": null})))
}

/// `GET /global/spend/report?group_by=api_key|team|user|model`: spend per
/// day per group, the admin UI's chart.
pub async fn global_spend_report(
    State(state): State<AppState>,
    Query(q): Query<SpendParams>,
) -> Answer {
    let control = plane(&state)?;
    let group = match q.group_by.as_deref().unwrap_or("api_key") {
        "api_key" | "key" => SpendGroup::Key,
        "team" => SpendGroup::Team,
        "user" | "customer" => SpendGroup::User,
        "model" => SpendGroup::Model,
        other => {
            return Err(ControlError::invalid(
                "group_by",
                format!("group_by must be api_key, team, user or model, not `{other}`"),
            )
            .into())
        }
    };
    control.flush_spend().await;
    let rows = control
        .store()
        .daily_spend(group, &q.query()?)
        .await
        .map_err(store_error)?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "date": r.day.to_string(), "group": r.group, "spend": r.spend,
                "requests": r.requests, "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// `GET /spend/logs`: spend logs by date range, key, team, user, model.
pub async fn spend_logs(State(state): State<AppState>, Query(q): Query<SpendParams>) -> Answer {
    let control = plane(&state)?;
    control.flush_spend().await;
    let logs = control
        .store()
        .spend_logs(&q.query()?)
        .await
        .map_err(store_error)?;
    Ok(Json(to_json(&logs)))
}
