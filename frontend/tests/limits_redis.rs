//! Rate limits and the response cache shared through a real Redis, with two
//! connection managers standing in for two gateway replicas.
//!
//! Needs Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`); without
//! one each test prints "skipped: no Redis at ..." and passes, unless
//! `REQUIRE_REDIS=1` makes that a failure (`scripts/test.sh` sets it under
//! `CI=true` or `REQUIRE_SERVICES=1`, after starting Redis if needed). Every
//! test uses a fresh random key prefix, so runs and tests never see each
//! other's keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use frontend::cache::{RedisCache, ResponseCache};
use frontend::ratelimit::{
    Clock, LimitKind, Limits, RateLimitError, RateLimiter, RedisLimiter, Subject,
};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A new connection manager (one "replica"), or `None` after printing the
/// skip line when Redis is unreachable and not required.
async fn replica() -> Option<ConnectionManager> {
    let url = redis_url();
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(5));
    let connected = match redis::Client::open(url.as_str()) {
        Ok(client) => tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| "timed out".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string())),
        Err(e) => Err(e.to_string()),
    };
    match connected {
        Ok(conn) => Some(conn),
        Err(e) if std::env::var("REQUIRE_REDIS").as_deref() == Ok("1") => {
            panic!("REQUIRE_REDIS=1 but no Redis at {url}: {e}")
        }
        Err(e) => {
            eprintln!("skipped: no Redis at {url} ({e})");
            None
        }
    }
}

/// Two replicas, or `None` (skip).
async fn two_replicas() -> Option<(ConnectionManager, ConnectionManager)> {
    Some((replica().await?, replica().await?))
}

fn random_prefix(what: &str) -> String {
    format!("engine-test:{what}:{}", uuid::Uuid::new_v4().simple())
}

/// A clock fixed in the middle of a minute, so no test crosses a window
/// boundary by accident; the test may move it.
fn fixed_clock() -> (Arc<AtomicU64>, Clock) {
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let ms = Arc::new(AtomicU64::new(now / 60_000 * 60_000 + 30_000));
    let read = Arc::clone(&ms);
    let clock: Clock =
        Arc::new(move || UNIX_EPOCH + Duration::from_millis(read.load(Ordering::SeqCst)));
    (ms, clock)
}

fn rpm(id: &str, rpm: u64) -> Subject {
    Subject::new(
        id,
        Limits {
            rpm: Some(rpm),
            tpm: None,
        },
    )
}

fn tpm(id: &str, tpm: u64) -> Subject {
    Subject::new(
        id,
        Limits {
            rpm: None,
            tpm: Some(tpm),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_replicas_admit_exactly_the_rpm_limit() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let prefix = random_prefix("rl");
    let (_ms, clock) = fixed_clock();
    let replicas = [
        Arc::new(RedisLimiter::with_clock(a, &prefix, Arc::clone(&clock))),
        Arc::new(RedisLimiter::with_clock(b, &prefix, clock)),
    ];
    let subjects = Arc::new(vec![rpm("key:shared", 50), rpm("team:t", 1_000)]);
    let mut tasks = Vec::new();
    for limiter in &replicas {
        for _ in 0..100 {
            let limiter = Arc::clone(limiter);
            let subjects = Arc::clone(&subjects);
            tasks.push(tokio::spawn(async move { limiter.admit(&subjects).await }));
        }
    }
    let mut admitted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => admitted += 1,
            Err(RateLimitError::Limited(l)) => {
                assert_eq!(l.subject, "key:shared");
                assert_eq!((l.limit, l.max, l.current), (LimitKind::Rpm, 50, 50));
                assert!(l.retry_after <= Duration::from_secs(30));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(admitted, 50);
    // All or nothing: the team was counted only for the 50 admitted, so 950
    // more fit the team alone and the 951st is refused.
    let team = [rpm("team:t", 1_000)];
    for _ in 0..950 {
        replicas[0].admit(&team).await.unwrap();
    }
    match replicas[1].admit(&team).await {
        Err(RateLimitError::Limited(l)) => assert_eq!(l.current, 1_000),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn tpm_is_shared_and_rolls_over() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let prefix = random_prefix("rl");
    let (ms, clock) = fixed_clock();
    let first = RedisLimiter::with_clock(a, &prefix, Arc::clone(&clock));
    let second = RedisLimiter::with_clock(b, &prefix, clock);
    let subjects = [tpm("key:k", 100)];
    first.admit(&subjects).await.unwrap();
    first.record_tokens(&subjects, 70).await.unwrap();
    second.admit(&subjects).await.unwrap();
    second.record_tokens(&subjects, 40).await.unwrap();
    for limiter in [&first, &second] {
        match limiter.admit(&subjects).await {
            Err(RateLimitError::Limited(l)) => {
                assert_eq!((l.limit, l.max, l.current), (LimitKind::Tpm, 100, 110));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    // The next minute starts empty.
    ms.fetch_add(60_000, Ordering::SeqCst);
    first.admit(&subjects).await.unwrap();
    second.admit(&subjects).await.unwrap();
}

#[tokio::test]
async fn prefixes_isolate_deployments() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let (_ms, clock) = fixed_clock();
    let first = RedisLimiter::with_clock(a, random_prefix("rl"), Arc::clone(&clock));
    let second = RedisLimiter::with_clock(b, random_prefix("rl"), clock);
    let subjects = [rpm("key:same-id", 1)];
    first.admit(&subjects).await.unwrap();
    assert!(matches!(
        first.admit(&subjects).await,
        Err(RateLimitError::Limited(_))
    ));
    second.admit(&subjects).await.unwrap();
}

#[tokio::test]
async fn counters_expire_after_two_minutes() {
    let Some(mut conn) = replica().await else {
        return;
    };
    let prefix = random_prefix("rl");
    let (ms, clock) = fixed_clock();
    let limiter = RedisLimiter::with_clock(conn.clone(), &prefix, clock);
    let subjects = [Subject::new(
        "key:k",
        Limits {
            rpm: Some(5),
            tpm: Some(5),
        },
    )];
    limiter.admit(&subjects).await.unwrap();
    limiter.record_tokens(&subjects, 3).await.unwrap();
    let window = ms.load(Ordering::SeqCst) / 60_000;
    for kind in ["rpm", "tpm"] {
        let key = format!("{prefix}:key:k:{window}:{kind}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=120).contains(&ttl), "{key} ttl {ttl}");
    }
}

#[tokio::test]
async fn cache_is_shared_between_replicas() {
    let Some((a, b)) = two_replicas().await else {
        return;
    };
    let prefix = random_prefix("cache");
    let first = RedisCache::new(a, &prefix);
    let second = RedisCache::new(b, &prefix);
    let body = Bytes::from_static(br#"{"id":"chatcmpl-1","choices":[]}"#);
    assert!(second.get("k", None).await.unwrap().is_none());
    first
        .put("k", body.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    let hit = second.get("k", None).await.unwrap().unwrap();
    assert_eq!(hit.body, body);
    assert!(hit.age() < Duration::from_secs(5));
    // s-maxage: an entry older than the caller accepts is a miss.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(second
        .get("k", Some(Duration::from_millis(10)))
        .await
        .unwrap()
        .is_none());
    assert!(second
        .get("k", Some(Duration::from_secs(60)))
        .await
        .unwrap()
        .is_some());
    // Another prefix sees nothing.
    let (c, _) = two_replicas().await.unwrap();
    let other = RedisCache::new(c, random_prefix("cache"));
    assert!(other.get("k", None).await.unwrap().is_none());
}

#[tokio::test]
async fn cache_ttl_is_respected() {
    let Some((a, mut b)) = two_replicas().await else {
        return;
    };
    let prefix = random_prefix("cache");
    let cache = RedisCache::new(a, &prefix);
    cache
        .put(
            "short",
            Bytes::from_static(b"{}"),
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    cache
        .put("long", Bytes::from_static(b"{}"), Duration::from_secs(600))
        .await
        .unwrap();
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(format!("{prefix}:long"))
        .query_async(&mut b)
        .await
        .unwrap();
    assert!((590_000..=600_000).contains(&ttl_ms), "ttl {ttl_ms} ms");
    assert!(cache.get("short", None).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(cache.get("short", None).await.unwrap().is_none());
    assert!(cache.get("long", None).await.unwrap().is_some());
    // A zero ttl stores nothing.
    cache
        .put("zero", Bytes::from_static(b"{}"), Duration::ZERO)
        .await
        .unwrap();
    assert!(cache.get("zero", None).await.unwrap().is_none());
}
