//! [`MemoryLimiter`]: the counters in this process, for a single replica
//! (or when each replica may enforce the limits on its own).

use super::{
    system_clock, window_at, Clock, LimitKind, RateLimitError, RateLimited, RateLimiter, Subject,
};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Per-minute counters in a `HashMap` behind one mutex.
///
/// The check and the increment of all subjects happen under the lock, so
/// concurrent admissions never overshoot an rpm limit. Each counter holds
/// only its current window (a counter from an older window reads as zero
/// and restarts), and once per window the map drops every counter not
/// touched in it, so memory follows the subjects active this minute.
pub struct MemoryLimiter {
    state: Mutex<State>,
    clock: Clock,
}

#[derive(Default)]
struct State {
    counters: HashMap<String, Counter>,
    /// The window in which `counters` was last pruned.
    pruned_at: u64,
}

#[derive(Clone, Copy)]
struct Counter {
    window: u64,
    requests: u64,
    tokens: u64,
}

impl Counter {
    /// This counter's values in `window`: zero when it belongs to another.
    fn in_window(&self, window: u64) -> (u64, u64) {
        if self.window == window {
            (self.requests, self.tokens)
        } else {
            (0, 0)
        }
    }
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLimiter {
    /// An empty limiter on the wall clock.
    pub fn new() -> Self {
        Self::with_clock(system_clock())
    }

    /// An empty limiter reading the time from `clock` (tests move it across
    /// window boundaries).
    pub fn with_clock(clock: Clock) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock,
        }
    }

    /// How many subjects have a counter now (after the last pruning); for
    /// tests and gauges.
    pub fn tracked_subjects(&self) -> usize {
        self.lock().counters.len()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters for counters, so a poisoned lock is reused.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    /// Drops counters of past windows, once per window.
    fn prune(&mut self, window: u64) {
        if self.pruned_at != window {
            self.counters.retain(|_, c| c.window >= window);
            self.pruned_at = window;
        }
    }

    /// The counter of `id` in `window`, reset if it held an older window.
    fn counter_mut(&mut self, id: &str, window: u64) -> &mut Counter {
        let counter = self.counters.entry(id.to_owned()).or_insert(Counter {
            window,
            requests: 0,
            tokens: 0,
        });
        if counter.window != window {
            *counter = Counter {
                window,
                requests: 0,
                tokens: 0,
            };
        }
        counter
    }
}

#[async_trait]
impl RateLimiter for MemoryLimiter {
    async fn admit_n(&self, subjects: &[Subject], sequences: u64) -> Result<(), RateLimitError> {
        let sequences = sequences.max(1);
        let (window, retry_after) = window_at((self.clock)());
        let mut state = self.lock();
        state.prune(window);
        for subject in subjects {
            let (requests, tokens) = state
                .counters
                .get(&subject.id)
                .map_or((0, 0), |c| c.in_window(window));
            let refused = match (subject.limits.rpm, subject.limits.tpm) {
                (Some(rpm), _) if requests.saturating_add(sequences) > rpm => {
                    Some((LimitKind::Rpm, rpm, requests))
                }
                (_, Some(tpm)) if tokens >= tpm => Some((LimitKind::Tpm, tpm, tokens)),
                _ => None,
            };
            if let Some((limit, max, current)) = refused {
                return Err(RateLimitError::Limited(RateLimited {
                    subject: subject.id.clone(),
                    limit,
                    max,
                    current,
                    retry_after,
                }));
            }
        }
        for subject in subjects.iter().filter(|s| s.limits.rpm.is_some()) {
            let counter = state.counter_mut(&subject.id, window);
            counter.requests = counter.requests.saturating_add(sequences);
        }
        Ok(())
    }

    async fn record_tokens(&self, subjects: &[Subject], tokens: u64) -> Result<(), RateLimitError> {
        if tokens == 0 {
            return Ok(());
        }
        let (window, _) = window_at((self.clock)());
        let mut state = self.lock();
        state.prune(window);
        for subject in subjects.iter().filter(|s| s.limits.tpm.is_some()) {
            let counter = state.counter_mut(&subject.id, window);
            counter.tokens = counter.tokens.saturating_add(tokens);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::super::Limits;
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    /// A clock the test moves by hand, in milliseconds since the epoch.
    fn manual_clock(start_ms: u64) -> (Arc<AtomicU64>, Clock) {
        let ms = Arc::new(AtomicU64::new(start_ms));
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

    fn limited(r: Result<(), RateLimitError>) -> RateLimited {
        match r {
            Err(RateLimitError::Limited(l)) => l,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
    async fn rpm_is_exact_under_200_concurrent_admits() {
        let (_ms, clock) = manual_clock(30_000);
        let limiter = Arc::new(MemoryLimiter::with_clock(clock));
        let subjects = Arc::new(vec![rpm("key:a", 50)]);
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                let subjects = Arc::clone(&subjects);
                tokio::spawn(async move { limiter.admit(&subjects).await })
            })
            .collect();
        let mut admitted = 0;
        let mut refused = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => admitted += 1,
                Err(RateLimitError::Limited(l)) => {
                    assert_eq!((l.limit, l.max, l.current), (LimitKind::Rpm, 50, 50));
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((admitted, refused), (50, 150));
    }

    #[tokio::test]
    async fn rpm_exact_at_the_limit_with_a_fixed_clock() {
        let (_ms, clock) = manual_clock(1_000);
        let limiter = MemoryLimiter::with_clock(clock);
        let subjects = [rpm("key:a", 3)];
        for _ in 0..3 {
            limiter.admit(&subjects).await.unwrap();
        }
        let l = limited(limiter.admit(&subjects).await);
        assert_eq!((l.limit, l.max, l.current), (LimitKind::Rpm, 3, 3));
        assert_eq!(l.subject, "key:a");
    }

    #[tokio::test]
    async fn tpm_counts_recorded_tokens() {
        let (_ms, clock) = manual_clock(0);
        let limiter = MemoryLimiter::with_clock(clock);
        let subjects = [tpm("key:a", 100)];
        // Admission alone never spends tokens.
        for _ in 0..10 {
            limiter.admit(&subjects).await.unwrap();
        }
        limiter.record_tokens(&subjects, 60).await.unwrap();
        limiter.admit(&subjects).await.unwrap();
        // Usage is recorded after the fact, so the limit may be overshot
        // once; then the subject is refused until the window ends.
        limiter.record_tokens(&subjects, 50).await.unwrap();
        let l = limited(limiter.admit(&subjects).await);
        assert_eq!((l.limit, l.max, l.current), (LimitKind::Tpm, 100, 110));
        // A subject without a tpm limit gets no counter from recording.
        limiter
            .record_tokens(&[rpm("key:b", 5)], 1_000)
            .await
            .unwrap();
        limiter.admit(&[rpm("key:b", 5)]).await.unwrap();
    }

    #[tokio::test]
    async fn windows_roll_over_and_old_counters_are_pruned() {
        let (ms, clock) = manual_clock(59_000);
        let limiter = MemoryLimiter::with_clock(clock);
        let a = [Subject::new(
            "key:a",
            Limits {
                rpm: Some(1),
                tpm: Some(10),
            },
        )];
        limiter.admit(&a).await.unwrap();
        limiter.record_tokens(&a, 10).await.unwrap();
        let l = limited(limiter.admit(&a).await);
        assert_eq!(l.limit, LimitKind::Rpm);
        assert_eq!(l.retry_after, Duration::from_secs(1));
        limiter.admit(&[rpm("key:b", 1)]).await.unwrap();
        assert_eq!(limiter.tracked_subjects(), 2);

        // Next minute: both counters start again.
        ms.store(60_000, Ordering::SeqCst);
        limiter.admit(&a).await.unwrap();
        let l = limited(limiter.admit(&a).await);
        assert_eq!((l.limit, l.current), (LimitKind::Rpm, 1));
        assert_eq!(l.retry_after, Duration::from_secs(60));
        // key:b was not used this minute and is gone.
        assert_eq!(limiter.tracked_subjects(), 1);

        // Tokens roll over too.
        ms.store(125_000, Ordering::SeqCst);
        limiter.record_tokens(&a, 10).await.unwrap();
        let l = limited(limiter.admit(&a).await);
        assert_eq!((l.limit, l.current), (LimitKind::Tpm, 10));
        ms.store(180_000, Ordering::SeqCst);
        limiter.admit(&a).await.unwrap();
    }

    #[tokio::test]
    async fn subjects_are_counted_all_or_nothing() {
        let (_ms, clock) = manual_clock(0);
        let limiter = MemoryLimiter::with_clock(clock);
        let key = rpm("key:a", 10);
        let team = rpm("team:t", 2);
        // The team allows two requests; the third is refused by the team...
        for _ in 0..2 {
            limiter.admit(&[key.clone(), team.clone()]).await.unwrap();
        }
        let l = limited(limiter.admit(&[key.clone(), team.clone()]).await);
        assert_eq!(l.subject, "team:t");
        // ...and did not count against the key: 8 more fit the key alone.
        for _ in 0..8 {
            limiter.admit(std::slice::from_ref(&key)).await.unwrap();
        }
        let l = limited(limiter.admit(std::slice::from_ref(&key)).await);
        assert_eq!((l.subject.as_str(), l.current), ("key:a", 10));
    }

    #[tokio::test]
    async fn unlimited_and_zero_limits() {
        let limiter = MemoryLimiter::new();
        let free = Subject::new("user:u", Limits::default());
        for _ in 0..100 {
            limiter.admit(std::slice::from_ref(&free)).await.unwrap();
        }
        assert_eq!(limiter.tracked_subjects(), 0);
        let suspended = rpm("key:off", 0);
        let l = limited(limiter.admit(&[free, suspended]).await);
        assert_eq!((l.subject.as_str(), l.max), ("key:off", 0));
        assert!(l.retry_after <= Duration::from_secs(60));
    }

    #[tokio::test]
    async fn rpm_counts_every_sequence_of_a_batch() {
        let (_ms, clock) = manual_clock(0);
        let limiter = MemoryLimiter::with_clock(clock);
        let subjects = [rpm("key:a", 5)];
        limiter.admit_n(&subjects, 3).await.unwrap();
        // 3 + 3 > 5: refused, and nothing counted.
        let l = limited(limiter.admit_n(&subjects, 3).await);
        assert_eq!((l.limit, l.max, l.current), (LimitKind::Rpm, 5, 3));
        limiter.admit_n(&subjects, 2).await.unwrap();
        limited(limiter.admit(&subjects).await);
        // A batch larger than the whole limit never fits.
        let fresh = [rpm("key:b", 4)];
        limited(limiter.admit_n(&fresh, 5).await);
    }
}
