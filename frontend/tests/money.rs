//! Every token is paid for (issue 12, items 6 to 9 and per-sequence
//! rpm): streams cut by the upstream, the client or a timeout are charged
//! for what they delivered; a long stream is not cut by the deployment
//! timeout, a stalled one is; budgets hold under 1,000 concurrent requests
//! (reservations), against a record load racing a batch write and across a
//! budget reset; spend survives a store outage in the journal, memory
//! stays bounded without one, and auth fails fast when PostgreSQL is down;
//! rpm counts each sequence of a batched request.
//!
//! Upstreams are aimock (`tests/fixtures/aimock/money.json`); the gateway
//! runs in-process on a free port. The `kill -9` while PostgreSQL is down
//! is `tests/python/test_gateway_control.py`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod provider_support;
mod store_support;

use chrono::{DateTime, TimeDelta, Utc};
use common::{fixture, Aimock};
use frontend::config::params::DeploymentParams;
use frontend::config::GatewayConfig;
use frontend::control::{secret, Caller, ControlError, ControlPlane, Outcome};
use frontend::router::Router;
use frontend::store::{
    KeyFilter, KeyRecord, KeyUpdate, NewKey, NewTeam, NewUser, SpendLog, SpendQuery, SpendStatus,
    Store, StoreError, TeamRecord, TeamUpdate, UserRecord, UserUpdate,
};
use frontend::{AppState, ProviderError};
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store_support::{PgSchema, SqliteFile};
use tokio::sync::Notify;

/// USD per token of the priced test models: 1,000 tokens cost 0.01.
const PRICE: f64 = 0.00001;

// ------------------------------------------------------------------ harness

fn config(mock: &str, extra_general: &str) -> GatewayConfig {
    let yaml = format!(
        r#"
model_list:
  - model_name: priced
    litellm_params: {{model: openai/priced, api_base: "{mock}/v1", api_key: sk-up,
                     input_cost_per_token: {PRICE}, output_cost_per_token: {PRICE}}}
general_settings:
  master_key: sk-master
  proxy_batch_write_at: 3600
  budget_reset_interval: 3600
{extra_general}
"#
    );
    GatewayConfig::from_yaml(&yaml, &|_| None).unwrap()
}

/// A key created through the store; returns its secret.
async fn key(store: &dyn Store, edit: impl FnOnce(&mut NewKey)) -> String {
    let s = secret::generate();
    let mut k = NewKey::new(secret::token_of(&s), secret::display_name(&s), Utc::now());
    edit(&mut k);
    store.create_key(k).await.unwrap();
    s
}

async fn logs_of(store: &dyn Store, secret: &str) -> Vec<SpendLog> {
    store
        .spend_logs(&SpendQuery {
            token_hash: Some(secret::token_of(secret)),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The gateway over aimock with a control plane on `store`.
struct Gateway {
    base: String,
    plane: Arc<ControlPlane>,
    store: Arc<dyn Store>,
    client: reqwest::Client,
    _mock: Aimock,
    _db: SqliteFile,
}

impl Gateway {
    async fn start() -> Self {
        let mock = Aimock::start(&fixture("money.json"), &[]);
        let config = config(&mock.url, "");
        let db = SqliteFile::new();
        let store: Arc<dyn Store> = Arc::new(
            frontend::store::SqliteStore::connect(db.as_str())
                .await
                .unwrap(),
        );
        let registry = prometheus::Registry::new();
        let plane = ControlPlane::with_store(
            &config,
            Arc::clone(&store),
            &registry,
            frontend::control::system_clock(),
        )
        .await
        .unwrap();
        let http = frontend::providers::http::client().unwrap();
        let router = Router::from_config(&config, None, http, &registry).unwrap();
        let state = AppState::new(vec![Arc::new(router)], registry)
            .unwrap()
            .with_control(Arc::clone(&plane));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(frontend::serve(
            listener,
            frontend::router(state),
            std::future::pending(),
        ));
        Self {
            base,
            plane,
            store,
            client: reqwest::Client::new(),
            _mock: mock,
            _db: db,
        }
    }

    fn post(&self, path: &str, secret: &str, body: Value) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(secret)
            .json(&body)
    }

    /// The key's spend logs once `n` are written (settlement of a dropped
    /// stream happens when the server notices the drop).
    async fn wait_logs(&self, secret: &str, n: usize) -> Vec<SpendLog> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.plane.flush_spend().await;
            let logs = logs_of(&*self.store, secret).await;
            if logs.len() >= n || Instant::now() > deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The `data:` payloads of an SSE body read to its end.
async fn sse_data(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

fn stream_body(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": "priced", "stream": true,
                          "messages": [{"role": "user", "content": content}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn assert_charged_for_delivery(logs: &[SpendLog], min_completion: u64) {
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log.status, SpendStatus::Failure, "{log:?}");
    assert!(log.prompt_tokens > 0, "the prompt was not charged: {log:?}");
    assert!(
        log.completion_tokens >= min_completion,
        "delivered output not charged: {log:?}"
    );
    let expected = (log.prompt_tokens + log.completion_tokens) as f64 * PRICE;
    assert!(
        log.cost > 0.0 && (log.cost - expected).abs() < 1e-12,
        "{log:?}"
    );
}

// ------------------------------------------------------- item 6: cut streams

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_upstream_cuts_is_charged_for_what_it_delivered() {
    let gw = Gateway::start().await;
    let secret = key(&*gw.store, |_| {}).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &secret,
            stream_body("cut stream", json!({})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let data = sse_data(resp).await;
    assert!(
        data.iter().any(|d| d.contains("\"error\"")),
        "a cut stream ends with an error event: {data:?}"
    );
    let logs = gw.wait_logs(&secret, 1).await;
    // Six chunks of eight characters arrived (the first is the role).
    assert_charged_for_delivery(&logs, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_client_drops_is_charged_for_what_it_delivered() {
    let gw = Gateway::start().await;
    let secret = key(&*gw.store, |_| {}).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &secret,
            stream_body("slow stream", json!({})),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut content_events = 0;
    while content_events < 5 {
        let bytes = body.next().await.unwrap().unwrap();
        content_events += String::from_utf8_lossy(&bytes)
            .matches("\"content\"")
            .count();
    }
    drop(body);
    let logs = gw.wait_logs(&secret, 1).await;
    assert_charged_for_delivery(&logs, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_by_the_clients_timeout_is_charged_for_what_it_delivered() {
    let gw = Gateway::start().await;
    let secret = key(&*gw.store, |_| {}).await;
    // The request's own `timeout` (LiteLLM's) ends the ~3 s stream at 1 s.
    let started = Instant::now();
    let resp = gw
        .post(
            "/v1/chat/completions",
            &secret,
            stream_body("slow stream", json!({"timeout": 1})),
        )
        .send()
        .await
        .unwrap();
    let data = sse_data(resp).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
    let logs = gw.wait_logs(&secret, 1).await;
    assert_charged_for_delivery(&logs, 4);
}

// ------------------------------------------- item 7: ttfb and idle timeouts

fn deployment(
    mock: &Aimock,
    timeout: Option<f64>,
    stream_timeout: Option<f64>,
) -> DeploymentParams {
    DeploymentParams {
        model: "openai/priced".to_owned(),
        api_base: Some(format!("{}/v1", mock.url)),
        api_key: Some("sk-up".to_owned()),
        timeout,
        stream_timeout,
        ..DeploymentParams::default()
    }
}

#[tokio::test]
async fn a_long_stream_is_not_cut_by_the_deployment_timeout() {
    let mock = Aimock::start(&fixture("money.json"), &[]);
    // About 2.5 s of chunks, 125 ms apart, under a 1 s timeout.
    let p = provider_support::build(deployment(&mock, Some(1.0), None));
    let req = provider_support::chat(
        json!({"messages": [{"role": "user", "content": "long stream"}], "stream": true}),
    );
    let started = Instant::now();
    let r = provider_support::reassemble(p.chat_stream(req).await.unwrap()).await;
    assert!(
        r.error.is_none(),
        "cut after {:?}: {:?}",
        started.elapsed(),
        r.error
    );
    assert!(started.elapsed() > Duration::from_secs(2));
    assert!(r.content.ends_with("w79"), "{}", r.content);
}

#[tokio::test]
async fn a_stalled_stream_is_cut_by_the_idle_timeout() {
    let mock = Aimock::start(&fixture("money.json"), &[]);
    // First chunk at once, then 4 s of silence; `stream_timeout: 1`.
    let p = provider_support::build(deployment(&mock, None, Some(1.0)));
    let req = provider_support::chat(
        json!({"messages": [{"role": "user", "content": "stalled stream"}], "stream": true}),
    );
    let started = Instant::now();
    let r = provider_support::reassemble(p.chat_stream(req).await.unwrap()).await;
    let elapsed = started.elapsed();
    assert_eq!(r.error, Some(ProviderError::Timeout), "{r:?}");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
}

// ------------------------------------------------- per-sequence rpm (item 10)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_count_each_sequence_against_rpm() {
    let gw = Gateway::start().await;
    let secret = key(&*gw.store, |k| k.rpm_limit = Some(5)).await;
    let chat = |n: u32| {
        json!({"model": "priced", "n": n,
               "messages": [{"role": "user", "content": "hello"}]})
    };
    let first = gw
        .post("/v1/chat/completions", &secret, chat(3))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200, "{:?}", first.text().await);
    // 3 + 3 sequences > 5 a minute.
    let second = gw
        .post("/v1/chat/completions", &secret, chat(3))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    let third = gw
        .post("/v1/chat/completions", &secret, chat(2))
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
    let fourth = gw
        .post("/v1/chat/completions", &secret, chat(1))
        .send()
        .await
        .unwrap();
    assert_eq!(fourth.status(), 429);
}

// ----------------------------------------------- item 8: budgets and races

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
    budget_holds_under_1000_concurrent_requests,
    a_record_load_racing_a_batch_write_does_not_undercount,
    a_budget_reset_keeps_spend_of_the_new_period,
    spend_waits_in_the_journal_while_the_store_is_down,
);

/// A plane over `store` for the priced model (no upstream is called).
async fn plane(store: Arc<dyn Store>, extra_general: &str) -> Arc<ControlPlane> {
    ControlPlane::with_store(
        &config("http://127.0.0.1:9", extra_general),
        store,
        &prometheus::Registry::new(),
        frontend::control::system_clock(),
    )
    .await
    .unwrap()
}

fn tokens(prompt: u64, completion: u64) -> Outcome {
    Outcome {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cache_hit: false,
        success: true,
    }
}

async fn budget_holds_under_1000_concurrent_requests(store: Arc<dyn Store>) {
    let plane = plane(Arc::clone(&store), "").await;
    const BUDGET: f64 = 0.5;
    let secret = key(&*store, |k| k.max_budget = Some(BUDGET)).await;
    // Batches are written while the requests run, so admissions see stored
    // spend, unflushed spend and reservations change under them.
    let stop = Arc::new(AtomicBool::new(false));
    let flusher = {
        let (plane, stop) = (Arc::clone(&plane), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                plane.flush_spend().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let tasks: Vec<_> = (0..1000u64)
        .map(|i| {
            let plane = Arc::clone(&plane);
            let secret = secret.clone();
            tokio::spawn(async move {
                let who = plane.authenticate(Some(&secret)).await.unwrap();
                let Ok(admission) = plane.admit(&who, "priced").await else {
                    return None;
                };
                let reserved = admission.reserved();
                tokio::time::sleep(Duration::from_millis(20 + i % 30)).await;
                // 200 tokens: 0.002 USD, under the reservation.
                plane.settle(admission, tokens(100, 100));
                Some(reserved)
            })
        })
        .collect();
    let mut admitted = 0;
    let mut max_reserved: f64 = 0.0;
    for t in tasks {
        if let Some(r) = t.await.unwrap() {
            admitted += 1;
            max_reserved = max_reserved.max(r);
        }
    }
    stop.store(true, Ordering::Relaxed);
    flusher.await.unwrap();
    plane.flush_spend().await;
    let stored = store
        .key(&secret::token_of(&secret))
        .await
        .unwrap()
        .unwrap()
        .spend;
    println!(
        "admitted {admitted} of 1000; stored spend {stored:.4} of budget {BUDGET} \
         (one reservation: {max_reserved:.5})"
    );
    // Without reservations all 1,000 pass (2.0 USD).
    assert!(
        stored <= BUDGET + max_reserved + 1e-9,
        "stored {stored} > budget {BUDGET} + one reservation {max_reserved}"
    );
    assert!(admitted > 0);
    assert!(
        max_reserved > 0.04,
        "default reservation of 4096 tokens: {max_reserved}"
    );
    // Reservations were all given back: one request at a time, the rest
    // of the budget is spent to the last request.
    let who = plane.authenticate(Some(&secret)).await.unwrap();
    while let Ok(admission) = plane.admit(&who, "priced").await {
        plane.settle(admission, tokens(100, 100));
    }
    plane.flush_spend().await;
    let stored = store
        .key(&secret::token_of(&secret))
        .await
        .unwrap()
        .unwrap()
        .spend;
    assert!(
        (BUDGET - 1e-9..BUDGET + 0.002 + 1e-9).contains(&stored),
        "{stored}"
    );
}

/// A store whose key reads can be held after reading the row, and whose
/// spend writes can be made to fail: the two races of these tests.
struct Faulty {
    inner: Arc<dyn Store>,
    /// Hold the next key read after it read its row.
    hold_next_read: AtomicBool,
    read_done: Notify,
    release: Notify,
    /// Fail `record_spend`.
    down: AtomicBool,
}

impl Faulty {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            hold_next_read: AtomicBool::new(false),
            read_done: Notify::new(),
            release: Notify::new(),
            down: AtomicBool::new(false),
        })
    }
}

#[async_trait::async_trait]
impl Store for Faulty {
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        self.inner.create_key(key).await
    }
    async fn key(&self, token_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        let row = self.inner.key(token_hash).await;
        if self.hold_next_read.swap(false, Ordering::SeqCst) {
            self.read_done.notify_one();
            self.release.notified().await;
        }
        row
    }
    async fn update_key(&self, t: &str, u: KeyUpdate) -> Result<KeyRecord, StoreError> {
        self.inner.update_key(t, u).await
    }
    async fn delete_keys(&self, t: &[String]) -> Result<u64, StoreError> {
        self.inner.delete_keys(t).await
    }
    async fn list_keys(&self, f: KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys(f).await
    }
    async fn count_keys(&self, f: KeyFilter) -> Result<u64, StoreError> {
        self.inner.count_keys(f).await
    }
    async fn create_team(&self, t: NewTeam) -> Result<TeamRecord, StoreError> {
        self.inner.create_team(t).await
    }
    async fn team(&self, id: &str) -> Result<Option<TeamRecord>, StoreError> {
        self.inner.team(id).await
    }
    async fn update_team(&self, id: &str, u: TeamUpdate) -> Result<TeamRecord, StoreError> {
        self.inner.update_team(id, u).await
    }
    async fn list_teams(&self) -> Result<Vec<TeamRecord>, StoreError> {
        self.inner.list_teams().await
    }
    async fn delete_teams(&self, ids: &[String]) -> Result<u64, StoreError> {
        self.inner.delete_teams(ids).await
    }
    async fn create_user(&self, u: NewUser) -> Result<UserRecord, StoreError> {
        self.inner.create_user(u).await
    }
    async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.user(id).await
    }
    async fn update_user(&self, id: &str, u: UserUpdate) -> Result<UserRecord, StoreError> {
        self.inner.update_user(id, u).await
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.list_users().await
    }
    async fn delete_users(&self, ids: &[String]) -> Result<u64, StoreError> {
        self.inner.delete_users(ids).await
    }
    async fn record_spend(&self, logs: &[SpendLog]) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Database("the test took the store down".into()));
        }
        self.inner.record_spend(logs).await
    }
    async fn spend_logs(&self, q: &SpendQuery) -> Result<Vec<SpendLog>, StoreError> {
        self.inner.spend_logs(q).await
    }
    async fn total_spend(&self, q: &SpendQuery) -> Result<f64, StoreError> {
        self.inner.total_spend(q).await
    }
    async fn daily_spend(
        &self,
        g: frontend::store::SpendGroup,
        q: &SpendQuery,
    ) -> Result<Vec<frontend::store::DailySpend>, StoreError> {
        self.inner.daily_spend(g, q).await
    }
    async fn reset_due_budgets(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.reset_due_budgets(now).await
    }
}

async fn a_record_load_racing_a_batch_write_does_not_undercount(store: Arc<dyn Store>) {
    let faulty = Faulty::new(Arc::clone(&store));
    let plane = plane(faulty.clone(), "").await;
    // 1,000 tokens spend the whole budget.
    let secret = key(&*store, |k| k.max_budget = Some(1000.0 * PRICE)).await;
    let token = secret::token_of(&secret);
    let who = plane.authenticate(Some(&secret)).await.unwrap();
    let a = plane.admit(&who, "priced").await.unwrap();
    plane.settle(a, tokens(1000, 0));
    assert!(plane.admit(&who, "priced").await.is_err());
    // The cached record expires (as after its TTL); a request reloads it,
    // and its read of the old row (spend 0) is overtaken by the batch write.
    plane.invalidate_key(&token);
    faulty.hold_next_read.store(true, Ordering::SeqCst);
    let racing = {
        let (plane, secret) = (Arc::clone(&plane), secret.clone());
        tokio::spawn(async move { plane.authenticate(Some(&secret)).await })
    };
    faulty.read_done.notified().await;
    plane.flush_spend().await;
    assert!((store.key(&token).await.unwrap().unwrap().spend - 0.01).abs() < 1e-12);
    faulty.release.notify_one();
    let raced: Caller = racing.await.unwrap().unwrap();
    // Neither the racing request nor a later one may see an unspent budget.
    let err = plane.admit(&raced, "priced").await.err();
    assert!(
        matches!(err, Some(ControlError::BudgetExceeded { .. })),
        "admitted on a stale record: {err:?}"
    );
    let later = plane.authenticate(Some(&secret)).await.unwrap();
    assert!(plane.admit(&later, "priced").await.is_err());
}

async fn a_budget_reset_keeps_spend_of_the_new_period(store: Arc<dyn Store>) {
    let t0: DateTime<Utc> = "2026-03-01T00:00:00Z".parse().unwrap();
    let s = secret::generate();
    let token = secret::token_of(&s);
    let mut k = NewKey::new(token.clone(), secret::display_name(&s), t0);
    k.max_budget = Some(1.0);
    k.budget_duration = Some("1d".parse().unwrap());
    store.create_key(k).await.unwrap();
    let log = |id: &str, end: DateTime<Utc>, cost: f64| SpendLog {
        request_id: id.to_owned(),
        token_hash: Some(token.clone()),
        key_alias: None,
        team_id: None,
        user_id: None,
        model: "priced".into(),
        provider_model: "openai/priced".into(),
        prompt_tokens: 1,
        completion_tokens: 1,
        cost,
        start_time: end - TimeDelta::seconds(1),
        end_time: end,
        cache_hit: false,
        status: SpendStatus::Success,
    };
    // One request in the old period, one after it ended but before the
    // sweep ran.
    store
        .record_spend(&[
            log("old-period", t0 + TimeDelta::hours(12), 0.25),
            log("new-period", t0 + TimeDelta::hours(25), 0.5),
        ])
        .await
        .unwrap();
    assert_eq!(
        store
            .reset_due_budgets(t0 + TimeDelta::hours(26))
            .await
            .unwrap(),
        1
    );
    let key = store.key(&token).await.unwrap().unwrap();
    assert!(
        (key.spend - 0.5).abs() < 1e-12,
        "the new period's spend was wiped: {}",
        key.spend
    );
    assert_eq!(
        key.budget_reset_at.unwrap(),
        t0 + TimeDelta::hours(26) + TimeDelta::days(1)
    );
}

/// A fresh folder for a spend journal.
fn journal_dir() -> PathBuf {
    std::env::temp_dir().join(format!("engine-money-journal-{}", uuid::Uuid::new_v4()))
}

fn segments(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .count()
        })
        .unwrap_or(0)
}

async fn spend_waits_in_the_journal_while_the_store_is_down(store: Arc<dyn Store>) {
    let dir = journal_dir();
    let faulty = Faulty::new(Arc::clone(&store));
    let plane = plane(
        faulty.clone(),
        &format!("  spend_journal_dir: {}", dir.display()),
    )
    .await;
    let secret = key(&*store, |_| {}).await;
    let who = plane.authenticate(Some(&secret)).await.unwrap();
    faulty.down.store(true, Ordering::SeqCst);
    let mut expected = 0.0;
    for _ in 0..50 {
        let a = plane.admit(&who, "priced").await.unwrap();
        expected += plane.settle(a, tokens(10, 10));
    }
    plane.flush_spend().await;
    // Nothing in the store; all of it on disk.
    assert!(logs_of(&*store, &secret).await.is_empty());
    assert!(
        segments(&dir) >= 1,
        "no journal segment in {}",
        dir.display()
    );
    let on_disk: usize = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap().lines().count())
        .sum();
    assert_eq!(on_disk, 50);
    // The store comes back: the journal is written and emptied.
    faulty.down.store(false, Ordering::SeqCst);
    plane.flush_spend().await;
    assert_eq!(logs_of(&*store, &secret).await.len(), 50);
    let spend = store
        .key(&secret::token_of(&secret))
        .await
        .unwrap()
        .unwrap()
        .spend;
    assert!((spend - expected).abs() < 1e-9, "{spend} vs {expected}");
    assert_eq!(segments(&dir), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------- item 9: bounded, and fast auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_journal_paid_requests_stop_when_unwritten_spend_fills_memory() {
    let file = SqliteFile::new();
    let store: Arc<dyn Store> = Arc::new(
        frontend::store::SqliteStore::connect(file.as_str())
            .await
            .unwrap(),
    );
    let faulty = Faulty::new(Arc::clone(&store));
    let plane = plane(faulty.clone(), "  max_unwritten_spend_logs: 20").await;
    let secret = key(&*store, |_| {}).await;
    let who = plane.authenticate(Some(&secret)).await.unwrap();
    faulty.down.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        let a = plane.admit(&who, "priced").await.unwrap();
        plane.settle(a, tokens(10, 10));
    }
    plane.flush_spend().await;
    let err = plane.admit(&who, "priced").await.err();
    assert!(
        matches!(err, Some(ControlError::Backend { .. })),
        "memory is full of unwritten spend, yet a paid request was admitted: {err:?}"
    );
    faulty.down.store(false, Ordering::SeqCst);
    plane.flush_spend().await;
    assert_eq!(logs_of(&*store, &secret).await.len(), 20);
    plane.admit(&who, "priced").await.unwrap();
}

/// A TCP proxy to PostgreSQL that the test can cut.
struct Proxy {
    addr: std::net::SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let registry = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Self { addr, tasks }
    }

    /// The database goes away: no new connections, open ones cut.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_of_an_uncached_key_fails_fast_when_postgres_is_down() {
    let Some(db) = PgSchema::new().await else {
        return;
    };
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let proxy = Proxy::start(target.clone()).await;
    let via_proxy = db.url.replacen(&target, &proxy.addr.to_string(), 1);
    assert_ne!(via_proxy, db.url, "cannot point {} at the proxy", db.url);
    let store = frontend::store::PostgresStore::connect_with_schema(&via_proxy, &db.schema)
        .await
        .unwrap();
    let direct = db.open().await;
    let plane = plane(Arc::new(store.clone()), "").await;
    let secret = key(&direct, |_| {}).await;
    proxy.cut();
    let started = Instant::now();
    let result =
        tokio::time::timeout(Duration::from_secs(15), plane.authenticate(Some(&secret))).await;
    let elapsed = started.elapsed();
    direct.close().await;
    db.drop_schema().await;
    let result = result.unwrap_or_else(|_| panic!("auth still waiting after {elapsed:?}"));
    assert!(
        matches!(result, Err(ControlError::Backend { .. })),
        "{:?}",
        result.err()
    );
    assert!(elapsed < Duration::from_secs(6), "auth took {elapsed:?}");
}
