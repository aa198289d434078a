//! Fresh, isolated databases for the shared store suite (`tests/store.rs`):
//! a new SQLite file per test, or a new PostgreSQL schema per test
//! (`store_test_<uuid>`, dropped afterwards, even when the test panics).
//!
//! PostgreSQL is at `postgres://postgres@127.0.0.1:5432/test` unless
//! `TEST_DATABASE_URL` says otherwise. When it cannot be reached the
//! PostgreSQL tests print `skipped: no PostgreSQL at ...` and pass, unless
//! `REQUIRE_POSTGRES=1`, where they fail (`scripts/test.sh` sets it under
//! `CI=true` or `REQUIRE_SERVICES=1`, after starting PostgreSQL if needed).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use frontend::store::{PostgresStore, SqliteStore, Store};
use futures::FutureExt;
use sqlx::Connection;

/// Where the PostgreSQL tests connect.
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A new SQLite database file in the temp folder, removed (with its WAL
/// files) on drop.
pub struct SqliteFile {
    /// The database file.
    pub path: PathBuf,
}

impl SqliteFile {
    /// A path no other test uses.
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("engine-store-test-{}.db", uuid::Uuid::new_v4()));
        Self { path }
    }

    /// The path as the string `SqliteStore::connect` takes.
    pub fn as_str(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut p = self.path.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs `test` on a store in a new SQLite file.
pub async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let file = SqliteFile::new();
    let store = SqliteStore::connect(file.as_str()).await.unwrap();
    let outcome = AssertUnwindSafe(test(Arc::new(store.clone())))
        .catch_unwind()
        .await;
    store.close().await;
    drop(file);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A new schema in the test database, or `None` (after printing why) when
/// there is no PostgreSQL and `REQUIRE_POSTGRES` is not `1`.
pub struct PgSchema {
    /// The server.
    pub url: String,
    /// `store_test_<uuid>`.
    pub schema: String,
}

impl PgSchema {
    /// Checks the server answers and picks a schema name.
    pub async fn new() -> Option<Self> {
        let url = postgres_url();
        let reachable =
            tokio::time::timeout(Duration::from_secs(5), sqlx::PgConnection::connect(&url)).await;
        let err = match reachable {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("timed out after 5 s".to_owned()),
        };
        if let Some(err) = err {
            if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("no PostgreSQL at {url} ({err}) and REQUIRE_POSTGRES=1");
            }
            eprintln!("skipped: no PostgreSQL at {url} ({err}); set TEST_DATABASE_URL");
            return None;
        }
        let schema = format!("store_test_{}", uuid::Uuid::new_v4().simple());
        Some(Self { url, schema })
    }

    /// A store in this schema (created on first use).
    pub async fn open(&self) -> PostgresStore {
        PostgresStore::connect_with_schema(&self.url, &self.schema)
            .await
            .unwrap()
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(&self) {
        let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            self.schema
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
    }
}

/// Runs `test` on a store in a new PostgreSQL schema, then drops it.
pub async fn run_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = PgSchema::new().await else {
        return;
    };
    let store = db.open().await;
    let outcome = AssertUnwindSafe(test(Arc::new(store.clone())))
        .catch_unwind()
        .await;
    store.close().await;
    db.drop_schema().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
