//! The shared store suite: every test is written once against
//! `Arc<dyn Store>` and run on both backends by `store_tests!` (SQLite in a
//! fresh file, PostgreSQL in a fresh schema; see `store_support`). Times
//! are fixed values, never the wall clock, except where `update_key`
//! restarts a budget period "now".

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_support;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use frontend::store::{
    BudgetDuration, KeyFilter, KeyUpdate, NewKey, NewTeam, NewUser, SpendGroup, SpendLog,
    SpendQuery, SpendStatus, SqliteStore, Store, StoreError, TeamUpdate, UserUpdate,
};
use serde_json::json;
use store_support::{PgSchema, SqliteFile};

/// Declares each test once per backend: `sqlite::name` and
/// `postgres::name`.
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::store_support::run_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    crate::store_support::run_postgres(super::$name).await;
                }
            )*
        }
    };
}

store_tests!(
    key_lifecycle,
    key_update_restarts_budget_period,
    list_keys_filters_and_pages,
    teams_lifecycle,
    users_lifecycle,
    team_and_user_updates,
    record_spend_charges_key_team_and_user,
    duplicate_request_ids_count_once,
    batches_of_several_inserts_charge_each_log_once,
    spend_log_filters,
    total_and_daily_spend,
    budget_reset_follows_each_duration,
    concurrent_record_spend_is_exact,
    concurrent_resets_reset_each_record_once,
);

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn dur(s: &str) -> BudgetDuration {
    s.parse().unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A full key: alias, limits, owner, metadata.
fn full_key(hash: &str, alias: &str, created_at: DateTime<Utc>) -> NewKey {
    NewKey {
        key_alias: Some(alias.to_owned()),
        models: vec!["gpt-4o".into(), "claude-3-5-sonnet".into()],
        max_budget: Some(10.5),
        budget_duration: Some(dur("1d")),
        rpm_limit: Some(60),
        tpm_limit: Some(100_000),
        expires: Some(t("2026-01-01T00:00:00Z")),
        metadata: json!({"env": "prod", "tags": ["a", "b"]}),
        team_id: Some("team-a".into()),
        user_id: Some("user-1".into()),
        ..NewKey::new(hash, format!("sk-...{}", &hash[..4]), created_at)
    }
}

fn log(id: &str, key: Option<&str>, cost: f64, start: &str) -> SpendLog {
    let start_time = t(start);
    SpendLog {
        request_id: id.to_owned(),
        token_hash: key.map(str::to_owned),
        key_alias: None,
        team_id: None,
        user_id: None,
        model: "gpt-4o".into(),
        provider_model: "openai/gpt-4o-2024-08-06".into(),
        prompt_tokens: 10,
        completion_tokens: 5,
        cost,
        start_time,
        end_time: start_time + TimeDelta::milliseconds(1500),
        cache_hit: false,
        status: SpendStatus::Success,
    }
}

async fn key_lifecycle(store: Arc<dyn Store>) {
    let t0 = t("2025-03-01T12:00:00.5Z");
    let created = store
        .create_key(full_key("aaaa1111", "prod-key", t0))
        .await
        .unwrap();
    assert_eq!(created.token_hash, "aaaa1111");
    assert_eq!(created.key_name, "sk-...aaaa");
    assert_eq!(created.key_alias.as_deref(), Some("prod-key"));
    assert_eq!(created.models, vec!["gpt-4o", "claude-3-5-sonnet"]);
    assert_eq!(created.max_budget, Some(10.5));
    assert_eq!(created.spend, 0.0);
    assert_eq!(created.budget_duration, Some(dur("1d")));
    assert_eq!(created.budget_reset_at, Some(t("2025-03-02T12:00:00.5Z")));
    assert_eq!(created.rpm_limit, Some(60));
    assert_eq!(created.tpm_limit, Some(100_000));
    assert_eq!(created.expires, Some(t("2026-01-01T00:00:00Z")));
    assert_eq!(created.metadata, json!({"env": "prod", "tags": ["a", "b"]}));
    assert_eq!(created.team_id.as_deref(), Some("team-a"));
    assert_eq!(created.user_id.as_deref(), Some("user-1"));
    assert!(!created.blocked);
    assert_eq!(created.created_at, t0);

    assert_eq!(store.key("aaaa1111").await.unwrap(), Some(created.clone()));
    assert_eq!(store.key("nope").await.unwrap(), None);

    // A bare key: every optional field empty.
    let bare = store
        .create_key(NewKey::new("bbbb2222", "sk-...bbbb", t0))
        .await
        .unwrap();
    assert_eq!(bare.key_alias, None);
    assert!(bare.models.is_empty());
    assert_eq!(bare.budget_reset_at, None);
    assert_eq!(bare.metadata, json!({}));

    // Same hash, or same alias: conflict.
    let err = store
        .create_key(NewKey::new("aaaa1111", "sk-...aaaa", t0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "key", .. }),
        "{err:?}"
    );
    let err = store
        .create_key(full_key("cccc3333", "prod-key", t0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "key", .. }),
        "{err:?}"
    );

    // Update: set, replace and clear fields; untouched ones stay.
    let updated = store
        .update_key(
            "aaaa1111",
            KeyUpdate {
                key_alias: Some(Some("renamed".into())),
                models: Some(vec!["gpt-4o-mini".into()]),
                max_budget: Some(None),
                rpm_limit: Some(Some(120)),
                tpm_limit: Some(None),
                expires: Some(None),
                metadata: Some(json!({"env": "staging"})),
                team_id: Some(Some("team-b".into())),
                user_id: Some(None),
                blocked: Some(true),
                spend: Some(1.25),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.key_alias.as_deref(), Some("renamed"));
    assert_eq!(updated.models, vec!["gpt-4o-mini"]);
    assert_eq!(updated.max_budget, None);
    assert_eq!(updated.rpm_limit, Some(120));
    assert_eq!(updated.tpm_limit, None);
    assert_eq!(updated.expires, None);
    assert_eq!(updated.metadata, json!({"env": "staging"}));
    assert_eq!(updated.team_id.as_deref(), Some("team-b"));
    assert_eq!(updated.user_id, None);
    assert!(updated.blocked);
    assert_eq!(updated.spend, 1.25);
    assert_eq!(updated.budget_duration, created.budget_duration);
    assert_eq!(updated.budget_reset_at, created.budget_reset_at);
    assert_eq!(updated.created_at, t0);
    assert_eq!(store.key("aaaa1111").await.unwrap(), Some(updated.clone()));

    // The old alias is free again; taking the new one is a conflict.
    store
        .create_key(full_key("dddd4444", "prod-key", t0))
        .await
        .unwrap();
    let err = store
        .update_key(
            "bbbb2222",
            KeyUpdate {
                key_alias: Some(Some("renamed".into())),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "key", .. }),
        "{err:?}"
    );

    // An empty update returns the key; a missing key is NotFound.
    assert_eq!(
        store
            .update_key("aaaa1111", KeyUpdate::default())
            .await
            .unwrap(),
        updated
    );
    for update in [
        KeyUpdate::default(),
        KeyUpdate {
            blocked: Some(false),
            ..KeyUpdate::default()
        },
    ] {
        let err = store.update_key("nope", update).await.unwrap_err();
        assert_eq!(
            err,
            StoreError::NotFound {
                what: "key",
                id: "nope".into()
            }
        );
    }

    // Delete counts only keys that existed.
    let deleted = store
        .delete_keys(&["aaaa1111".into(), "nope".into(), "bbbb2222".into()])
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(store.key("aaaa1111").await.unwrap(), None);
    assert_eq!(store.delete_keys(&[]).await.unwrap(), 0);
    let left = store.list_keys(KeyFilter::default()).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].token_hash, "dddd4444");
}

async fn key_update_restarts_budget_period(store: Arc<dyn Store>) {
    let t0 = t("2025-03-01T00:00:00Z");
    store
        .create_key(NewKey::new("k1", "sk-...k1", t0))
        .await
        .unwrap();

    // A new duration with an explicit reset time.
    let k = store
        .update_key(
            "k1",
            KeyUpdate {
                budget_duration: Some(Some(dur("7d"))),
                budget_reset_at: Some(Some(t("2025-03-08T00:00:00Z"))),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(k.budget_duration, Some(dur("7d")));
    assert_eq!(k.budget_reset_at, Some(t("2025-03-08T00:00:00Z")));

    // A new duration alone: the period restarts now.
    let before = Utc::now();
    let k = store
        .update_key(
            "k1",
            KeyUpdate {
                budget_duration: Some(Some(dur("1h"))),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    let after = Utc::now();
    let reset = k.budget_reset_at.unwrap();
    assert!(
        reset >= before + TimeDelta::hours(1) - TimeDelta::milliseconds(1)
            && reset <= after + TimeDelta::hours(1),
        "{reset}"
    );

    // Clearing the duration clears the reset time.
    let k = store
        .update_key(
            "k1",
            KeyUpdate {
                budget_duration: Some(None),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(k.budget_duration, None);
    assert_eq!(k.budget_reset_at, None);
}

async fn list_keys_filters_and_pages(store: Arc<dyn Store>) {
    let t0 = t("2025-01-01T00:00:00Z");
    for i in 0..25i64 {
        let key = NewKey {
            key_alias: Some(format!("alias-{i:02}")),
            team_id: (i % 2 == 0).then(|| "team-a".to_owned()),
            user_id: (i % 3 == 0).then(|| "user-1".to_owned()),
            ..NewKey::new(
                format!("hash-{i:02}"),
                format!("sk-...{i:02}"),
                t0 + TimeDelta::minutes(i),
            )
        };
        store.create_key(key).await.unwrap();
    }
    let hashes = |keys: Vec<frontend::store::KeyRecord>| -> Vec<String> {
        keys.into_iter().map(|k| k.token_hash).collect()
    };
    let want =
        |ids: &[i64]| -> Vec<String> { ids.iter().map(|i| format!("hash-{i:02}")).collect() };

    // Everything, newest first.
    let all = store.list_keys(KeyFilter::default()).await.unwrap();
    assert_eq!(hashes(all), want(&(0..25).rev().collect::<Vec<_>>()));

    let team = KeyFilter {
        team_id: Some("team-a".into()),
        ..KeyFilter::default()
    };
    let keys = store.list_keys(team.clone()).await.unwrap();
    assert_eq!(
        hashes(keys),
        want(&(0..25).rev().filter(|i| i % 2 == 0).collect::<Vec<_>>())
    );
    assert_eq!(store.count_keys(team).await.unwrap(), 13);

    let user = KeyFilter {
        user_id: Some("user-1".into()),
        ..KeyFilter::default()
    };
    assert_eq!(store.list_keys(user.clone()).await.unwrap().len(), 9);
    assert_eq!(store.count_keys(user).await.unwrap(), 9);

    let both = KeyFilter {
        team_id: Some("team-a".into()),
        user_id: Some("user-1".into()),
        ..KeyFilter::default()
    };
    assert_eq!(
        hashes(store.list_keys(both).await.unwrap()),
        want(&[24, 18, 12, 6, 0])
    );

    let alias = KeyFilter {
        key_alias: Some("alias-07".into()),
        ..KeyFilter::default()
    };
    assert_eq!(hashes(store.list_keys(alias).await.unwrap()), want(&[7]));

    // Pages of 10: 24..15, 14..5, 4..0, then nothing; page 0 reads as 1.
    let page = |page, size| KeyFilter {
        page,
        size: Some(size),
        ..KeyFilter::default()
    };
    let p1 = store.list_keys(page(1, 10)).await.unwrap();
    assert_eq!(
        hashes(p1.clone()),
        want(&(15..25).rev().collect::<Vec<_>>())
    );
    assert_eq!(store.list_keys(page(0, 10)).await.unwrap(), p1);
    assert_eq!(
        hashes(store.list_keys(page(2, 10)).await.unwrap()),
        want(&(5..15).rev().collect::<Vec<_>>())
    );
    assert_eq!(
        hashes(store.list_keys(page(3, 10)).await.unwrap()),
        want(&[4, 3, 2, 1, 0])
    );
    assert!(store.list_keys(page(4, 10)).await.unwrap().is_empty());
    // Paging combines with filters; the count ignores the page.
    let team_page = KeyFilter {
        team_id: Some("team-a".into()),
        page: 2,
        size: Some(5),
        ..KeyFilter::default()
    };
    assert_eq!(
        hashes(store.list_keys(team_page.clone()).await.unwrap()),
        want(&[14, 12, 10, 8, 6])
    );
    assert_eq!(store.count_keys(team_page).await.unwrap(), 13);
    assert_eq!(store.count_keys(KeyFilter::default()).await.unwrap(), 25);
}

async fn teams_lifecycle(store: Arc<dyn Store>) {
    let t0 = t("2025-01-31T10:00:00Z");
    let a = store
        .create_team(NewTeam {
            team_alias: Some("Research".into()),
            models: vec!["gpt-4o".into()],
            max_budget: Some(100.0),
            budget_duration: Some(dur("monthly")),
            rpm_limit: Some(1000),
            tpm_limit: Some(5_000_000),
            metadata: json!({"cost_center": 42}),
            ..NewTeam::new("team-a", t0)
        })
        .await
        .unwrap();
    assert_eq!(a.team_alias.as_deref(), Some("Research"));
    assert_eq!(a.models, vec!["gpt-4o"]);
    assert_eq!(a.max_budget, Some(100.0));
    assert_eq!(a.spend, 0.0);
    assert_eq!(a.budget_duration, Some(dur("1mo")));
    // A calendar month from 31 January is the last day of February.
    assert_eq!(a.budget_reset_at, Some(t("2025-02-28T10:00:00Z")));
    assert_eq!(a.rpm_limit, Some(1000));
    assert_eq!(a.tpm_limit, Some(5_000_000));
    assert_eq!(a.metadata, json!({"cost_center": 42}));
    assert_eq!(a.created_at, t0);
    let b = store
        .create_team(NewTeam::new("team-b", t0 + TimeDelta::seconds(1)))
        .await
        .unwrap();
    assert_eq!(b.budget_reset_at, None);

    assert_eq!(store.team("team-a").await.unwrap(), Some(a.clone()));
    assert_eq!(store.team("team-z").await.unwrap(), None);
    let err = store
        .create_team(NewTeam::new("team-a", t0))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::Conflict {
            what: "team",
            id: "team-a".into()
        }
    );
    assert_eq!(store.list_teams().await.unwrap(), vec![a, b.clone()]);
    assert_eq!(
        store
            .delete_teams(&["team-a".into(), "team-z".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.list_teams().await.unwrap(), vec![b]);
}

async fn users_lifecycle(store: Arc<dyn Store>) {
    let t0 = t("2025-06-01T00:00:00Z");
    let u1 = store
        .create_user(NewUser {
            user_email: Some("ada@example.com".into()),
            user_role: Some("internal_user".into()),
            models: vec!["gpt-4o-mini".into()],
            max_budget: Some(5.0),
            budget_duration: Some(dur("weekly")),
            rpm_limit: Some(10),
            tpm_limit: Some(1000),
            metadata: json!({"team": "ml"}),
            ..NewUser::new("user-1", t0)
        })
        .await
        .unwrap();
    assert_eq!(u1.user_email.as_deref(), Some("ada@example.com"));
    assert_eq!(u1.user_role.as_deref(), Some("internal_user"));
    assert_eq!(u1.models, vec!["gpt-4o-mini"]);
    assert_eq!(u1.budget_reset_at, Some(t("2025-06-08T00:00:00Z")));
    assert_eq!(u1.rpm_limit, Some(10));
    assert_eq!(u1.tpm_limit, Some(1000));
    assert_eq!(u1.metadata, json!({"team": "ml"}));
    let u2 = store
        .create_user(NewUser::new("user-2", t0 + TimeDelta::seconds(1)))
        .await
        .unwrap();
    assert_eq!(store.user("user-1").await.unwrap(), Some(u1.clone()));
    assert_eq!(store.user("user-9").await.unwrap(), None);
    let err = store
        .create_user(NewUser::new("user-2", t0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { what: "user", .. }),
        "{err:?}"
    );
    assert_eq!(store.list_users().await.unwrap(), vec![u1, u2.clone()]);
    assert_eq!(
        store
            .delete_users(&["user-1".into(), "user-9".into()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.list_users().await.unwrap(), vec![u2]);
}

async fn team_and_user_updates(store: Arc<dyn Store>) {
    let t0 = t("2025-01-31T10:00:00Z");
    let team = store
        .create_team(NewTeam {
            team_alias: Some("Old".into()),
            max_budget: Some(1.0),
            rpm_limit: Some(5),
            ..NewTeam::new("t1", t0)
        })
        .await
        .unwrap();
    let updated = store
        .update_team(
            "t1",
            TeamUpdate {
                team_alias: Some(Some("New".into())),
                models: Some(vec!["gpt-4o".into()]),
                max_budget: Some(None),
                budget_duration: Some(Some(dur("1mo"))),
                budget_reset_at: Some(Some(t("2025-02-28T10:00:00Z"))),
                tpm_limit: Some(Some(1000)),
                metadata: Some(json!({"k": "v"})),
                ..TeamUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.team_alias.as_deref(), Some("New"));
    assert_eq!(updated.models, vec!["gpt-4o"]);
    assert_eq!(updated.max_budget, None);
    assert_eq!(updated.budget_duration, Some(dur("1mo")));
    assert_eq!(updated.budget_reset_at, Some(t("2025-02-28T10:00:00Z")));
    assert_eq!(updated.rpm_limit, team.rpm_limit);
    assert_eq!(updated.tpm_limit, Some(1000));
    assert_eq!(updated.metadata, json!({"k": "v"}));
    assert_eq!(store.team("t1").await.unwrap(), Some(updated.clone()));
    assert_eq!(
        store
            .update_team("t1", TeamUpdate::default())
            .await
            .unwrap(),
        updated
    );
    let err = store
        .update_team("t9", TeamUpdate::default())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        StoreError::NotFound {
            what: "team",
            id: "t9".into()
        }
    );

    store
        .create_user(NewUser {
            user_email: Some("a@example.com".into()),
            ..NewUser::new("u1", t0)
        })
        .await
        .unwrap();
    let user = store
        .update_user(
            "u1",
            UserUpdate {
                user_email: Some(None),
                user_role: Some(Some("proxy_admin".into())),
                spend: Some(2.5),
                rpm_limit: Some(Some(7)),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.user_email, None);
    assert_eq!(user.user_role.as_deref(), Some("proxy_admin"));
    assert_eq!(user.spend, 2.5);
    assert_eq!(user.rpm_limit, Some(7));
    assert_eq!(store.user("u1").await.unwrap(), Some(user));
    let err = store
        .update_user(
            "u9",
            UserUpdate {
                spend: Some(0.0),
                ..UserUpdate::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "user", .. }),
        "{err:?}"
    );
}

/// A key `k1` of team `t1` and user `u1`, all three with budgets.
async fn key_team_user(store: &Arc<dyn Store>, created_at: DateTime<Utc>) {
    store
        .create_team(NewTeam::new("t1", created_at))
        .await
        .unwrap();
    store
        .create_user(NewUser::new("u1", created_at))
        .await
        .unwrap();
    store
        .create_key(NewKey {
            key_alias: Some("alias-1".into()),
            team_id: Some("t1".into()),
            user_id: Some("u1".into()),
            ..NewKey::new("k1", "sk-...k1", created_at)
        })
        .await
        .unwrap();
}

fn charged(id: &str, cost: f64, start: &str) -> SpendLog {
    SpendLog {
        key_alias: Some("alias-1".into()),
        team_id: Some("t1".into()),
        user_id: Some("u1".into()),
        ..log(id, Some("k1"), cost, start)
    }
}

async fn record_spend_charges_key_team_and_user(store: Arc<dyn Store>) {
    key_team_user(&store, t("2025-01-01T00:00:00Z")).await;
    store.record_spend(&[]).await.unwrap();
    let a = charged("req-a", 0.1, "2025-01-02T10:00:00Z");
    let b = SpendLog {
        cache_hit: true,
        status: SpendStatus::Failure,
        prompt_tokens: 0,
        completion_tokens: 0,
        ..charged("req-b", 0.2, "2025-01-02T11:00:00.123456Z")
    };
    // Team and an unknown user, no key: the team pays, nobody else.
    let c = SpendLog {
        team_id: Some("t1".into()),
        user_id: Some("u-unknown".into()),
        ..log("req-c", None, 0.3, "2025-01-02T12:00:00Z")
    };
    store
        .record_spend(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();

    let key = store.key("k1").await.unwrap().unwrap();
    assert!(close(key.spend, 0.3), "{}", key.spend);
    let team = store.team("t1").await.unwrap().unwrap();
    assert!(close(team.spend, 0.6), "{}", team.spend);
    let user = store.user("u1").await.unwrap().unwrap();
    assert!(close(user.spend, 0.3), "{}", user.spend);

    // Logs come back field for field, newest first.
    let logs = store.spend_logs(&SpendQuery::default()).await.unwrap();
    assert_eq!(logs, vec![c, b, a]);
}

async fn duplicate_request_ids_count_once(store: Arc<dyn Store>) {
    key_team_user(&store, t("2025-01-01T00:00:00Z")).await;
    let a = charged("req-a", 1.0, "2025-01-02T10:00:00Z");
    let b = charged("req-b", 2.0, "2025-01-02T10:01:00Z");
    let c = charged("req-c", 4.0, "2025-01-02T10:02:00Z");
    store.record_spend(&[a.clone(), b.clone()]).await.unwrap();
    // A retried batch overlapping the first, and a duplicate inside one
    // batch (with a different cost, which must not count either).
    store.record_spend(&[b.clone(), c.clone()]).await.unwrap();
    let c_again = SpendLog {
        cost: 100.0,
        ..c.clone()
    };
    store
        .record_spend(&[c_again.clone(), c_again])
        .await
        .unwrap();
    store
        .record_spend(&[
            charged("req-d", 8.0, "2025-01-02T10:03:00Z"),
            charged("req-d", 8.0, "2025-01-02T10:03:00Z"),
        ])
        .await
        .unwrap();

    let key = store.key("k1").await.unwrap().unwrap();
    assert!(close(key.spend, 15.0), "{}", key.spend);
    assert!(close(store.team("t1").await.unwrap().unwrap().spend, 15.0));
    assert!(close(store.user("u1").await.unwrap().unwrap().spend, 15.0));
    let logs = store.spend_logs(&SpendQuery::default()).await.unwrap();
    assert_eq!(logs.len(), 4);
    assert_eq!(logs[1], c);
    let total = store.total_spend(&SpendQuery::default()).await.unwrap();
    assert!(close(total, 15.0), "{total}");
}

/// A batch larger than one `INSERT` statement (the store writes a few
/// hundred logs a statement): every log lands, and a request id repeated
/// across statements, or already stored, is charged once.
async fn batches_of_several_inserts_charge_each_log_once(store: Arc<dyn Store>) {
    key_team_user(&store, t("2025-01-01T00:00:00Z")).await;
    store
        .record_spend(&[charged("req-0000", 1.0, "2025-01-02T09:00:00Z")])
        .await
        .unwrap();
    let mut batch: Vec<SpendLog> = (0..1000)
        .map(|i| charged(&format!("req-{i:04}"), 1.0, "2025-01-02T10:00:00Z"))
        .collect();
    // The copy sorts next to its original, in the last statement, and
    // costs more: charging it would show.
    batch.push(charged("req-0999", 50.0, "2025-01-02T10:00:00Z"));
    batch.push(charged("req-0500", 50.0, "2025-01-02T10:00:00Z"));
    store.record_spend(&batch).await.unwrap();

    let key = store.key("k1").await.unwrap().unwrap();
    assert!(close(key.spend, 1000.0), "{}", key.spend);
    assert!(close(
        store.team("t1").await.unwrap().unwrap().spend,
        1000.0
    ));
    let total = store.total_spend(&SpendQuery::default()).await.unwrap();
    assert!(close(total, 1000.0), "{total}");
    let logs = store.spend_logs(&SpendQuery::default()).await.unwrap();
    assert_eq!(logs.len(), 1000);
}

/// Ten logs over three days, two keys, two teams, two models.
fn spread_logs() -> Vec<SpendLog> {
    let rows = [
        (
            "r01",
            "k1",
            "alias-1",
            "t1",
            "gpt-4o",
            0.01,
            "2025-02-01T00:00:00Z",
        ),
        (
            "r02",
            "k1",
            "alias-1",
            "t1",
            "gpt-4o",
            0.02,
            "2025-02-01T23:59:59.999999Z",
        ),
        (
            "r03",
            "k2",
            "",
            "t1",
            "claude",
            0.04,
            "2025-02-01T12:00:00Z",
        ),
        (
            "r04",
            "k2",
            "",
            "t2",
            "claude",
            0.08,
            "2025-02-02T00:00:00Z",
        ),
        (
            "r05",
            "k1",
            "alias-1",
            "t2",
            "gpt-4o",
            0.16,
            "2025-02-02T08:00:00Z",
        ),
        (
            "r06",
            "k1",
            "alias-1",
            "t1",
            "claude",
            0.32,
            "2025-02-02T16:00:00Z",
        ),
        (
            "r07",
            "k2",
            "",
            "t2",
            "gpt-4o",
            0.64,
            "2025-02-03T00:00:00Z",
        ),
        (
            "r08",
            "k1",
            "alias-1",
            "t1",
            "gpt-4o",
            1.28,
            "2025-02-03T01:00:00Z",
        ),
        (
            "r09",
            "k2",
            "",
            "t1",
            "claude",
            2.56,
            "2025-02-03T02:00:00Z",
        ),
        (
            "r10",
            "k1",
            "alias-1",
            "t2",
            "claude",
            5.12,
            "2025-02-03T23:00:00Z",
        ),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, (id, key, alias, team, model, cost, start))| SpendLog {
            key_alias: (!alias.is_empty()).then(|| (*alias).to_owned()),
            team_id: Some((*team).to_owned()),
            user_id: Some(if i % 2 == 0 { "u1" } else { "u2" }.to_owned()),
            model: (*model).to_owned(),
            prompt_tokens: 100 + i as u64,
            completion_tokens: 10 * i as u64,
            ..log(id, Some(key), *cost, start)
        })
        .collect()
}

fn ids(logs: &[SpendLog]) -> Vec<&str> {
    logs.iter().map(|l| l.request_id.as_str()).collect()
}

async fn spend_log_filters(store: Arc<dyn Store>) {
    store.record_spend(&spread_logs()).await.unwrap();
    let q = |f: fn(&mut SpendQuery)| {
        let mut q = SpendQuery::default();
        f(&mut q);
        q
    };
    let all = store.spend_logs(&SpendQuery::default()).await.unwrap();
    assert_eq!(
        ids(&all),
        ["r10", "r09", "r08", "r07", "r06", "r05", "r04", "r02", "r03", "r01"]
    );

    // [start, end): the second day exactly, its first instant included and
    // the next day's excluded.
    let day2 = q(|q| {
        q.start = Some(t("2025-02-02T00:00:00Z"));
        q.end = Some(t("2025-02-03T00:00:00Z"));
    });
    assert_eq!(
        ids(&store.spend_logs(&day2).await.unwrap()),
        ["r06", "r05", "r04"]
    );
    let from = q(|q| q.start = Some(t("2025-02-03T01:00:00Z")));
    assert_eq!(
        ids(&store.spend_logs(&from).await.unwrap()),
        ["r10", "r09", "r08"]
    );
    let until = q(|q| q.end = Some(t("2025-02-01T23:59:59.999999Z")));
    assert_eq!(
        ids(&store.spend_logs(&until).await.unwrap()),
        ["r03", "r01"]
    );

    let key = q(|q| q.token_hash = Some("k2".into()));
    assert_eq!(
        ids(&store.spend_logs(&key).await.unwrap()),
        ["r09", "r07", "r04", "r03"]
    );
    let team = q(|q| q.team_id = Some("t2".into()));
    assert_eq!(
        ids(&store.spend_logs(&team).await.unwrap()),
        ["r10", "r07", "r05", "r04"]
    );
    let user = q(|q| q.user_id = Some("u2".into()));
    assert_eq!(
        ids(&store.spend_logs(&user).await.unwrap()),
        ["r10", "r08", "r06", "r04", "r02"]
    );
    let model = q(|q| q.model = Some("claude".into()));
    assert_eq!(
        ids(&store.spend_logs(&model).await.unwrap()),
        ["r10", "r09", "r06", "r04", "r03"]
    );
    let combined = q(|q| {
        q.token_hash = Some("k1".into());
        q.model = Some("gpt-4o".into());
        q.team_id = Some("t1".into());
        q.start = Some(t("2025-02-01T12:00:00Z"));
    });
    assert_eq!(
        ids(&store.spend_logs(&combined).await.unwrap()),
        ["r08", "r02"]
    );
    let limited = q(|q| {
        q.model = Some("claude".into());
        q.limit = Some(2);
    });
    assert_eq!(
        ids(&store.spend_logs(&limited).await.unwrap()),
        ["r10", "r09"]
    );
    let nothing = q(|q| q.token_hash = Some("k9".into()));
    assert!(store.spend_logs(&nothing).await.unwrap().is_empty());
}

async fn total_and_daily_spend(store: Arc<dyn Store>) {
    store.record_spend(&spread_logs()).await.unwrap();
    let total = |q: SpendQuery| {
        let store = store.clone();
        async move { store.total_spend(&q).await.unwrap() }
    };
    assert!(close(total(SpendQuery::default()).await, 10.23));
    let k1 = SpendQuery {
        token_hash: Some("k1".into()),
        ..SpendQuery::default()
    };
    assert!(close(
        total(k1).await,
        0.01 + 0.02 + 0.16 + 0.32 + 1.28 + 5.12
    ));
    let day3_t1 = SpendQuery {
        team_id: Some("t1".into()),
        start: Some(t("2025-02-03T00:00:00Z")),
        ..SpendQuery::default()
    };
    assert!(close(total(day3_t1).await, 1.28 + 2.56));
    let none = SpendQuery {
        model: Some("nope".into()),
        ..SpendQuery::default()
    };
    assert_eq!(total(none).await, 0.0);

    let day = |d: u32| NaiveDate::from_ymd_opt(2025, 2, d).unwrap();
    let rows = |group: SpendGroup, q: SpendQuery| {
        let store = store.clone();
        async move {
            store
                .daily_spend(group, &q)
                .await
                .unwrap()
                .into_iter()
                .map(|d| (d.day, d.group, d.spend, d.requests))
                .collect::<Vec<_>>()
        }
    };
    let check = |got: Vec<(NaiveDate, String, f64, u64)>, want: &[(NaiveDate, &str, f64, u64)]| {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert!(
                g.0 == w.0 && g.1 == w.1 && close(g.2, w.2) && g.3 == w.3,
                "{got:?} != {want:?}"
            );
        }
    };

    // By key: the alias where there is one, else the hash.
    check(
        rows(SpendGroup::Key, SpendQuery::default()).await,
        &[
            (day(1), "alias-1", 0.03, 2),
            (day(1), "k2", 0.04, 1),
            (day(2), "alias-1", 0.48, 2),
            (day(2), "k2", 0.08, 1),
            (day(3), "alias-1", 6.40, 2),
            (day(3), "k2", 3.20, 2),
        ],
    );
    check(
        rows(SpendGroup::Team, SpendQuery::default()).await,
        &[
            (day(1), "t1", 0.07, 3),
            (day(2), "t1", 0.32, 1),
            (day(2), "t2", 0.24, 2),
            (day(3), "t1", 3.84, 2),
            (day(3), "t2", 5.76, 2),
        ],
    );
    // By model, within a date range and for one key.
    let range_k1 = SpendQuery {
        start: Some(t("2025-02-02T00:00:00Z")),
        end: Some(t("2025-02-04T00:00:00Z")),
        token_hash: Some("k1".into()),
        ..SpendQuery::default()
    };
    check(
        rows(SpendGroup::Model, range_k1).await,
        &[
            (day(2), "claude", 0.32, 1),
            (day(2), "gpt-4o", 0.16, 1),
            (day(3), "claude", 5.12, 1),
            (day(3), "gpt-4o", 1.28, 1),
        ],
    );
    check(
        rows(
            SpendGroup::User,
            SpendQuery {
                start: Some(t("2025-02-03T00:00:00Z")),
                ..SpendQuery::default()
            },
        )
        .await,
        &[
            (day(3), "u1", 0.64 + 2.56, 2),
            (day(3), "u2", 1.28 + 5.12, 2),
        ],
    );
    // Token sums per bar.
    let by_day = store
        .daily_spend(
            SpendGroup::Team,
            &SpendQuery {
                team_id: Some("t2".into()),
                ..SpendQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_day.len(), 2);
    // r04 (i=3) and r05 (i=4) on day 2.
    assert_eq!(by_day[0].prompt_tokens, 103 + 104);
    assert_eq!(by_day[0].completion_tokens, 30 + 40);
}

async fn budget_reset_follows_each_duration(store: Arc<dyn Store>) {
    // Daily key, weekly team, monthly user, a 30-day key, and a key with no
    // budget period at all.
    let t0 = t("2025-01-30T00:00:00Z");
    store
        .create_team(NewTeam {
            budget_duration: Some(dur("weekly")),
            ..NewTeam::new("t1", t0)
        })
        .await
        .unwrap();
    store
        .create_user(NewUser {
            budget_duration: Some(dur("1mo")),
            ..NewUser::new("u1", t("2025-01-31T10:00:00Z"))
        })
        .await
        .unwrap();
    store
        .create_key(NewKey {
            budget_duration: Some(dur("daily")),
            team_id: Some("t1".into()),
            user_id: Some("u1".into()),
            ..NewKey::new("k-daily", "sk-...dail", t0)
        })
        .await
        .unwrap();
    store
        .create_key(NewKey {
            budget_duration: Some(dur("30d")),
            ..NewKey::new("k-30d", "sk-...30d", t0)
        })
        .await
        .unwrap();
    store
        .create_key(NewKey::new("k-none", "sk-...none", t0))
        .await
        .unwrap();
    let spend_on = |key: &str, id: &str| SpendLog {
        team_id: Some("t1".into()),
        user_id: Some("u1".into()),
        ..log(id, Some(key), 1.5, "2025-01-30T12:00:00Z")
    };
    store
        .record_spend(&[
            spend_on("k-daily", "r1"),
            spend_on("k-30d", "r2"),
            spend_on("k-none", "r3"),
        ])
        .await
        .unwrap();
    let spend = |kind: &'static str, id: &'static str| {
        let store = store.clone();
        async move {
            match kind {
                "key" => {
                    let k = store.key(id).await.unwrap().unwrap();
                    (k.spend, k.budget_reset_at)
                }
                "team" => {
                    let t = store.team(id).await.unwrap().unwrap();
                    (t.spend, t.budget_reset_at)
                }
                _ => {
                    let u = store.user(id).await.unwrap().unwrap();
                    (u.spend, u.budget_reset_at)
                }
            }
        }
    };

    // Before anything is due: nothing happens.
    assert_eq!(
        store
            .reset_due_budgets(t("2025-01-30T23:59:59Z"))
            .await
            .unwrap(),
        0
    );

    // The daily key is due at 31 Jan 00:00; nothing else is.
    let now = t("2025-01-31T00:00:00Z");
    assert_eq!(store.reset_due_budgets(now).await.unwrap(), 1);
    assert_eq!(
        spend("key", "k-daily").await,
        (0.0, Some(t("2025-02-01T00:00:00Z")))
    );
    assert_eq!(
        spend("team", "t1").await,
        (4.5, Some(t("2025-02-06T00:00:00Z")))
    );
    assert_eq!(
        spend("user", "u1").await,
        (4.5, Some(t("2025-02-28T10:00:00Z")))
    );
    assert_eq!(
        spend("key", "k-30d").await,
        (1.5, Some(t("2025-03-01T00:00:00Z")))
    );
    assert_eq!(spend("key", "k-none").await, (1.5, None));
    // Running it again at the same time resets nothing twice.
    assert_eq!(store.reset_due_budgets(now).await.unwrap(), 0);

    // 28 Feb 10:00: the daily key (due 1 Feb), the weekly team (due 6 Feb)
    // and the monthly user (31 Jan + 1 month = 28 Feb) are due; each
    // starts again from now, the user a calendar month later.
    store
        .record_spend(&[spend_on("k-daily", "r4")])
        .await
        .unwrap();
    let now = t("2025-02-28T10:00:00Z");
    assert_eq!(store.reset_due_budgets(now).await.unwrap(), 3);
    assert_eq!(
        spend("key", "k-daily").await,
        (0.0, Some(t("2025-03-01T10:00:00Z")))
    );
    assert_eq!(
        spend("team", "t1").await,
        (0.0, Some(t("2025-03-07T10:00:00Z")))
    );
    assert_eq!(
        spend("user", "u1").await,
        (0.0, Some(t("2025-03-28T10:00:00Z")))
    );
    assert_eq!(
        spend("key", "k-30d").await,
        (1.5, Some(t("2025-03-01T00:00:00Z")))
    );
    assert_eq!(spend("key", "k-none").await, (1.5, None));

    // 1 Mar 10:00: the 30-day key (due 00:00) and the daily key (due
    // exactly now).
    assert_eq!(
        store
            .reset_due_budgets(t("2025-03-01T10:00:00Z"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        spend("key", "k-30d").await,
        (0.0, Some(t("2025-03-31T10:00:00Z")))
    );
    assert_eq!(spend("key", "k-none").await.0, 1.5);
}

async fn concurrent_record_spend_is_exact(store: Arc<dyn Store>) {
    key_team_user(&store, t("2025-01-01T00:00:00Z")).await;
    let start = t("2025-01-02T00:00:00Z");
    // 32 writers at a time: more than PostgreSQL's pool of 10 connections,
    // so writes to the same key, team and user rows still race, but no
    // caller waits out the pool's 3 s acquire timeout behind a thousand
    // others on a loaded CI machine (that measured the machine, not the
    // store's arithmetic).
    let writers = Arc::new(tokio::sync::Semaphore::new(32));
    let tasks: Vec<_> = (0..1000u32)
        .map(|i| {
            let store = store.clone();
            let writers = writers.clone();
            tokio::spawn(async move {
                let _turn = writers.acquire().await.unwrap();
                let log = SpendLog {
                    start_time: start + TimeDelta::milliseconds(i64::from(i)),
                    ..charged(
                        &format!("req-{i:04}"),
                        0.000123 * f64::from(i),
                        "2025-01-02T00:00:00Z",
                    )
                };
                store.record_spend(&[log]).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let expected: f64 = (0..1000u32).map(|i| 0.000123 * f64::from(i)).sum();
    let key = store.key("k1").await.unwrap().unwrap();
    assert!(close(key.spend, expected), "{} != {expected}", key.spend);
    assert!(close(
        store.team("t1").await.unwrap().unwrap().spend,
        expected
    ));
    assert!(close(
        store.user("u1").await.unwrap().unwrap().spend,
        expected
    ));
    let q = SpendQuery {
        token_hash: Some("k1".into()),
        ..SpendQuery::default()
    };
    assert_eq!(store.spend_logs(&q).await.unwrap().len(), 1000);
    assert!(close(store.total_spend(&q).await.unwrap(), expected));
}

async fn concurrent_resets_reset_each_record_once(store: Arc<dyn Store>) {
    let t0 = t("2025-01-01T00:00:00Z");
    let mut logs = Vec::new();
    for i in 0..50 {
        let hash = format!("key-{i:02}");
        store
            .create_key(NewKey {
                budget_duration: Some(dur("1d")),
                ..NewKey::new(&hash, format!("sk-...{i:02}"), t0)
            })
            .await
            .unwrap();
        logs.push(log(
            &format!("req-{i:02}"),
            Some(&hash),
            1.0,
            "2025-01-01T01:00:00Z",
        ));
    }
    store.record_spend(&logs).await.unwrap();
    // Eight "replicas" run the reset job at the same moment, while spend
    // keeps arriving.
    let now = t("2025-01-02T00:00:00Z");
    let resets: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.reset_due_budgets(now).await.unwrap() })
        })
        .collect();
    let late = SpendLog {
        start_time: now,
        ..log("req-late", Some("key-07"), 0.5, "2025-01-02T00:00:00Z")
    };
    store.record_spend(&[late]).await.unwrap();
    let mut total = 0;
    for reset in resets {
        total += reset.await.unwrap();
    }
    assert_eq!(total, 50);
    let keys = store.list_keys(KeyFilter::default()).await.unwrap();
    for key in keys {
        assert_eq!(key.budget_reset_at, Some(t("2025-01-03T00:00:00Z")));
        // The late log may land before or after the reset of key-07.
        if key.token_hash != "key-07" {
            assert_eq!(key.spend, 0.0, "{}", key.token_hash);
        } else {
            assert!(key.spend == 0.0 || key.spend == 0.5, "{}", key.spend);
        }
    }
}

/// Records written before a close are there after reopening.
async fn persistence_check(first: Arc<dyn Store>) {
    key_team_user(&first, t("2025-01-01T00:00:00Z")).await;
    first
        .record_spend(&[charged("req-1", 0.75, "2025-01-02T00:00:00Z")])
        .await
        .unwrap();
}

async fn persistence_verify(second: Arc<dyn Store>) {
    let key = second.key("k1").await.unwrap().unwrap();
    assert_eq!(key.key_alias.as_deref(), Some("alias-1"));
    assert!(close(key.spend, 0.75));
    assert!(close(second.team("t1").await.unwrap().unwrap().spend, 0.75));
    assert!(close(second.user("u1").await.unwrap().unwrap().spend, 0.75));
    let logs = second.spend_logs(&SpendQuery::default()).await.unwrap();
    assert_eq!(logs, vec![charged("req-1", 0.75, "2025-01-02T00:00:00Z")]);
}

#[tokio::test]
async fn sqlite_file_survives_reopen() {
    let file = SqliteFile::new();
    let first = SqliteStore::connect(file.as_str()).await.unwrap();
    persistence_check(Arc::new(first.clone())).await;
    first.close().await;
    drop(first);
    // Reopening runs the migrations again: they are already applied.
    let second = SqliteStore::connect(&format!("sqlite://{}", file.as_str()))
        .await
        .unwrap();
    persistence_verify(Arc::new(second.clone())).await;
    second.close().await;
}

/// Two stores on one file, as two gateway processes would open it: writes
/// from both wait for each other (busy timeout, `BEGIN IMMEDIATE`) and
/// none is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_processes_share_a_file() {
    let file = SqliteFile::new();
    let a = SqliteStore::connect(file.as_str()).await.unwrap();
    let b = SqliteStore::connect(file.as_str()).await.unwrap();
    key_team_user(
        &(Arc::new(a.clone()) as Arc<dyn Store>),
        t("2025-01-01T00:00:00Z"),
    )
    .await;
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let store: Arc<dyn Store> = if i % 2 == 0 {
                Arc::new(a.clone())
            } else {
                Arc::new(b.clone())
            };
            tokio::spawn(async move {
                let log = charged(
                    &format!("req-{i:03}"),
                    0.001 * f64::from(i),
                    "2025-01-02T00:00:00Z",
                );
                store.record_spend(&[log]).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let expected: f64 = (0..200u32).map(|i| 0.001 * f64::from(i)).sum();
    let key = b.key("k1").await.unwrap().unwrap();
    assert!(close(key.spend, expected), "{} != {expected}", key.spend);
    assert_eq!(
        a.spend_logs(&SpendQuery::default()).await.unwrap().len(),
        200
    );
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn postgres_schema_survives_reconnect() {
    let Some(db) = PgSchema::new().await else {
        return;
    };
    let first = db.open().await;
    persistence_check(Arc::new(first.clone())).await;
    first.close().await;
    let second = db.open().await;
    persistence_verify(Arc::new(second.clone())).await;
    second.close().await;
    db.drop_schema().await;
}
