//! The control plane over both stores (SQLite file, PostgreSQL schema),
//! with a clock the tests move by hand: budgets refused and reset after
//! their duration, expiry, exact spend after 1,000 concurrent requests,
//! budgets holding under concurrency, model lists and rpm limits. The HTTP
//! side (status codes, the admin API, two replicas over Redis, kill -9) is
//! `tests/python/test_gateway_control.py`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_support;

use chrono::{DateTime, TimeDelta, Utc};
use frontend::config::GatewayConfig;
use frontend::control::{secret, Caller, Clock, ControlError, ControlPlane, Outcome};
use frontend::store::{NewKey, NewTeam, Store};
use std::sync::{Arc, Mutex};

macro_rules! plane_tests {
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

plane_tests!(
    budget_is_refused_then_reset_after_its_duration,
    expired_keys_are_refused,
    spend_is_exact_after_1000_concurrent_requests,
    budget_holds_under_concurrency,
    model_lists_and_rpm_limits,
);

/// USD per token of the test model: 1,000 prompt tokens cost 0.01.
const PRICE: f64 = 0.00001;

const CONFIG: &str = r#"
model_list:
  - model_name: priced
    litellm_params: {model: openai/priced, api_base: "http://127.0.0.1:9", input_cost_per_token: 0.00001, output_cost_per_token: 0.00001}
  - model_name: other
    litellm_params: {model: openai/other, api_base: "http://127.0.0.1:9"}
general_settings:
  master_key: sk-master
  proxy_batch_write_at: 3600
  budget_reset_interval: 3600
"#;

/// A clock that moves only when told.
#[derive(Clone)]
struct HandClock(Arc<Mutex<DateTime<Utc>>>);

impl HandClock {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(
            "2026-03-01T12:00:00Z".parse().unwrap(),
        )))
    }
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
    fn advance(&self, by: TimeDelta) {
        *self.0.lock().unwrap() += by;
    }
    fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

async fn plane(store: Arc<dyn Store>, clock: &HandClock) -> Arc<ControlPlane> {
    let config = GatewayConfig::from_yaml(CONFIG, &|_| None).unwrap();
    ControlPlane::with_store(&config, store, &prometheus::Registry::new(), clock.clock())
        .await
        .unwrap()
}

/// Creates a key through the store; returns its secret.
async fn key(store: &dyn Store, now: DateTime<Utc>, edit: impl FnOnce(&mut NewKey)) -> String {
    let s = secret::generate();
    let mut k = NewKey::new(secret::token_of(&s), secret::display_name(&s), now);
    edit(&mut k);
    store.create_key(k).await.unwrap();
    s
}

fn tokens(prompt: u64) -> Outcome {
    Outcome {
        prompt_tokens: prompt,
        completion_tokens: 0,
        cache_hit: false,
        success: true,
    }
}

async fn caller(plane: &ControlPlane, secret: &str) -> Caller {
    plane.authenticate(Some(secret)).await.unwrap()
}

async fn budget_is_refused_then_reset_after_its_duration(store: Arc<dyn Store>) {
    let clock = HandClock::new();
    let plane = plane(Arc::clone(&store), &clock).await;
    let secret = key(&*store, clock.now(), |k| {
        k.max_budget = Some(0.015);
        k.budget_duration = Some("1d".parse().unwrap());
    })
    .await;
    let who = caller(&plane, &secret).await;
    for _ in 0..2 {
        let a = plane.admit(&who, "priced").await.unwrap();
        assert!((plane.settle(a, tokens(1000)) - 1000.0 * PRICE).abs() < 1e-12);
    }
    // 0.02 spent (unflushed: the ledger counts it) of 0.015.
    let err = plane.admit(&who, "priced").await.err().unwrap();
    assert!(
        matches!(err, ControlError::BudgetExceeded { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("Budget has been exceeded"),
        "{err}"
    );
    plane.flush_spend().await;
    let who = caller(&plane, &secret).await;
    assert!(plane.admit(&who, "priced").await.is_err());
    // Not yet: 23 hours later the period still runs.
    clock.advance(TimeDelta::hours(23));
    assert_eq!(plane.reset_due_budgets().await.unwrap(), 0);
    assert!(plane.admit(&who, "priced").await.is_err());
    // A day after creation the budget starts again.
    clock.advance(TimeDelta::hours(2));
    assert_eq!(plane.reset_due_budgets().await.unwrap(), 1);
    let who = caller(&plane, &secret).await;
    plane.admit(&who, "priced").await.unwrap();
    let stored = store
        .key(&secret::token_of(&secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.spend, 0.0);
    assert_eq!(
        stored.budget_reset_at.unwrap(),
        clock.now() + TimeDelta::days(1)
    );
}

async fn expired_keys_are_refused(store: Arc<dyn Store>) {
    let clock = HandClock::new();
    let plane = plane(Arc::clone(&store), &clock).await;
    let expires = clock.now() + TimeDelta::hours(1);
    let secret = key(&*store, clock.now(), |k| k.expires = Some(expires)).await;
    caller(&plane, &secret).await;
    clock.advance(TimeDelta::hours(2));
    let err = plane.authenticate(Some(&secret)).await.err().unwrap();
    assert!(matches!(err, ControlError::KeyExpired { .. }), "{err:?}");
    assert!(matches!(
        plane.authenticate(Some("sk-never-issued")).await,
        Err(ControlError::InvalidKey)
    ));
    assert!(matches!(
        plane.authenticate(None).await,
        Err(ControlError::MissingKey)
    ));
    assert!(matches!(
        plane.authenticate(Some("sk-master")).await,
        Ok(Caller::Master)
    ));
}

async fn spend_is_exact_after_1000_concurrent_requests(store: Arc<dyn Store>) {
    let clock = HandClock::new();
    let plane = plane(Arc::clone(&store), &clock).await;
    store
        .create_team(NewTeam::new("team-a", clock.now()))
        .await
        .unwrap();
    let secret = key(&*store, clock.now(), |k| k.team_id = Some("team-a".into())).await;
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let plane = Arc::clone(&plane);
            let secret = secret.clone();
            tokio::spawn(async move {
                let who = plane.authenticate(Some(&secret)).await.unwrap();
                let a = plane.admit(&who, "priced").await.unwrap();
                plane.settle(a, tokens(1 + i % 97))
            })
        })
        .collect();
    let mut expected = 0.0;
    for t in tasks {
        expected += t.await.unwrap();
    }
    plane.flush_spend().await;
    let token = secret::token_of(&secret);
    let key = store.key(&token).await.unwrap().unwrap();
    let team = store.team("team-a").await.unwrap().unwrap();
    assert!(
        (key.spend - expected).abs() < 1e-9,
        "{} vs {expected}",
        key.spend
    );
    assert!((team.spend - expected).abs() < 1e-9);
    let logs = store
        .spend_logs(&frontend::store::SpendQuery {
            token_hash: Some(token),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(logs.len(), 1000);
}

async fn budget_holds_under_concurrency(store: Arc<dyn Store>) {
    let clock = HandClock::new();
    let plane = plane(Arc::clone(&store), &clock).await;
    // Ten requests of 100 tokens fit exactly.
    let secret = key(&*store, clock.now(), |k| {
        k.max_budget = Some(10.0 * 100.0 * PRICE)
    })
    .await;
    let who = caller(&plane, &secret).await;
    for _ in 0..10 {
        let a = plane.admit(&who, "priced").await.unwrap();
        plane.settle(a, tokens(100));
    }
    // Nothing flushed yet: 200 concurrent callers must all see the spend.
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let plane = Arc::clone(&plane);
            let who = who.clone();
            tokio::spawn(async move { plane.admit(&who, "priced").await.is_ok() })
        })
        .collect();
    for t in tasks {
        assert!(!t.await.unwrap(), "a request was admitted past the budget");
    }
}

async fn model_lists_and_rpm_limits(store: Arc<dyn Store>) {
    let clock = HandClock::new();
    let plane = plane(Arc::clone(&store), &clock).await;
    let secret = key(&*store, clock.now(), |k| {
        k.models = vec!["priced".into()];
        k.rpm_limit = Some(5);
    })
    .await;
    let who = caller(&plane, &secret).await;
    let err = plane.admit(&who, "other").await.err().unwrap();
    assert!(
        matches!(err, ControlError::ModelNotAllowed { .. }),
        "{err:?}"
    );
    for _ in 0..5 {
        plane.admit(&who, "priced").await.unwrap();
    }
    match plane.admit(&who, "priced").await {
        Err(ControlError::RateLimited {
            limit, retry_after, ..
        }) => {
            assert_eq!(limit, "rpm");
            assert!(retry_after.as_secs() <= 60);
        }
        other => panic!("expected a rate limit, got {:?}", other.err()),
    }
}
