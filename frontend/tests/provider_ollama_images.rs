//! The Ollama adapter's image URLs, tried as an attacker would (issue
//! 12, item 5): fetching is off unless `general_settings.image_url_fetch`
//! turns it on; when on, loopback, link-local and private addresses are
//! refused, by literal, by name and behind a redirect, before anything
//! connects; the size and time are capped; an upstream body is never
//! echoed. The deployments are built from a config, as `engine serve
//! --config` builds them.
//!
//! Servers: the Ollama upstream and an image server on 127.0.0.1, and an
//! "internal" server on 127.0.0.2 that must never be reached.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use frontend::config::GatewayConfig;
use frontend::openai::ChatCompletionRequest;
use frontend::{Provider, ProviderError};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const IMAGE: &[u8] = b"\x89PNG fake image bytes";
const SECRET: &str = "INTERNAL-SECRET-BODY-5d2e";

#[derive(Clone, Default)]
struct Seen {
    chat_bodies: Arc<Mutex<Vec<Value>>>,
    hits: Arc<AtomicUsize>,
}

async fn ollama_chat(State(seen): State<Seen>, Json(body): Json<Value>) -> Json<Value> {
    seen.chat_bodies.lock().unwrap().push(body);
    Json(
        json!({"model": "llava", "message": {"role": "assistant", "content": "a cat"},
                "done": true, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": 2}),
    )
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// The three test servers and what each saw.
struct Servers {
    ollama: String,
    images: String,
    internal: String,
    upstream: Seen,
    image_hits: Seen,
    internal_hits: Seen,
}

async fn servers() -> Servers {
    let upstream = Seen::default();
    let ollama = Router::new()
        .route("/api/chat", post(ollama_chat))
        .with_state(upstream.clone());
    let ollama_base = serve("127.0.0.1:0", ollama).await;

    let internal = Seen::default();
    let internal_app = Router::new()
        .fallback(|State(seen): State<Seen>| async move {
            seen.hits.fetch_add(1, Ordering::SeqCst);
            SECRET
        })
        .with_state(internal.clone());
    let internal_base = serve("127.0.0.2:0", internal_app).await;

    let images = Seen::default();
    let to_internal = format!("{internal_base}/secret");
    let images_app = Router::new()
        .route("/cat.png", get(|| async { IMAGE }))
        .route(
            "/to-internal",
            get(move || {
                let to = to_internal.clone();
                async move { redirect(to) }
            }),
        )
        .route(
            "/to-metadata",
            get(|| async { redirect("http://169.254.169.254/latest/meta-data/".into()) }),
        )
        .route(
            "/to-v6-loopback",
            get(|| async { redirect("http://[::1]:9/x.png".into()) }),
        )
        .route("/loop", get(|| async { redirect("/loop".into()) }))
        .route("/huge", get(|| async { vec![7u8; 1 << 20] }))
        .route(
            "/huge-chunked",
            get(|| async {
                let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1 << 14]));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                let first = futures::stream::once(async { Ok::<_, std::io::Error>(vec![1u8; 8]) });
                let stall = futures::stream::once(async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok::<_, std::io::Error>(vec![2u8; 8])
                });
                Body::from_stream(futures::StreamExt::chain(first, stall))
            }),
        )
        .route(
            "/error-page",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, SECRET) }),
        )
        .layer(axum::middleware::from_fn_with_state(
            images.clone(),
            |State(seen): State<Seen>,
             req: axum::extract::Request,
             next: axum::middleware::Next| async move {
                seen.hits.fetch_add(1, Ordering::SeqCst);
                next.run(req).await
            },
        ));
    let images_base = serve("127.0.0.1:0", images_app).await;
    Servers {
        ollama: ollama_base,
        images: images_base,
        internal: internal_base,
        upstream,
        image_hits: images,
        internal_hits: internal,
    }
}

async fn serve(addr: &str, app: Router) -> String {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// The deployment `llava` of a config whose `general_settings` add
/// `fetch` (YAML, may be empty).
fn deployment(ollama: &str, fetch: &str) -> Arc<dyn Provider> {
    let yaml = format!(
        "model_list:\n  - model_name: llava\n    litellm_params: {{model: ollama/llava, \
         api_base: \"{ollama}\", timeout: 4}}\ngeneral_settings:\n  master_key: sk-m\n{fetch}"
    );
    let config = GatewayConfig::from_yaml(&yaml, &|_| None).unwrap();
    let router = frontend::router::Router::from_config(
        &config,
        None,
        frontend::providers::http::client().unwrap(),
        &prometheus::Registry::new(),
    )
    .unwrap();
    Arc::new(router)
}

fn with_image(url: &str) -> ChatCompletionRequest {
    serde_json::from_value(json!({
        "model": "llava",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": url}}]}]
    }))
    .unwrap()
}

/// The 400 of a refused image, its message checked for what must never
/// be in it.
async fn refused(p: &Arc<dyn Provider>, url: &str) -> String {
    let err: ProviderError = match p.chat(with_image(url)).await {
        Ok(r) => panic!("{url} was fetched and sent: {r:?}"),
        Err(e) => e,
    };
    let message = err.body().error.message;
    assert_eq!(err.status().as_u16(), 400, "{url}: {message}");
    assert_eq!(err.body().error.param.as_deref(), Some("messages"), "{url}");
    assert!(!message.contains(SECRET), "{url}: {message}");
    assert!(!message.contains("127.0.0.2"), "{url}: {message}");
    message
}

const ON_LOOPBACK_ALLOWED: &str = "  image_url_fetch: {enabled: true, max_bytes: 65536, \
                                   timeout: 1, allow_networks: [127.0.0.1/32]}\n";

#[tokio::test]
async fn remote_image_urls_are_refused_unless_enabled() {
    let s = servers().await;
    let p = deployment(&s.ollama, "");
    let message = refused(&p, &format!("{}/cat.png", s.images)).await;
    assert!(message.contains("image_url_fetch"), "{message}");
    assert_eq!(s.image_hits.hits.load(Ordering::SeqCst), 0);
    // data: URLs need no fetch.
    let r = p
        .chat(with_image("data:image/png;base64,QUJD"))
        .await
        .unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("a cat"));
}

#[tokio::test]
async fn private_addresses_are_refused_by_literal_and_by_name() {
    let s = servers().await;
    let (images, internal) = (&s.images, &s.internal);
    // On, with no exceptions: every test server is loopback, so none may
    // be reached.
    let p = deployment(
        &s.ollama,
        "  image_url_fetch: {enabled: true, timeout: 2}\n",
    );
    let port = images.rsplit(':').next().unwrap().to_owned();
    for url in [
        format!("{images}/cat.png"),
        format!("http://localhost:{port}/cat.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/cat.png"),
        format!("http://2130706433:{port}/cat.png"),
        format!("http://0x7f.1:{port}/cat.png"),
        format!("http://0.0.0.0:{port}/cat.png"),
        format!("http://[::1]:{port}/cat.png"),
        format!("{internal}/secret"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[fe80::1]/x.png".to_owned(),
        "http://10.0.0.1/x.png".to_owned(),
        "http://192.168.1.1/x.png".to_owned(),
        "http://[fd00::1]/x.png".to_owned(),
    ] {
        let started = Instant::now();
        let message = refused(&p, &url).await;
        assert!(message.contains("not allowed"), "{url}: {message}");
        // Refused before any connect (a connect to 10.0.0.1 would hang).
        assert!(started.elapsed() < Duration::from_secs(1), "{url}");
    }
    for url in [
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "gopher://x/",
    ] {
        refused(&p, url).await;
    }
    assert_eq!(s.image_hits.hits.load(Ordering::SeqCst), 0);
    assert_eq!(s.internal_hits.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_to_private_addresses_are_refused() {
    let s = servers().await;
    let p = deployment(&s.ollama, ON_LOOPBACK_ALLOWED);
    for path in ["/to-internal", "/to-metadata", "/to-v6-loopback"] {
        let message = refused(&p, &format!("{}{path}", s.images)).await;
        assert!(message.contains("not allowed"), "{path}: {message}");
    }
    let message = refused(&p, &format!("{}/loop", s.images)).await;
    assert!(message.contains("redirect"), "{message}");
    assert_eq!(s.internal_hits.hits.load(Ordering::SeqCst), 0);
    assert!(s.image_hits.hits.load(Ordering::SeqCst) >= 3);
}

#[tokio::test]
async fn size_and_time_are_capped_and_bodies_never_echoed() {
    let s = servers().await;
    let p = deployment(&s.ollama, ON_LOOPBACK_ALLOWED);
    for path in ["/huge", "/huge-chunked"] {
        let message = refused(&p, &format!("{}{path}", s.images)).await;
        assert!(message.contains("65536 bytes"), "{path}: {message}");
    }
    let started = Instant::now();
    let message = refused(&p, &format!("{}/slow", s.images)).await;
    assert!(message.contains("time"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let message = refused(&p, &format!("{}/error-page", s.images)).await;
    assert!(message.contains("500"), "{message}");
}

#[tokio::test]
async fn an_allowed_image_is_fetched_and_sent_as_base64() {
    let s = servers().await;
    let p = deployment(&s.ollama, ON_LOOPBACK_ALLOWED);
    let r = p
        .chat(with_image(&format!("{}/cat.png", s.images)))
        .await
        .unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("a cat"));
    let body = s.upstream.chat_bodies.lock().unwrap()[0].clone();
    let fetched = base64::engine::general_purpose::STANDARD.encode(IMAGE);
    assert_eq!(body["messages"][0]["images"], json!([fetched]));
    assert_eq!(s.image_hits.hits.load(Ordering::SeqCst), 1);
}
