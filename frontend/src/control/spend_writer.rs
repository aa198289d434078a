//! Spend logs written in batches, off the request path, through a local
//! journal so that a database outage neither grows memory without bound
//! nor loses spend to a `kill -9`.
//!
//! A request's log goes into a channel (a push, no I/O) when it settles.
//! Every `interval` a task takes what arrived, appends it to the spend
//! journal ([`super::journal`]) and syncs it to disk, then writes it to the
//! store in one transaction per chunk; a journal segment is deleted once
//! its logs are stored. Store writes run beside the journaling, so a slow
//! or unreachable database never delays it: a `kill -9` loses at most the
//! logs of the last `interval` plus a batch being appended, whether the
//! database is up or down, and the next start replays what the journal
//! holds. While the store fails, segments wait on disk (memory keeps at
//! most [`MEMORY_LOGS`] of their logs; the rest are read back when
//! written) and are retried every interval.
//!
//! Without a journal (none configured, or its disk failing), unwritten
//! logs are held in memory; once [`SpendWriter::is_saturated`] says more
//! than `hold_limit` are held, the control plane refuses new paid
//! requests (503) until the store takes them, so memory stays bounded.

use super::journal::{Journal, Sealed};
use crate::control::ledger::SpendLedger;
use crate::store::{SpendLog, Store, StoreError};
use futures::future::BoxFuture;
use futures::FutureExt;
use prometheus::IntCounterVec;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Logs of journal segments kept in memory while they wait to be written;
/// beyond it they are read back from disk when written.
pub const MEMORY_LOGS: usize = 50_000;

/// Logs per store transaction.
const CHUNK: usize = 1_000;

/// Default number of unwritten, unjournaled logs held in memory before
/// paid requests are refused.
pub const DEFAULT_HOLD_LIMIT: usize = 100_000;

/// One settled request's log and the ledger owners its cost was added to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingLog {
    /// The row.
    pub log: SpendLog,
    /// `key:..`, `team:..`, `user:..` entries of the ledger to settle.
    pub owners: Vec<String>,
}

/// How the writer runs.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Seconds between batches (`proxy_batch_write_at`).
    pub interval: Duration,
    /// The spend journal's folder; `None` keeps unwritten logs in memory.
    pub journal: Option<PathBuf>,
    /// Unjournaled logs held in memory before paid requests are refused.
    pub hold_limit: usize,
}

/// Commands of the writer task.
enum Command {
    Log(Box<PendingLog>),
    Flush(oneshot::Sender<()>),
}

/// The handle requests push logs into; cheap to clone.
#[derive(Clone)]
pub struct SpendWriter {
    tx: mpsc::UnboundedSender<Command>,
    saturated: Arc<AtomicBool>,
}

/// Called after each written batch with the logs now in the store (their
/// owners' cached records are stale).
pub type OnWritten = Arc<dyn Fn(&[PendingLog]) + Send + Sync>;

impl SpendWriter {
    /// Starts the writer task on the current tokio runtime. Opens the
    /// journal first (adopting segments of dead processes, written at
    /// once); a journal that cannot be opened is logged and the writer
    /// holds logs in memory instead.
    pub async fn spawn(
        store: Arc<dyn Store>,
        ledger: Arc<SpendLedger>,
        options: WriterOptions,
        on_written: OnWritten,
        batches: IntCounterVec,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let saturated = Arc::new(AtomicBool::new(false));
        let mut queue = VecDeque::new();
        let journal = match options.journal.clone() {
            Some(dir) => match blocking(move || Journal::open(&dir)).await {
                Ok((journal, adopted)) => {
                    if !adopted.is_empty() {
                        tracing::info!(
                            segments = adopted.len(),
                            "replaying spend journal segments of a previous run"
                        );
                    }
                    queue.extend(adopted.into_iter().map(Unit::sealed));
                    Some(journal)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the spend journal; unwritten spend is held in memory");
                    None
                }
            },
            None => None,
        };
        let task = Task {
            sink: Sink {
                store,
                ledger,
                on_written,
                batches,
            },
            active_logs: journal.as_ref().map(|_| Vec::new()),
            journal: journal.map(|j| Arc::new(std::sync::Mutex::new(j))),
            batch: Vec::new(),
            queue,
            held: Vec::new(),
            hold_limit: options.hold_limit.max(1),
            dropped: 0,
            saturated: Arc::clone(&saturated),
        };
        tokio::spawn(task.run(options.interval, rx));
        Self { tx, saturated }
    }

    /// Queues `log`; never blocks. Fails only if the writer task is gone
    /// (the runtime is shutting down), which is logged.
    pub fn push(&self, log: PendingLog) {
        if self.tx.send(Command::Log(Box::new(log))).is_err() {
            tracing::error!("spend writer stopped; a spend log was dropped");
        }
    }

    /// Journals what is queued and tries to write everything unwritten
    /// now, then returns (shutdown; admin reads; tests). With the store
    /// down it returns after the failed try, the logs still journaled.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Whether so many logs wait in memory (no journal, store down) that
    /// new paid requests must be refused.
    pub fn is_saturated(&self) -> bool {
        self.saturated.load(Ordering::Relaxed)
    }
}

/// Runs blocking journal I/O off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// Logs to write as one piece: a sealed journal segment (its logs in
/// memory, or read back when `logs` is `None`) or logs held only in
/// memory (`segment` is `None`).
struct Unit {
    logs: Option<Vec<PendingLog>>,
    segment: Option<Sealed>,
    /// Whether the logs' costs are in this process's ledger.
    own: bool,
}

impl Unit {
    fn sealed(segment: Sealed) -> Self {
        Self {
            logs: None,
            own: segment.own,
            segment: Some(segment),
        }
    }

    fn in_memory(&self) -> usize {
        self.logs.as_ref().map_or(0, Vec::len)
    }
}

/// Where a batch goes, and who hears about it.
#[derive(Clone)]
struct Sink {
    store: Arc<dyn Store>,
    ledger: Arc<SpendLedger>,
    on_written: OnWritten,
    batches: IntCounterVec,
}

/// One write attempt's units, each with whether it was stored.
type Attempt = Vec<(Unit, Result<(), String>)>;

/// The journal, shared with the blocking tasks that append to it.
type SharedJournal = Arc<std::sync::Mutex<Journal>>;

fn lock(journal: &SharedJournal) -> std::sync::MutexGuard<'_, Journal> {
    // Poisoned only if an append panicked; the segment state is still
    // consistent enough to seal and retry.
    journal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Task {
    sink: Sink,
    journal: Option<SharedJournal>,
    /// Logs of the active journal segment, while they fit in memory.
    active_logs: Option<Vec<PendingLog>>,
    /// Received since the last tick.
    batch: Vec<PendingLog>,
    /// Unwritten units, oldest first (empty while an attempt runs: the
    /// attempt owns them).
    queue: VecDeque<Unit>,
    /// Unwritten logs that are not journaled.
    held: Vec<PendingLog>,
    hold_limit: usize,
    /// Zero-cost logs dropped because memory was full.
    dropped: u64,
    saturated: Arc<AtomicBool>,
}

impl Task {
    async fn run(mut self, interval: Duration, mut rx: mpsc::UnboundedReceiver<Command>) {
        // The first tick is one interval from now (a plain `interval` would
        // fire at once); adopted segments are written at once.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut inflight: Option<BoxFuture<'static, Attempt>> = None;
        // Flushes waiting for the next attempt, and those waiting for the
        // attempt in flight.
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        let mut answering: Vec<oneshot::Sender<()>> = Vec::new();
        let mut closed = false;
        let mut kick = !self.queue.is_empty();
        loop {
            if kick || closed {
                kick = false;
                self.persist().await;
                if inflight.is_none() {
                    inflight = self.start_attempt();
                    answering.append(&mut waiting);
                    if inflight.is_none() {
                        for done in answering.drain(..) {
                            let _ = done.send(());
                        }
                        if closed {
                            break;
                        }
                    }
                }
            }
            tokio::select! {
                cmd = rx.recv(), if !closed => match cmd {
                    Some(Command::Log(log)) => self.batch.push(*log),
                    Some(Command::Flush(done)) => {
                        waiting.push(done);
                        kick = true;
                    }
                    None => closed = true,
                },
                _ = tick.tick(), if !closed => kick = true,
                attempt = async {
                    match inflight.as_mut() {
                        Some(f) => f.await,
                        None => std::future::pending().await,
                    }
                } => {
                    inflight = None;
                    let failed = self.finish_attempt(attempt).await;
                    for done in answering.drain(..) {
                        let _ = done.send(());
                    }
                    if closed && failed {
                        // The journal keeps what the store did not take.
                        break;
                    }
                    kick |= !waiting.is_empty();
                }
            }
        }
        self.stop().await;
    }

    /// At the end: removes an empty active segment and says what is left.
    async fn stop(&mut self) {
        if let Some(journal) = self.journal.take() {
            let closed = blocking(move || {
                let mut journal = lock(&journal);
                journal.close_active()
            })
            .await;
            if let Err(e) = closed {
                tracing::warn!(error = %e, "could not remove an empty spend journal segment");
            }
        }
        let journaled: usize = self.queue.iter().filter(|u| u.segment.is_some()).count();
        if journaled > 0 || !self.held.is_empty() {
            tracing::error!(
                journal_segments = journaled,
                held_in_memory = self.held.len(),
                "stopping with spend not yet in the store; journaled spend is replayed at the next start"
            );
        }
    }

    /// Journals the logs received since the last tick (or holds them in
    /// memory when there is no journal or it fails).
    async fn persist(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return;
        }
        let Some(journal) = self.journal.clone() else {
            self.hold(batch);
            return;
        };
        let result = tokio::task::spawn_blocking(move || {
            let result = lock(&journal).append(&batch);
            (batch, result)
        })
        .await;
        match result {
            Ok((batch, Ok(()))) => match self.active_logs.as_mut() {
                Some(logs) if logs.len() + batch.len() <= MEMORY_LOGS => logs.extend(batch),
                // Past the memory allowance the segment is read back from
                // disk when it is written.
                _ => self.active_logs = None,
            },
            Ok((batch, Err(e))) => {
                tracing::error!(error = %e, "appending to the spend journal failed; holding spend in memory");
                self.hold(batch);
            }
            Err(e) => {
                // The append panicked; its batch went with it.
                tracing::error!(error = %e, "the spend journal task failed; a batch of spend logs was lost");
            }
        }
    }

    /// Keeps `logs` in memory, dropping zero-cost ones (no money) once the
    /// hold limit is reached.
    fn hold(&mut self, logs: Vec<PendingLog>) {
        for log in logs {
            if self.held.len() >= self.hold_limit && log.log.cost == 0.0 {
                self.dropped += 1;
            } else {
                self.held.push(log);
            }
        }
        self.update_saturation();
    }

    fn update_saturation(&self) {
        self.saturated
            .store(self.held.len() >= self.hold_limit, Ordering::Relaxed);
    }

    /// Starts writing everything unwritten, oldest first: queued units,
    /// the active journal segment (sealed for it), held logs.
    fn start_attempt(&mut self) -> Option<BoxFuture<'static, Attempt>> {
        if let Some(journal) = &self.journal {
            if let Some(segment) = lock(journal).seal() {
                self.queue.push_back(Unit {
                    logs: self.active_logs.take(),
                    segment: Some(segment),
                    own: true,
                });
            }
            self.active_logs.get_or_insert_with(Vec::new);
        }
        if !self.held.is_empty() {
            self.queue.push_back(Unit {
                logs: Some(std::mem::take(&mut self.held)),
                segment: None,
                own: true,
            });
        }
        if self.queue.is_empty() {
            return None;
        }
        let units: Vec<Unit> = self.queue.drain(..).collect();
        let store = Arc::clone(&self.sink.store);
        Some(
            async move {
                let mut out = Vec::with_capacity(units.len());
                let mut failed = false;
                for mut unit in units {
                    let result = if failed {
                        Err("not tried: an earlier write failed".to_owned())
                    } else {
                        write_unit(&*store, &mut unit).await
                    };
                    failed = result.is_err();
                    out.push((unit, result));
                }
                out
            }
            .boxed(),
        )
    }

    /// Settles what was stored and requeues what was not; returns whether
    /// anything failed.
    async fn finish_attempt(&mut self, attempt: Attempt) -> bool {
        let mut failure: Option<String> = None;
        let mut unwritten = 0;
        for (mut unit, result) in attempt {
            match result {
                Ok(()) => {
                    let logs = unit.logs.take().unwrap_or_default();
                    if !logs.is_empty() {
                        self.sink.batches.with_label_values(&["ok"]).inc();
                        // Stale records go first: a reload in between sees
                        // the new stored spend plus the still-pending cost
                        // (an overcount for a moment, never an undercount).
                        (self.sink.on_written)(&logs);
                        if unit.own {
                            for p in &logs {
                                self.sink.ledger.written(&p.owners, p.log.cost);
                            }
                        }
                    }
                    if let Some(segment) = unit.segment.take() {
                        if let Err(e) = blocking(move || segment.remove()).await {
                            tracing::warn!(error = %e, "could not delete a written spend journal segment");
                        }
                    }
                }
                Err(e) => {
                    unwritten += unit.in_memory();
                    failure.get_or_insert(e);
                    match unit.segment {
                        Some(_) => {
                            let in_memory: usize = self.queue.iter().map(Unit::in_memory).sum();
                            if in_memory + unit.in_memory() > MEMORY_LOGS {
                                unit.logs = None;
                            }
                            self.queue.push_back(unit);
                        }
                        None => {
                            let mut logs = unit.logs.take().unwrap_or_default();
                            logs.append(&mut self.held);
                            self.held = logs;
                        }
                    }
                }
            }
        }
        self.update_saturation();
        if self.dropped > 0 {
            tracing::warn!(
                dropped = self.dropped,
                "zero-cost spend logs dropped: the store is down and memory is full"
            );
            self.dropped = 0;
        }
        match failure {
            Some(error) => {
                self.sink.batches.with_label_values(&["error"]).inc();
                tracing::error!(
                    %error,
                    journal_segments = self.queue.iter().filter(|u| u.segment.is_some()).count(),
                    held_in_memory = self.held.len(),
                    logs_in_memory = unwritten,
                    "writing spend logs failed; retrying with the next batch"
                );
                true
            }
            None => false,
        }
    }
}

/// Writes one unit's logs (reading a segment back if needed), in
/// transactions of [`CHUNK`] logs.
async fn write_unit(store: &dyn Store, unit: &mut Unit) -> Result<(), String> {
    if unit.logs.is_none() {
        let Some(segment) = unit.segment.take() else {
            return Ok(());
        };
        let (segment, read) = tokio::task::spawn_blocking(move || {
            let read = segment.read();
            (segment, read)
        })
        .await
        .map_err(|e| format!("reading a spend journal segment: {e}"))?;
        let path = segment.path().display().to_string();
        unit.segment = Some(segment);
        let contents = read.map_err(|e| format!("reading spend journal segment {path}: {e}"))?;
        if contents.skipped > 0 {
            tracing::warn!(
                segment = %path,
                skipped = contents.skipped,
                "skipped unreadable spend journal lines (a write cut by a crash)"
            );
        }
        unit.logs = Some(contents.logs);
    }
    let logs: Vec<SpendLog> = unit.logs.iter().flatten().map(|p| p.log.clone()).collect();
    for chunk in logs.chunks(CHUNK) {
        store
            .record_spend(chunk)
            .await
            .map_err(|e: StoreError| e.to_string())?;
    }
    Ok(())
}
