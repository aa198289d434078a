//! The safe fetcher on its own, with a resolver hook that maps test names
//! to the addresses an attacker would make them resolve to: a name that
//! resolves to a refused address (alone, or among allowed ones, as a
//! rebinding server answers) is refused before any connect, also as a
//! redirect target; an allowed name is connected to at the checked
//! address. The Ollama adapter's use of it is `provider_ollama_images.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use frontend::fetch::{FetchError, FetchSettings, HostResolver, SafeFetcher};
use futures::future::BoxFuture;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Names to fixed addresses; counts lookups.
struct Table {
    names: HashMap<&'static str, Vec<IpAddr>>,
    lookups: AtomicUsize,
}

impl HostResolver for Table {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.names.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown name"))
        })
    }
}

fn table() -> Arc<Table> {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    Arc::new(Table {
        names: HashMap::from([
            ("images.test", vec![ip("127.0.0.1")]),
            ("evil.test", vec![ip("127.0.0.2")]),
            ("metadata.test", vec![ip("169.254.169.254")]),
            ("mixed.test", vec![ip("127.0.0.1"), ip("10.0.0.7")]),
            ("mapped.test", vec![ip("::ffff:127.0.0.2")]),
        ]),
        lookups: AtomicUsize::new(0),
    })
}

/// An image server on 127.0.0.1 (the allowed network) counting hits.
async fn server(hits: Arc<AtomicUsize>) -> u16 {
    let app = Router::new()
        .route(
            "/cat.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], "PNGDATA") }),
        )
        .route(
            "/to-evil",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://evil.test/x.png")],
                )
                    .into_response()
            }),
        )
        .route(
            "/to-images",
            get(|| async {
                (
                    StatusCode::MOVED_PERMANENTLY,
                    [(header::LOCATION, "/cat.png")],
                )
                    .into_response()
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let hits = Arc::clone(&hits);
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn settings() -> FetchSettings {
    FetchSettings {
        enabled: true,
        max_bytes: Some(1024),
        timeout: Some(2.0),
        max_redirects: Some(2),
        allow_networks: vec!["127.0.0.1/32".parse().unwrap()],
    }
}

#[tokio::test]
async fn names_are_checked_after_resolution_and_at_every_redirect() {
    let hits = Arc::new(AtomicUsize::new(0));
    let port = server(Arc::clone(&hits)).await;
    let names = table();
    let fetcher = SafeFetcher::with_resolver(Some(&settings()), names.clone()).unwrap();
    assert!(fetcher.is_enabled());

    // An allowed name is fetched, at the address the resolver checked.
    let got = fetcher
        .fetch(&format!("http://images.test:{port}/cat.png"))
        .await
        .unwrap();
    assert_eq!(&got.bytes[..], b"PNGDATA");
    assert_eq!(got.content_type.as_deref(), Some("image/png"));
    // A redirect within the allowed host is followed.
    let got = fetcher
        .fetch(&format!("http://images.test:{port}/to-images"))
        .await
        .unwrap();
    assert_eq!(&got.bytes[..], b"PNGDATA");
    let before = hits.load(Ordering::SeqCst);

    // Names that resolve to refused addresses, alone or mixed in.
    for name in ["evil.test", "metadata.test", "mixed.test", "mapped.test"] {
        let err = fetcher
            .fetch(&format!("http://{name}:{port}/cat.png"))
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Refused, "{name}");
    }
    // A redirect to such a name.
    let err = fetcher
        .fetch(&format!("http://images.test:{port}/to-evil"))
        .await
        .unwrap_err();
    assert_eq!(err, FetchError::Refused);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        before + 1,
        "only /to-evil was reached"
    );
    assert!(names.lookups.load(Ordering::SeqCst) >= 5);

    // Unknown names and dead ports are unreachable, and say no more.
    let err = fetcher.fetch("http://nowhere.test/x").await.unwrap_err();
    assert_eq!(err, FetchError::Unreachable);
}

#[tokio::test]
async fn off_by_default_and_when_disabled() {
    for settings in [
        None,
        Some(FetchSettings::default()),
        Some(FetchSettings {
            enabled: false,
            ..settings()
        }),
    ] {
        let fetcher = SafeFetcher::new(settings.as_ref()).unwrap();
        assert!(!fetcher.is_enabled());
        assert_eq!(
            fetcher
                .fetch("https://example.com/x.png")
                .await
                .unwrap_err(),
            FetchError::Disabled
        );
    }
    let fetcher = SafeFetcher::with_resolver(Some(&settings()), table()).unwrap();
    for url in [
        "not a url",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
    ] {
        let err = fetcher.fetch(url).await.unwrap_err();
        assert!(
            matches!(err, FetchError::InvalidUrl | FetchError::Scheme),
            "{url}: {err:?}"
        );
    }
}
