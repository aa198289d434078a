//! The periodic stats line vLLM users read in their server log, so a
//! working server shows it is alive:
//!
//! ```text
//! Engine 000: Avg prompt throughput: 40.1 tokens/s, Avg generation throughput: 21.3 tokens/s,
//! Running: 2 reqs, Waiting: 0 reqs, KV cache usage: 0.4%, Prefix cache hit rate: 12.5%
//! ```
//!
//! Read from the engine's Prometheus metrics every interval by a small
//! thread (the core loop stays free of clocks for logging). Like vLLM's
//! `LoggingStatLogger`, it writes while there is work and once more when
//! the work ends, and is quiet when idle. The prefix-cache hit rate is
//! over all prompt tokens since start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::EngineMetrics;

/// The counters and gauges one line is computed from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StatsSnapshot {
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub running: i64,
    pub waiting: i64,
    /// Fraction in [0, 1].
    pub kv_cache_usage: f64,
    pub prefix_queries: u64,
    pub prefix_hits: u64,
}

impl StatsSnapshot {
    fn read(m: &EngineMetrics) -> Self {
        Self {
            prompt_tokens: m.prompt_tokens.get(),
            generation_tokens: m.generation_tokens.get(),
            running: m.num_requests_running.get(),
            waiting: m.num_requests_waiting.get(),
            kv_cache_usage: m.kv_cache_usage_perc.get(),
            prefix_queries: m.prefix_cache_queries.get(),
            prefix_hits: m.prefix_cache_hits.get(),
        }
    }
}

/// Turns successive snapshots into log lines.
#[derive(Debug, Default)]
pub struct StatsWindow {
    last: StatsSnapshot,
    was_busy: bool,
}

impl StatsWindow {
    /// The line for `now` after `elapsed` since the previous tick, or
    /// `None` when the engine was idle then and is idle now.
    pub fn tick(&mut self, now: StatsSnapshot, elapsed: Duration) -> Option<String> {
        let prompt = now.prompt_tokens.saturating_sub(self.last.prompt_tokens);
        let generation = now
            .generation_tokens
            .saturating_sub(self.last.generation_tokens);
        let busy = now.running > 0 || now.waiting > 0 || prompt > 0 || generation > 0;
        let log = busy || self.was_busy;
        self.was_busy = busy;
        self.last = now;
        if !log {
            return None;
        }
        let secs = elapsed.as_secs_f64().max(1e-3);
        let hit_rate = if now.prefix_queries > 0 {
            100.0 * now.prefix_hits as f64 / now.prefix_queries as f64
        } else {
            0.0
        };
        Some(format!(
            "Engine 000: Avg prompt throughput: {:.1} tokens/s, Avg generation throughput: {:.1} tokens/s, \
             Running: {} reqs, Waiting: {} reqs, KV cache usage: {:.1}%, Prefix cache hit rate: {:.1}%",
            prompt as f64 / secs,
            generation as f64 / secs,
            now.running,
            now.waiting,
            100.0 * now.kv_cache_usage,
            hit_rate,
        ))
    }
}

/// The logging thread; stops when dropped.
pub struct StatsLogger {
    stop: Arc<AtomicBool>,
}

impl StatsLogger {
    /// Logs a line every `interval` (see [`StatsWindow::tick`]).
    pub fn spawn(metrics: EngineMetrics, interval: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("stats-log".into())
            .spawn(move || {
                let mut window = StatsWindow {
                    last: StatsSnapshot::read(&metrics),
                    ..StatsWindow::default()
                };
                let mut last = Instant::now();
                // Sleep in short slices so a drop stops the thread quickly.
                let slice = interval.min(Duration::from_millis(200));
                while !stopped.load(Ordering::Relaxed) {
                    // A thread of its own, not an async task: sleeping
                    // blocks nothing else.
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(slice);
                    if last.elapsed() < interval {
                        continue;
                    }
                    let elapsed = last.elapsed();
                    last = Instant::now();
                    if let Some(line) = window.tick(StatsSnapshot::read(&metrics), elapsed) {
                        tracing::info!(target: "stats", "{line}");
                    }
                }
            })?;
        Ok(Self { stop })
    }
}

impl Drop for StatsLogger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn logs_while_busy_once_after_and_never_when_idle() {
        let mut w = StatsWindow::default();
        let s = Duration::from_secs(5);
        assert_eq!(w.tick(StatsSnapshot::default(), s), None);
        let busy = StatsSnapshot {
            prompt_tokens: 100,
            generation_tokens: 50,
            running: 2,
            waiting: 1,
            kv_cache_usage: 0.125,
            prefix_queries: 100,
            prefix_hits: 25,
        };
        let line = w.tick(busy, s).unwrap();
        assert_eq!(
            line,
            "Engine 000: Avg prompt throughput: 20.0 tokens/s, Avg generation throughput: 10.0 tokens/s, \
             Running: 2 reqs, Waiting: 1 reqs, KV cache usage: 12.5%, Prefix cache hit rate: 25.0%"
        );
        let idle = StatsSnapshot {
            running: 0,
            waiting: 0,
            kv_cache_usage: 0.0,
            ..busy
        };
        let last = w.tick(idle, s).unwrap();
        assert!(
            last.contains("Avg generation throughput: 0.0 tokens/s"),
            "{last}"
        );
        assert_eq!(w.tick(idle, s), None);
    }
}
