//! Spend logs written in batches, off the request path.
//!
//! A request's log goes into an unbounded channel (a push, no I/O) when it
//! settles; a task drains the channel every `interval` and writes the batch
//! in one store transaction. A `kill -9` therefore loses at most the logs
//! of the last `interval` plus one batch being written: with the default
//! `proxy_batch_write_at: 1`, about one to two seconds of spend. A failed
//! write keeps its batch and retries it with the next one, so a database
//! outage delays spend rather than losing it (while the process lives).

use crate::control::ledger::SpendLedger;
use crate::store::{SpendLog, Store};
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What the writer needs of one log besides the log itself: the ledger
/// owners its cost was added to.
#[derive(Debug)]
pub struct PendingLog {
    /// The row.
    pub log: SpendLog,
    /// `key:..`, `team:..`, `user:..` entries of the ledger to settle.
    pub owners: Vec<String>,
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
}

/// Called after each written batch with the owners whose cached records
/// are now stale (their spend changed in the store).
pub type OnWritten = Arc<dyn Fn(&[PendingLog]) + Send + Sync>;

impl SpendWriter {
    /// Starts the writer task on the current tokio runtime.
    pub fn spawn(
        store: Arc<dyn Store>,
        ledger: Arc<SpendLedger>,
        interval: Duration,
        on_written: OnWritten,
        batches: IntCounterVec,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let sink = Sink {
            store,
            ledger,
            on_written,
            batches,
        };
        tokio::spawn(run(sink, interval, rx));
        Self { tx }
    }

    /// Queues `log`; never blocks. Fails only if the writer task is gone
    /// (the runtime is shutting down), which is logged.
    pub fn push(&self, log: PendingLog) {
        if self.tx.send(Command::Log(Box::new(log))).is_err() {
            tracing::error!("spend writer stopped; a spend log was dropped");
        }
    }

    /// Writes everything queued so far now and waits for it (shutdown, and
    /// tests that read spend right after a request).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Where a batch goes, and who hears about it.
struct Sink {
    store: Arc<dyn Store>,
    ledger: Arc<SpendLedger>,
    on_written: OnWritten,
    batches: IntCounterVec,
}

async fn run(sink: Sink, interval: Duration, mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut batch: Vec<PendingLog> = Vec::new();
    // The first write is one interval from now (a plain `interval` would
    // fire at once).
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut waiters = Vec::new();
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Command::Log(log)) => { batch.push(*log); continue; }
                Some(Command::Flush(done)) => waiters.push(done),
                None => {
                    sink.write(&mut batch).await;
                    return;
                }
            },
            _ = tick.tick() => {}
        }
        // Take whatever else is queued, then write it all in one batch.
        while let Ok(cmd) = rx.try_recv() {
            match cmd {
                Command::Log(log) => batch.push(*log),
                Command::Flush(done) => waiters.push(done),
            }
        }
        sink.write(&mut batch).await;
        for done in waiters {
            let _ = done.send(());
        }
    }
}

impl Sink {
    /// Writes `batch`; on success empties it and settles the ledger, on
    /// failure keeps it for the next tick.
    async fn write(&self, batch: &mut Vec<PendingLog>) {
        if batch.is_empty() {
            return;
        }
        let logs: Vec<SpendLog> = batch.iter().map(|p| p.log.clone()).collect();
        match self.store.record_spend(&logs).await {
            Ok(()) => {
                self.batches.with_label_values(&["ok"]).inc();
                // Stale records go first: a reload in between sees the new
                // stored spend plus the still-pending cost (an overcount for a
                // moment, never an undercount that would let a budget slip).
                (self.on_written)(batch);
                for p in batch.iter() {
                    self.ledger.settle(&p.owners, p.log.cost);
                }
                batch.clear();
            }
            Err(e) => {
                self.batches.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, pending = batch.len(), "writing spend logs failed; retrying with the next batch");
            }
        }
    }
}
