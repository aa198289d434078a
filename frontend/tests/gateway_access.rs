//! Credentials and access, tried as an attacker would (issue 12, items
//! 1-4 and the tokenizer routes): a stored key hash or the master key's
//! hash is not a key; a deleted team's keys stop working and a key whose
//! team is gone is refused; anonymous `/metrics` shows no key alias or
//! team; error bodies carry no internal URL or database text but a
//! request id; `/tokenize` and `/detokenize` pass admission.
//!
//! The HTTP tests run the real app in process (SQLite in a temp file, an
//! in-test `echo` provider, the router for a deployment that is down);
//! the plane tests run over both stores.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod store_support;

use frontend::config::GatewayConfig;
use frontend::control::{secret, system_clock, Caller, ControlError, ControlPlane};
use frontend::openai::{
    ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
    ChatResponseMessage, CompletionChunk, CompletionRequest, CompletionResponse, DetokenizeRequest,
    DetokenizeResponse, FinishReason, ModelCard, TokenizeInput, TokenizeRequest, TokenizeResponse,
    Usage,
};
use frontend::provider::unsupported;
use frontend::store::{NewKey, NewTeam, SqliteStore, Store};
use frontend::{AppState, ChunkStream, Provider, ProviderError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use std::sync::Arc;
use store_support::SqliteFile;

const MASTER: &str = "sk-master-access-test";

/// `echo` is served by the in-test provider (priced here so spend has a
/// team label); `down` by the router, at an address nothing listens on,
/// under a path that must never reach a client.
const CONFIG: &str = r#"
model_list:
  - model_name: echo
    litellm_params: {model: openai/echo, api_base: "http://127.0.0.1:9", input_cost_per_token: 0.001, output_cost_per_token: 0.001}
  - model_name: down
    litellm_params: {model: openai/down, api_base: "http://127.0.0.1:1/internal-route-7f3a/v1", timeout: 5}
router_settings:
  num_retries: 0
general_settings:
  master_key: sk-master-access-test
  proxy_batch_write_at: 3600
  budget_reset_interval: 3600
"#;

/// Answers chat with its last message and tokenizes by words.
struct Echo;

#[async_trait::async_trait]
impl Provider for Echo {
    fn models(&self) -> Vec<ModelCard> {
        vec![ModelCard::new("echo", "test", Some(64))]
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        let text = req
            .messages
            .last()
            .map(|m| m.text_content())
            .unwrap_or_default();
        Ok(ChatCompletionResponse::new(
            "chatcmpl-echo".into(),
            req.model,
            vec![ChatChoice {
                index: 0,
                message: ChatResponseMessage::assistant(text),
                logprobs: None,
                finish_reason: Some(FinishReason::Stop),
            }],
            Usage::new(3, 3),
        ))
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        Err(unsupported(&req.model, "streaming"))
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        Err(unsupported(&req.model, "completions"))
    }

    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        Err(unsupported(&req.model, "completions"))
    }

    async fn tokenize(&self, req: TokenizeRequest) -> Result<TokenizeResponse, ProviderError> {
        let tokens: Vec<u32> = match req.input()? {
            TokenizeInput::Prompt(p) => (0..p.split_whitespace().count() as u32).collect(),
            TokenizeInput::Messages(m) => (0..m.len() as u32).collect(),
        };
        Ok(TokenizeResponse {
            count: tokens.len(),
            max_model_len: 64,
            tokens,
        })
    }

    async fn detokenize(
        &self,
        req: DetokenizeRequest,
    ) -> Result<DetokenizeResponse, ProviderError> {
        Ok(DetokenizeResponse {
            prompt: vec!["w"; req.tokens.len()].join(" "),
        })
    }
}

/// The app on 127.0.0.1:0 over a fresh SQLite file.
struct Gateway {
    base: String,
    http: reqwest::Client,
    store: SqliteStore,
    db: SqliteFile,
}

impl Gateway {
    async fn start() -> Self {
        let config = GatewayConfig::from_yaml(CONFIG, &|_| None).unwrap();
        let db = SqliteFile::new();
        let store = SqliteStore::connect(db.as_str()).await.unwrap();
        let registry = prometheus::Registry::new();
        let plane =
            ControlPlane::with_store(&config, Arc::new(store.clone()), &registry, system_clock())
                .await
                .unwrap();
        let router = frontend::router::Router::from_config(
            &config,
            None,
            frontend::providers::http::client().unwrap(),
            &registry,
        )
        .unwrap();
        let providers: Vec<Arc<dyn Provider>> = vec![Arc::new(Echo), Arc::new(router)];
        let state = AppState::new(providers, registry)
            .unwrap()
            .with_control(plane);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = frontend::router(state);
        tokio::spawn(async move {
            frontend::serve(listener, app, futures::future::pending())
                .await
                .unwrap()
        });
        Self {
            base,
            http: reqwest::Client::new(),
            store,
            db,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method, path, Some(MASTER), body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn chat(&self, key: &str, model: &str) -> reqwest::Response {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi there"}]});
        self.send("POST", "/v1/chat/completions", Some(key), Some(body))
            .await
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The error body of `r` and its `x-request-id` header.
async fn error_and_id(r: reqwest::Response) -> (u16, String, Value, Option<String>) {
    let status = r.status().as_u16();
    let id = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, body, id)
}

// ---- item 1: a stored hash is a lookup handle, not a key ----

#[tokio::test]
async fn a_listed_token_or_the_master_hash_is_not_a_key() {
    let gw = Gateway::start().await;
    let key = gw
        .admin(
            "POST",
            "/key/generate",
            Some(json!({"key_alias": "victim"})),
        )
        .await;
    let secret = key["key"].as_str().unwrap();
    let token = key["token"].as_str().unwrap();
    assert_eq!(gw.chat(secret, "echo").await.status(), 200);
    // What /key/list (and spend logs, and Redis keys) show is not a key.
    let listed = gw.admin("GET", "/key/list", None).await;
    assert!(listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == token));
    let (status, _, body, _) = error_and_id(gw.chat(token, "echo").await).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    // Nor is the master key's hash the master key.
    let master_hash = sha256_hex(MASTER);
    assert_eq!(
        gw.send("GET", "/key/list", Some(&master_hash), None)
            .await
            .status(),
        401
    );
    assert_eq!(gw.chat(&master_hash, "echo").await.status(), 401);
    // Upper-case hex, a prefix of the master key, a longer string: no.
    for near in [
        master_hash.to_uppercase(),
        MASTER[..MASTER.len() - 1].to_owned(),
        format!("{MASTER}x"),
    ] {
        assert_eq!(
            gw.send("GET", "/key/list", Some(&near), None)
                .await
                .status(),
            401,
            "{near}"
        );
    }
    // The admin API still names keys by their token.
    let info = gw
        .admin("GET", &format!("/key/info?key={token}"), None)
        .await;
    assert_eq!(info["info"]["key_alias"], "victim");
    let info = gw
        .admin("GET", &format!("/key/info?key={secret}"), None)
        .await;
    assert_eq!(info["info"]["key_alias"], "victim");
}

// ---- item 2: deleting a team deletes its keys ----

#[tokio::test]
async fn deleting_a_team_deletes_its_keys() {
    let gw = Gateway::start().await;
    let team = gw
        .admin(
            "POST",
            "/team/new",
            Some(json!({"team_alias": "doomed", "models": ["echo"], "max_budget": 1.0})),
        )
        .await;
    let team_id = team["team_id"].as_str().unwrap();
    let key = gw
        .admin("POST", "/key/generate", Some(json!({"team_id": team_id})))
        .await;
    let secret = key["key"].as_str().unwrap();
    let token = key["token"].as_str().unwrap();
    assert_eq!(gw.chat(secret, "echo").await.status(), 200);
    // The team's model list binds the key.
    assert_eq!(gw.chat(secret, "down").await.status(), 403);
    let deleted = gw
        .admin("POST", "/team/delete", Some(json!({"team_ids": [team_id]})))
        .await;
    // The key is gone, not widened to no model list and no budget.
    assert_eq!(gw.chat(secret, "down").await.status(), 401);
    assert_eq!(gw.chat(secret, "echo").await.status(), 401);
    assert_eq!(deleted["deleted_teams"], json!([team_id]));
    assert_eq!(deleted["deleted_keys"], json!([token]));
    let r = gw
        .send("GET", &format!("/key/info?key={token}"), Some(MASTER), None)
        .await;
    assert_eq!(r.status(), 404);
}

// ---- item 3: /metrics shows no key alias or team without the master key ----

#[tokio::test]
async fn anonymous_metrics_show_no_key_alias_or_team() {
    let gw = Gateway::start().await;
    let team_id = "team-secret-9c1d";
    gw.admin("POST", "/team/new", Some(json!({"team_id": team_id})))
        .await;
    let key = gw
        .admin(
            "POST",
            "/key/generate",
            Some(json!({"key_alias": "alias-secret-7f3a", "team_id": team_id})),
        )
        .await;
    let secret = key["key"].as_str().unwrap();
    for _ in 0..2 {
        assert_eq!(gw.chat(secret, "echo").await.status(), 200);
    }
    for who in [None, Some(secret)] {
        let r = gw.send("GET", "/metrics", who, None).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert!(!text.contains("alias-secret-7f3a"), "{text}");
        assert!(!text.contains(team_id), "{text}");
        assert!(!text.contains("key_alias="), "{text}");
        // The aggregate series are still there.
        assert!(
            text.contains(r#"gateway_requests_total{model="echo",status="success"} 2"#),
            "{text}"
        );
        assert!(
            text.contains("gateway_spend_usd_total{model=\"echo\"}"),
            "{text}"
        );
        assert!(text.contains("gateway_request_duration_seconds_bucket"));
    }
    let full = gw.send("GET", "/metrics", Some(MASTER), None).await;
    let full = full.text().await.unwrap();
    assert!(full.contains(r#"key_alias="alias-secret-7f3a""#), "{full}");
    assert!(full.contains(team_id), "{full}");
    // A wrong key is told so (a misconfigured scraper), not served.
    assert_eq!(
        gw.send("GET", "/metrics", Some("sk-wrong"), None)
            .await
            .status(),
        401
    );
}

// ---- item 4: no internals in error bodies; a request id instead ----

#[tokio::test]
async fn error_bodies_hide_internals_and_carry_a_request_id() {
    let gw = Gateway::start().await;
    // An upstream that cannot be reached: reqwest's error names its URL.
    let (status, text, body, id) = error_and_id(gw.chat(MASTER, "down").await).await;
    assert!(status >= 500, "{status} {text}");
    for leak in [
        "127.0.0.1",
        "internal-route",
        "http://",
        "error sending request",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let id = id.expect("x-request-id header");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{text}"
    );
    assert_eq!(body["error"]["type"], "server_error");

    // The key store fails: sqlx's text stays in the log.
    let key = gw.admin("POST", "/key/generate", Some(json!({}))).await;
    let secret = key["key"].as_str().unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", gw.db.as_str()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE virtual_keys")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let (status, text, body, id) = error_and_id(gw.chat(secret, "echo").await).await;
    assert_eq!(status, 503, "{text}");
    for leak in [
        "no such table",
        "virtual_keys",
        "sqlx",
        "error returned from database",
        "code:",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let id = id.expect("x-request-id header");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(&id),
        "{text}"
    );
    assert_eq!(body["error"]["code"], "backend_unavailable");

    // Every answer carries an id, a client's own one when it is sane.
    let r = gw
        .http
        .get(format!("{}/health", gw.base))
        .header("x-request-id", "client-trace-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-trace-42");
    let r = gw
        .http
        .get(format!("{}/health", gw.base))
        .header("x-request-id", "bad id\twith spaces")
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap();
    assert!(!id.contains(' ') && !id.is_empty(), "{id}");
    gw.store.close().await;
}

// ---- item 10 (part): the tokenizer routes pass admission ----

#[tokio::test]
async fn tokenize_and_detokenize_pass_admission() {
    let gw = Gateway::start().await;
    let key = gw
        .admin(
            "POST",
            "/key/generate",
            Some(json!({"models": ["echo"], "rpm_limit": 2})),
        )
        .await;
    let secret = key["key"].as_str().unwrap();
    let r = gw
        .send(
            "POST",
            "/tokenize",
            Some(secret),
            Some(json!({"model": "echo", "prompt": "a b c"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["count"], 3);
    let r = gw
        .send(
            "POST",
            "/detokenize",
            Some(secret),
            Some(json!({"model": "echo", "tokens": [1, 2]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The key's rpm limit counts these requests too.
    let r = gw
        .send(
            "POST",
            "/tokenize",
            Some(secret),
            Some(json!({"model": "echo", "prompt": "again"})),
        )
        .await;
    assert_eq!(r.status(), 429, "{}", r.text().await.unwrap());
    // Its model list binds them.
    let other = gw
        .admin("POST", "/key/generate", Some(json!({"models": ["echo"]})))
        .await;
    let other = other["key"].as_str().unwrap();
    for path in ["/tokenize", "/detokenize"] {
        let body = json!({"model": "down", "prompt": "x", "tokens": [1]});
        let r = gw.send("POST", path, Some(other), Some(body)).await;
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = gw
        .send(
            "POST",
            "/tokenize",
            None,
            Some(json!({"model": "echo", "prompt": "x"})),
        )
        .await;
    assert_eq!(r.status(), 401);
}

// ---- the same rules at the plane, over both stores ----

macro_rules! plane_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::store_support::run_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::store_support::run_postgres(super::$name).await;
                }
            )*
        }
    };
}

plane_tests!(
    stored_hashes_do_not_authenticate,
    a_key_whose_team_is_gone_is_refused
);

async fn plane(store: Arc<dyn Store>) -> Arc<ControlPlane> {
    let config = GatewayConfig::from_yaml(CONFIG, &|_| None).unwrap();
    ControlPlane::with_store(&config, store, &prometheus::Registry::new(), system_clock())
        .await
        .unwrap()
}

async fn new_key(store: &dyn Store, team: Option<&str>) -> String {
    let s = secret::generate();
    let mut k = NewKey::new(
        secret::token_of(&s),
        secret::display_name(&s),
        chrono::Utc::now(),
    );
    k.team_id = team.map(str::to_owned);
    store.create_key(k).await.unwrap();
    s
}

async fn stored_hashes_do_not_authenticate(store: Arc<dyn Store>) {
    let plane = plane(Arc::clone(&store)).await;
    let s = new_key(&*store, None).await;
    assert!(matches!(
        plane.authenticate(Some(&s)).await,
        Ok(Caller::Key(_))
    ));
    let token = secret::token_of(&s);
    assert!(
        matches!(
            plane.authenticate(Some(&token)).await,
            Err(ControlError::InvalidKey)
        ),
        "the stored hash authenticated"
    );
    assert!(
        matches!(
            plane.authenticate(Some(&sha256_hex(MASTER))).await,
            Err(ControlError::InvalidKey)
        ),
        "the master key's hash authenticated"
    );
    assert!(matches!(
        plane.authenticate(Some(MASTER)).await,
        Ok(Caller::Master)
    ));
}

async fn a_key_whose_team_is_gone_is_refused(store: Arc<dyn Store>) {
    let plane = plane(Arc::clone(&store)).await;
    let mut team = NewTeam::new("team-gone", chrono::Utc::now());
    team.models = vec!["echo".into()];
    team.max_budget = Some(0.5);
    store.create_team(team).await.unwrap();
    let s = new_key(&*store, Some("team-gone")).await;
    assert!(matches!(
        plane.authenticate(Some(&s)).await,
        Ok(Caller::Key(_))
    ));
    // The team disappears under the key (another replica's delete, a
    // restore, a race with /team/delete): the key must not widen.
    store.delete_teams(&["team-gone".to_owned()]).await.unwrap();
    plane.invalidate_team("team-gone");
    match plane.authenticate(Some(&s)).await {
        Err(ControlError::InvalidKey) => {}
        Ok(_) => panic!("a key whose team is gone authenticated"),
        Err(e) => panic!("expected InvalidKey, got {e:?}"),
    }
}
