//! [`RedisLimiter`]: counters in Redis, shared by every gateway replica
//! that uses the same key prefix.

use super::{
    system_clock, window_at, Clock, LimitKind, RateLimitError, RateLimited, RateLimiter, Subject,
};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::Script;

/// Seconds a window's counter lives in Redis: the window itself plus one
/// spare minute, so a counter never outlives its use by much and a replica
/// whose clock lags a little still finds it.
const KEY_TTL_SECS: i64 = 120;

/// Check-and-count over all subjects in one step. Redis runs a script
/// without interleaving other commands, which makes the whole admission
/// atomic across subjects and replicas.
///
/// `KEYS`: per subject, its rpm counter then its tpm counter.
/// `ARGV[1]`: the counters' ttl; `ARGV[2]`: the request's sequences, each
/// counted against rpm; then per subject its rpm and tpm limits, `-1` for
/// none.
/// Returns `{0, 0, 0}` when admitted, else `{subject index (1-based),
/// 1 for rpm or 2 for tpm, current count}`.
const ADMIT_SCRIPT: &str = r"
local ttl = tonumber(ARGV[1])
local seqs = tonumber(ARGV[2])
local n = #KEYS / 2
for i = 1, n do
  local rpm = tonumber(ARGV[2 * i + 1])
  local tpm = tonumber(ARGV[2 * i + 2])
  if rpm >= 0 then
    local used = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
    if used + seqs > rpm then return {i, 1, used} end
  end
  if tpm >= 0 then
    local used = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
    if used >= tpm then return {i, 2, used} end
  end
end
for i = 1, n do
  if tonumber(ARGV[2 * i + 1]) >= 0 then
    redis.call('INCRBY', KEYS[2 * i - 1], seqs)
    redis.call('EXPIRE', KEYS[2 * i - 1], ttl)
  end
end
return {0, 0, 0}
";

/// Rate limits shared through Redis.
///
/// Counters are plain integers at `<prefix>:<subject id>:<window>:rpm` and
/// `...:tpm`, expiring after two minutes. Replicas sharing a prefix share
/// limits; a different prefix isolates a deployment (or a test). The window
/// comes from each replica's clock, so replicas should run NTP: a skew only
/// moves the boundary by that much. The admission script touches several
/// keys, so under Redis Cluster all of them must hash to one slot: put a
/// hash tag in the prefix (`"{engine-rl}"`).
///
/// Clone the integrator's [`ConnectionManager`] in (it multiplexes and
/// reconnects by itself); a failed command is [`RateLimitError::Backend`].
#[derive(Clone)]
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    script: Script,
    clock: Clock,
}

impl RedisLimiter {
    /// A limiter over `conn` whose keys start with `prefix`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>) -> Self {
        Self::with_clock(conn, prefix, system_clock())
    }

    /// As [`Self::new`], reading the time from `clock` (tests).
    pub fn with_clock(conn: ConnectionManager, prefix: impl Into<String>, clock: Clock) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            script: Script::new(ADMIT_SCRIPT),
            clock,
        }
    }

    fn key(&self, subject: &str, window: u64, limit: LimitKind) -> String {
        format!("{}:{subject}:{window}:{limit}", self.prefix)
    }
}

/// A limit as a script argument: `-1` for none, saturated at `i64::MAX`.
fn limit_arg(limit: Option<u64>) -> i64 {
    limit.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

fn backend(e: redis::RedisError) -> RateLimitError {
    RateLimitError::Backend(e.to_string())
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn admit_n(&self, subjects: &[Subject], sequences: u64) -> Result<(), RateLimitError> {
        let limited: Vec<&Subject> = subjects
            .iter()
            .filter(|s| !s.limits.is_unlimited())
            .collect();
        if limited.is_empty() {
            return Ok(());
        }
        let (window, retry_after) = window_at((self.clock)());
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(KEY_TTL_SECS)
            .arg(i64::try_from(sequences.max(1)).unwrap_or(i64::MAX));
        for subject in &limited {
            invocation
                .key(self.key(&subject.id, window, LimitKind::Rpm))
                .key(self.key(&subject.id, window, LimitKind::Tpm))
                .arg(limit_arg(subject.limits.rpm))
                .arg(limit_arg(subject.limits.tpm));
        }
        let mut conn = self.conn.clone();
        let (index, kind, current): (i64, i64, i64) =
            invocation.invoke_async(&mut conn).await.map_err(backend)?;
        if index == 0 {
            return Ok(());
        }
        let subject = usize::try_from(index - 1)
            .ok()
            .and_then(|i| limited.get(i))
            .ok_or_else(|| {
                RateLimitError::Backend(format!("admission script returned subject {index}"))
            })?;
        let (limit, max) = match kind {
            1 => (LimitKind::Rpm, subject.limits.rpm),
            _ => (LimitKind::Tpm, subject.limits.tpm),
        };
        Err(RateLimitError::Limited(RateLimited {
            subject: subject.id.clone(),
            limit,
            max: max.unwrap_or_default(),
            current: u64::try_from(current).unwrap_or_default(),
            retry_after,
        }))
    }

    async fn record_tokens(&self, subjects: &[Subject], tokens: u64) -> Result<(), RateLimitError> {
        let with_tpm: Vec<&Subject> = subjects.iter().filter(|s| s.limits.tpm.is_some()).collect();
        if tokens == 0 || with_tpm.is_empty() {
            return Ok(());
        }
        let (window, _) = window_at((self.clock)());
        let delta = i64::try_from(tokens).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for subject in with_tpm {
            let key = self.key(&subject.id, window, LimitKind::Tpm);
            pipe.incr(&key, delta).ignore();
            pipe.expire(&key, KEY_TTL_SECS).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(backend)
    }
}
