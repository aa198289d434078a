//! The engine core: one thread that owns the scheduler and the executor and
//! runs the step loop (schedule, execute on the workers, update), as vLLM's
//! `EngineCore` does.
//!
//! Async callers talk to it through [`EngineCoreHandle`]: `add` returns a
//! stream of [`CoreEvent`]s for the request; dropping that stream aborts the
//! request, so a client that disconnects frees its KV blocks at the next
//! step. When the executor fails (a worker died) the core fails every
//! request in flight with `Unavailable`, refuses new ones, and reports
//! unhealthy: the API answers 503 and nothing hangs. `engine serve` then
//! exits non-zero after a short drain ([`EngineCoreHandle::failed`]), as
//! vLLM does, for a supervisor to restart it.
//!
//! Admission happens on the caller's side of the channel, before anything
//! is queued ([`CoreLimits`]): a prompt id outside the model's vocabulary
//! or sampling parameters the worker would refuse fail that request alone
//! (`Rejected`, a 400), and once `max_num_seqs + max_waiting` sequences
//! are in flight new ones are refused with `Overloaded` (a 429 with
//! `Retry-After`, as TGI and vLLM answer a full queue) instead of growing
//! the waiting queue without bound.

mod metrics;
mod stats_log;
mod step;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use proto::worker::{FailedRequest, RequestBitmask, StepBitmasks};
use scheduler::{
    FinishReason, ModelRunnerOutput, Request, RequestId, SamplingParams, Scheduler,
    SchedulerOutput, StopParams,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Notify;

pub use self::metrics::EngineMetrics;
use self::metrics::StepPhases;
pub use self::stats_log::StatsLogger;
use self::step::{runner_output, step_request};
use crate::executor::{BitmaskJob, Executor};
use crate::structured::Constraint;

/// Why the core refused or failed a request.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CoreError {
    #[error("the engine is not available: {0}")]
    Unavailable(String),
    #[error("request rejected by the scheduler: {0}")]
    Rejected(String),
    /// A worker could not run this request (it failed alone; the engine
    /// and the other requests go on). The reason is for the log.
    #[error("the engine could not run the request: {0}")]
    Failed(String),
    /// As many sequences as the engine queues are in flight: retry later.
    #[error("{0}")]
    Overloaded(String),
}

/// What the core admits, checked on the caller's side before a request is
/// queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreLimits {
    /// The model's vocabulary (`LoadModelResponse::vocab_size`): prompt
    /// ids at or above it would fail the worker's step.
    pub vocab_size: usize,
    /// Most sequences in flight (running, waiting, or finishing), i.e.
    /// `max_num_seqs + max_waiting`; further ones get `Overloaded`.
    pub max_in_flight: usize,
}

/// Seconds a client refused with `Overloaded` is told to wait.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// One request for the core: token ids and how to sample and stop.
#[derive(Debug, Clone)]
pub struct CoreRequest {
    pub id: String,
    pub prompt_token_ids: Vec<u32>,
    pub sampling: SamplingParams,
    pub stop: StopParams,
    pub priority: i32,
    /// The grammar its output must follow (structured outputs); `None`
    /// for free text.
    pub constraint: Option<Constraint>,
}

/// A sampled token's log-probability and the most likely alternatives,
/// as the worker measured them (before penalties and temperature).
#[derive(Debug, Clone, PartialEq)]
pub struct SampledLogprobs {
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// What the core reports about a request, step by step.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// Tokens appended this step; `finish_reason` set on the last event.
    Tokens {
        new_token_ids: Vec<u32>,
        logprobs: Vec<SampledLogprobs>,
        finish_reason: Option<FinishReason>,
        /// Prompt tokens served from the prefix cache (on the first event).
        num_cached_tokens: Option<usize>,
    },
    /// The request failed; no more events follow.
    Error(CoreError),
}

enum Command {
    Add(Box<CoreRequest>, UnboundedSender<CoreEvent>),
    Abort(String),
    Shutdown,
}

/// Shared, cheap-to-read state of the core.
struct Shared {
    healthy: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Woken when `healthy` turns false.
    failed: Notify,
}

/// The async side's handle to the core thread. Cloneable.
#[derive(Clone)]
pub struct EngineCoreHandle {
    commands: Sender<Command>,
    shared: Arc<Shared>,
    limits: CoreLimits,
    /// Sequences admitted whose [`RequestStream`] is still alive.
    in_flight: Arc<AtomicUsize>,
}

/// One admitted sequence; dropping it frees its place.
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EngineCoreHandle {
    /// Submits a request; its events arrive on the returned stream.
    /// Refuses it at once when its prompt or sampling parameters cannot
    /// run on the model (`Rejected`) or the queue is full (`Overloaded`).
    pub fn add(&self, request: CoreRequest) -> Result<RequestStream, CoreError> {
        self.health()?;
        self.check(&request)?;
        let admission = self.admit()?;
        let id = request.id.clone();
        let (tx, rx) = unbounded_channel();
        self.commands
            .send(Command::Add(Box::new(request), tx))
            .map_err(|_| CoreError::Unavailable("engine core stopped".into()))?;
        Ok(RequestStream {
            events: rx,
            abort: Some((id, self.commands.clone())),
            _admission: admission,
        })
    }

    /// Errors that belong to this request alone, found before it is
    /// queued, so they can never fail a step (and with it every request).
    fn check(&self, request: &CoreRequest) -> Result<(), CoreError> {
        let vocab = self.limits.vocab_size;
        if let Some(bad) = request
            .prompt_token_ids
            .iter()
            .find(|&&t| t as usize >= vocab)
        {
            return Err(CoreError::Rejected(format!(
                "token id {bad} is out of the model's vocabulary ({vocab})"
            )));
        }
        proto::sampling::check(&step::sampling_to_wire(&request.sampling))
            .map_err(CoreError::Rejected)
    }

    /// Takes a place among the `max_in_flight` sequences, if one is free.
    fn admit(&self) -> Result<Admission, CoreError> {
        let max = self.limits.max_in_flight;
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| {
                CoreError::Overloaded(format!(
                    "the engine's queue is full ({max} sequences in flight); retry later"
                ))
            })?;
        Ok(Admission(Arc::clone(&self.in_flight)))
    }

    /// What the core admits: the model's vocabulary sizes the
    /// structured-output masks.
    pub fn limits(&self) -> CoreLimits {
        self.limits
    }

    /// Sequences admitted and not yet over (for tests and metrics).
    pub fn num_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Ok while the core and its workers can serve.
    pub fn health(&self) -> Result<(), CoreError> {
        if self.shared.healthy.load(Ordering::Acquire) {
            Ok(())
        } else {
            let why = self
                .shared
                .failure
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_else(|| "engine core stopped".into());
            Err(CoreError::Unavailable(why))
        }
    }

    /// Resolves once the engine has failed (a worker died), so the server
    /// can exit: as vLLM does when its engine dies, leaving the restart to
    /// a supervisor.
    pub async fn failed(&self) {
        loop {
            // Created before the check, so a failure in between still wakes it.
            let notified = self.shared.failed.notified();
            if !self.shared.healthy.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Stops the core thread after the current step.
    pub fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

/// Events of one request. Dropping it before the request finished aborts
/// the request in the scheduler.
pub struct RequestStream {
    events: UnboundedReceiver<CoreEvent>,
    abort: Option<(String, Sender<Command>)>,
    /// Frees the sequence's place in the queue when the stream goes.
    _admission: Admission,
}

impl RequestStream {
    /// The next event, or `None` when the request is over.
    pub async fn next(&mut self) -> Option<CoreEvent> {
        let event = self.events.recv().await;
        if matches!(
            event,
            None | Some(CoreEvent::Error(_))
                | Some(CoreEvent::Tokens {
                    finish_reason: Some(_),
                    ..
                })
        ) {
            self.abort = None; // finished: nothing to abort
        }
        event
    }
}

impl futures::Stream for RequestStream {
    type Item = CoreEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<CoreEvent>> {
        let poll = self.events.poll_recv(cx);
        if let Poll::Ready(
            None
            | Some(CoreEvent::Error(_))
            | Some(CoreEvent::Tokens {
                finish_reason: Some(_),
                ..
            }),
        ) = &poll
        {
            self.abort = None;
        }
        poll
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        if let Some((id, commands)) = self.abort.take() {
            let _ = commands.send(Command::Abort(id));
        }
    }
}

/// Timing of one request, for the latency metrics.
struct Timing {
    arrival: Instant,
    first_token: Option<Instant>,
    num_prompt: usize,
    num_output: usize,
}

/// Starts the core thread over `scheduler` and `executor`; `max_in_flight`
/// bounds the sequences queued at once ([`CoreLimits`]; the vocabulary
/// comes from the executor's model).
pub fn spawn_engine_core(
    scheduler: Scheduler,
    executor: Box<dyn Executor>,
    metrics: EngineMetrics,
    max_in_flight: usize,
) -> std::io::Result<EngineCoreHandle> {
    let limits = CoreLimits {
        vocab_size: executor.model_info().vocab_size as usize,
        max_in_flight,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let shared = Arc::new(Shared {
        healthy: AtomicBool::new(true),
        failure: Mutex::new(None),
        failed: Notify::new(),
    });
    let core = EngineCore {
        scheduler,
        executor,
        metrics,
        shared: shared.clone(),
        streams: HashMap::new(),
        timings: HashMap::new(),
        constraints: HashMap::new(),
        step_id: 0,
        start: Instant::now(),
        last_prefix: Default::default(),
        last_preemptions: 0,
    };
    std::thread::Builder::new()
        .name("engine-core".into())
        .spawn(move || core.run(rx))?;
    Ok(EngineCoreHandle {
        commands: tx,
        shared,
        limits,
        in_flight: Arc::new(AtomicUsize::new(0)),
    })
}

struct EngineCore {
    scheduler: Scheduler,
    executor: Box<dyn Executor>,
    metrics: EngineMetrics,
    shared: Arc<Shared>,
    streams: HashMap<RequestId, UnboundedSender<CoreEvent>>,
    timings: HashMap<RequestId, Timing>,
    /// Grammar state of the requests with a structured output.
    constraints: HashMap<RequestId, Constraint>,
    step_id: u64,
    start: Instant,
    last_prefix: kv_cache::PrefixCacheStats,
    last_preemptions: u64,
}

/// The allowed-token bitmasks of step `step_id`'s constrained requests
/// (`ids`), computed while the workers run its forward pass. A request
/// whose grammar cannot go on gets end-of-sequence only, so the step runs
/// as scheduled, and is put in `failed` to end with an error after it.
fn grammar_masks(
    step_id: u64,
    constraints: &mut HashMap<RequestId, Constraint>,
    ids: &[RequestId],
    failed: &mut HashMap<RequestId, String>,
) -> StepBitmasks {
    let mut masks = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(c) = constraints.get_mut(id) else {
            continue;
        };
        let allowed_token_bitmask = match c.allowed_tokens() {
            Ok(Some(mask)) => mask,
            // Still reasoning: every token is allowed.
            Ok(None) => continue,
            Err(why) => {
                failed.insert(id.clone(), format!("structured output: {why}"));
                c.end_of_sequence_only()
            }
        };
        masks.push(RequestBitmask {
            req_id: id.to_string(),
            allowed_token_bitmask,
        });
    }
    StepBitmasks { step_id, masks }
}

/// How often an idle core checks its workers' health.
const IDLE_HEALTH_INTERVAL: Duration = Duration::from_secs(2);

impl EngineCore {
    fn run(mut self, commands: Receiver<Command>) {
        loop {
            let busy =
                self.scheduler.has_unfinished_requests() || self.scheduler.has_finished_pending();
            // Idle: block for the next command; busy: take what is queued.
            if !busy {
                match commands.recv_timeout(IDLE_HEALTH_INTERVAL) {
                    Ok(cmd) => {
                        if !self.apply(cmd) {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        if let Err(e) = self.executor.check_health() {
                            self.fail(e.to_string());
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let mut stop = false;
            while let Ok(cmd) = commands.try_recv() {
                if !self.apply(cmd) {
                    stop = true;
                    break;
                }
            }
            if stop {
                break;
            }
            if self.shared.healthy.load(Ordering::Acquire) {
                self.step();
            }
        }
        self.executor.shutdown();
    }

    /// Applies a command; false means shut down.
    fn apply(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Shutdown => return false,
            Command::Abort(id) => {
                let id = RequestId::from(id);
                self.scheduler.abort([&id]);
                self.streams.remove(&id);
                self.timings.remove(&id);
            }
            Command::Add(req, events) => {
                if let Err(e) = self.shared_health() {
                    let _ = events.send(CoreEvent::Error(e));
                    return true;
                }
                let id = RequestId::from(req.id.as_str());
                let num_prompt = req.prompt_token_ids.len();
                let request = Request::builder(id.clone(), req.prompt_token_ids)
                    .sampling_params(req.sampling)
                    .stop_params(req.stop)
                    .priority(req.priority)
                    .arrival_time(self.start.elapsed().as_secs_f64())
                    .build();
                match self.scheduler.add_request(request) {
                    Ok(()) => {
                        if let Some(c) = req.constraint {
                            self.constraints.insert(id.clone(), c);
                        }
                        self.streams.insert(id.clone(), events);
                        self.timings.insert(
                            id,
                            Timing {
                                arrival: Instant::now(),
                                first_token: None,
                                num_prompt,
                                num_output: 0,
                            },
                        );
                    }
                    Err(e) => {
                        let _ = events.send(CoreEvent::Error(CoreError::Rejected(e.to_string())));
                    }
                }
            }
        }
        true
    }

    fn shared_health(&self) -> Result<(), CoreError> {
        if self.shared.healthy.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(CoreError::Unavailable(
                self.shared
                    .failure
                    .lock()
                    .ok()
                    .and_then(|f| f.clone())
                    .unwrap_or_default(),
            ))
        }
    }

    /// Marks the engine failed and ends every request in flight.
    fn fail(&mut self, why: String) {
        tracing::error!("engine core failed: {why}");
        if let Ok(mut f) = self.shared.failure.lock() {
            *f = Some(why.clone());
        }
        self.shared.healthy.store(false, Ordering::Release);
        let ids: Vec<RequestId> = self.streams.keys().cloned().collect();
        self.scheduler.abort(ids.iter());
        for (_, events) in self.streams.drain() {
            let _ = events.send(CoreEvent::Error(CoreError::Unavailable(why.clone())));
        }
        self.timings.clear();
        self.shared.failed.notify_waiters();
    }

    fn step(&mut self) {
        // Requests whose client went away: abort before scheduling them.
        let gone: Vec<RequestId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.is_closed())
            .map(|(id, _)| id.clone())
            .collect();
        if !gone.is_empty() {
            self.scheduler.abort(gone.iter());
            for id in &gone {
                self.streams.remove(id);
                self.timings.remove(id);
            }
        }
        let scheduling = Instant::now();
        let out = match self.scheduler.schedule() {
            Ok(out) => out,
            Err(e) => return self.fail(format!("scheduler: {e}")),
        };
        if out.is_empty() && out.finished_req_ids.is_empty() && out.preempted_req_ids.is_empty() {
            if self.scheduler.has_unfinished_requests() && self.scheduler.num_running() == 0 {
                // Nothing can ever run (a prompt larger than the whole cache).
                let ids: Vec<RequestId> = self.streams.keys().cloned().collect();
                self.scheduler.abort(ids.iter());
                for (_, events) in self.streams.drain() {
                    let _ = events.send(CoreEvent::Error(CoreError::Rejected(
                        "the request does not fit in the KV cache".into(),
                    )));
                }
            }
            self.update_gauges();
            return;
        }
        self.step_id += 1;
        let wire = step_request(self.step_id, &out);
        let mut grammar_failed = HashMap::new();
        let mut bitmask_time = Duration::ZERO;
        let constrained: Vec<RequestId> = out
            .num_scheduled_tokens
            .iter()
            .filter(|(id, _)| self.constraints.contains_key(id))
            .map(|(id, _)| id.clone())
            .collect();
        let constrained_step = !constrained.is_empty();
        let bitmasks = constrained_step.then(|| {
            let step_id = self.step_id;
            let constraints = &mut self.constraints;
            let failed = &mut grammar_failed;
            let took = &mut bitmask_time;
            Box::new(move || {
                let started = Instant::now();
                let masks = grammar_masks(step_id, constraints, &constrained, failed);
                *took = started.elapsed();
                masks
            }) as BitmaskJob<'_>
        });
        let executing = Instant::now();
        let result = self.executor.execute(wire, bitmasks);
        self.metrics
            .bitmask_seconds
            .inc_by(bitmask_time.as_secs_f64());
        let mut result = match result {
            Ok(r) => r,
            Err(e) => return self.fail(e.to_string()),
        };
        let executed = Instant::now();
        let worker = result.timings.take().unwrap_or_default();
        if !result.failed.is_empty() {
            self.end_failed(&out, std::mem::take(&mut result.failed));
        }
        let (runner_out, mut logprobs) = runner_output(result);
        // Only steps with constrained requests count grammar time.
        let accepted = if constrained_step {
            let accepting = Instant::now();
            self.accept_sampled(&runner_out, &mut grammar_failed);
            accepting.elapsed()
        } else {
            Duration::ZERO
        };
        let outputs = self.scheduler.update_from_output(&out, &runner_out);
        let now = Instant::now();
        for o in outputs {
            if grammar_failed.contains_key(&o.req_id) {
                continue;
            }
            self.metrics
                .generation_tokens
                .inc_by(o.new_token_ids.len() as u64);
            let num_cached_tokens = self.timings.get_mut(&o.req_id).and_then(|t| {
                t.num_output += o.new_token_ids.len();
                if t.first_token.is_none() {
                    t.first_token = Some(now);
                    self.metrics.prompt_tokens.inc_by(t.num_prompt as u64);
                    self.metrics
                        .time_to_first_token
                        .observe(now.duration_since(t.arrival).as_secs_f64());
                    Some(0)
                } else {
                    None
                }
            });
            let num_cached_tokens = num_cached_tokens.map(|_| {
                self.scheduler
                    .get_request(&o.req_id)
                    .and_then(|r| r.num_cached_tokens())
                    .unwrap_or(0)
            });
            let event = CoreEvent::Tokens {
                new_token_ids: o.new_token_ids,
                logprobs: logprobs.remove(&o.req_id).unwrap_or_default(),
                finish_reason: o.finish_reason,
                num_cached_tokens,
            };
            if let Some(events) = self.streams.get(&o.req_id) {
                if events.send(event).is_err() {
                    self.scheduler.abort([&o.req_id]);
                    self.streams.remove(&o.req_id);
                }
            }
            if o.finish_reason.is_some() {
                self.streams.remove(&o.req_id);
                if let Some(t) = self.timings.remove(&o.req_id) {
                    let e2e = now.duration_since(t.arrival).as_secs_f64();
                    self.metrics.e2e_request_latency.observe(e2e);
                    self.metrics.request_success.inc();
                    if let (Some(first), true) = (t.first_token, t.num_output > 1) {
                        let tpot =
                            now.duration_since(first).as_secs_f64() / (t.num_output - 1) as f64;
                        self.metrics.time_per_output_token.observe(tpot);
                    }
                }
            }
        }
        self.end_grammar_failed(grammar_failed);
        if !self.constraints.is_empty() {
            let streams = &self.streams;
            self.constraints.retain(|id, _| streams.contains_key(id));
        }
        self.update_gauges();
        // Bitmasks not computed beside the step delayed it.
        let serial_masks = if self.executor.overlaps_bitmasks() {
            Duration::ZERO
        } else {
            bitmask_time
        };
        self.metrics.observe_step(StepPhases {
            schedule: executing - scheduling,
            grammar: accepted + serial_masks,
            round_trip: (executed - executing).saturating_sub(serial_masks),
            worker,
            output: executed.elapsed().saturating_sub(accepted),
        });
    }

    /// Advances each constrained request's grammar over its sampled
    /// tokens; a token the grammar refuses (it cannot happen under the
    /// mask) fails the request.
    fn accept_sampled(
        &mut self,
        runner_out: &ModelRunnerOutput,
        failed: &mut HashMap<RequestId, String>,
    ) {
        for (id, tokens) in runner_out.req_ids.iter().zip(&runner_out.sampled_token_ids) {
            if failed.contains_key(id) {
                continue;
            }
            if let Some(c) = self.constraints.get_mut(id) {
                if let Err(why) = c.accept(tokens) {
                    failed.insert(id.clone(), format!("structured output: {why}"));
                }
            }
        }
    }

    /// Ends the requests whose grammar failed in this step with an error.
    fn end_grammar_failed(&mut self, failed: HashMap<RequestId, String>) {
        for (id, reason) in failed {
            tracing::warn!(request = %id, %reason, "a structured output failed");
            self.scheduler.abort([&id]);
            self.timings.remove(&id);
            self.constraints.remove(&id);
            if let Some(events) = self.streams.remove(&id) {
                let _ = events.send(CoreEvent::Error(CoreError::Failed(reason)));
            }
        }
    }

    /// Ends the requests a worker could not run in step `out` (and those
    /// that read their uncomputed blocks), each with its own error; the
    /// engine and the rest of the step go on.
    fn end_failed(&mut self, out: &SchedulerOutput, failed: Vec<FailedRequest>) {
        let ids: Vec<RequestId> = failed
            .iter()
            .map(|f| RequestId::from(f.req_id.as_str()))
            .collect();
        let dependents = self.scheduler.fail_in_step(&ids, out);
        let reasons = failed
            .into_iter()
            .map(|f| (RequestId::from(f.req_id), f.reason))
            .chain(dependents.into_iter().map(|id| {
                let why = "it shared prompt blocks with a request that failed in the same step";
                (id, why.to_string())
            }));
        for (id, reason) in reasons {
            tracing::warn!(request = %id, %reason, "the worker failed a request");
            self.timings.remove(&id);
            if let Some(events) = self.streams.remove(&id) {
                let _ = events.send(CoreEvent::Error(CoreError::Failed(reason)));
            }
        }
    }

    fn update_gauges(&mut self) {
        let stats = self.scheduler.stats();
        self.metrics
            .num_requests_running
            .set(stats.num_running as i64);
        self.metrics
            .num_requests_waiting
            .set(stats.num_waiting as i64);
        self.metrics.kv_cache_usage_perc.set(stats.kv_cache_usage);
        let p = stats.prefix_cache;
        self.metrics.prefix_cache_queries.inc_by(
            p.queried_tokens
                .saturating_sub(self.last_prefix.queried_tokens),
        );
        self.metrics
            .prefix_cache_hits
            .inc_by(p.hit_tokens.saturating_sub(self.last_prefix.hit_tokens));
        self.last_prefix = p;
        self.metrics
            .num_preemptions
            .inc_by(stats.num_preemptions.saturating_sub(self.last_preemptions));
        self.last_preemptions = stats.num_preemptions;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::executor::ExecutorError;
    use proto::worker::{LoadModelResponse, RequestOutput, StepRequest, StepResult};
    use scheduler::{KvCacheConfig, SchedulerConfig};

    /// Samples token 7 for every scheduled request; counts its steps. Like
    /// a worker that cannot run one request, it fails (alone) every request
    /// whose prompt starts with [`REFUSED`].
    struct FakeExecutor {
        info: LoadModelResponse,
        steps: Arc<AtomicUsize>,
        refused: Vec<String>,
    }

    const REFUSED: u32 = 66;

    impl Executor for FakeExecutor {
        fn execute(
            &mut self,
            step: StepRequest,
            _bitmasks: Option<BitmaskJob<'_>>,
        ) -> Result<StepResult, ExecutorError> {
            self.steps.fetch_add(1, Ordering::SeqCst);
            for new in &step.new_requests {
                if new.prompt_token_ids.first() == Some(&REFUSED) {
                    self.refused.push(new.req_id.clone());
                }
            }
            let (bad, good): (Vec<_>, Vec<_>) = step
                .scheduled
                .iter()
                .partition(|s| self.refused.contains(&s.req_id));
            Ok(StepResult {
                step_id: step.step_id,
                outputs: good
                    .iter()
                    .map(|s| RequestOutput {
                        req_id: s.req_id.clone(),
                        sampled_token_ids: vec![7],
                        logprobs: Vec::new(),
                    })
                    .collect(),
                failed: bad
                    .iter()
                    .map(|s| FailedRequest {
                        req_id: s.req_id.clone(),
                        reason: "refused by the fake worker".into(),
                    })
                    .collect(),
                timings: None,
            })
        }
        fn overlaps_bitmasks(&self) -> bool {
            false
        }
        fn num_kv_blocks(&self) -> usize {
            64
        }
        fn model_info(&self) -> &LoadModelResponse {
            &self.info
        }
        fn check_health(&mut self) -> Result<(), ExecutorError> {
            Ok(())
        }
        fn shutdown(&mut self) {}
    }

    fn start_core(max_in_flight: usize) -> (EngineCoreHandle, Arc<AtomicUsize>) {
        let scheduler = Scheduler::new(
            SchedulerConfig {
                max_num_seqs: 4,
                max_num_batched_tokens: 64,
                max_model_len: 64,
                ..SchedulerConfig::default()
            },
            KvCacheConfig {
                num_blocks: 64,
                block_size: 4,
                enable_prefix_caching: false,
            },
        )
        .unwrap();
        let steps = Arc::new(AtomicUsize::new(0));
        let executor = FakeExecutor {
            info: LoadModelResponse {
                vocab_size: 100,
                max_position_embeddings: 64,
                ..LoadModelResponse::default()
            },
            steps: steps.clone(),
            refused: Vec::new(),
        };
        let metrics = EngineMetrics::register(&prometheus::Registry::new(), "m").unwrap();
        let handle =
            spawn_engine_core(scheduler, Box::new(executor), metrics, max_in_flight).unwrap();
        (handle, steps)
    }

    fn request(id: &str, prompt: Vec<u32>) -> CoreRequest {
        CoreRequest {
            id: id.into(),
            prompt_token_ids: prompt,
            sampling: SamplingParams {
                temperature: 0.0,
                ..SamplingParams::default()
            },
            stop: StopParams {
                max_tokens: 3,
                ..StopParams::default()
            },
            priority: 0,
            constraint: None,
        }
    }

    async fn finish(mut s: RequestStream) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(e) = s.next().await {
            match e {
                CoreEvent::Tokens { new_token_ids, .. } => out.extend(new_token_ids),
                CoreEvent::Error(e) => panic!("{e}"),
            }
        }
        out
    }

    #[tokio::test]
    async fn ids_outside_the_model_vocabulary_fail_that_request_only() {
        let (engine, steps) = start_core(16);
        for prompt in [vec![100], vec![1, 2, 99, 100], vec![u32::MAX]] {
            match engine.add(request("bad", prompt.clone())) {
                Err(CoreError::Rejected(m)) => assert!(m.contains("vocabulary (100)"), "{m}"),
                Err(e) => panic!("{prompt:?}: {e}"),
                Ok(_) => panic!("{prompt:?} was admitted"),
            }
        }
        // Nothing reached a step, nothing is held, and the engine serves on.
        assert_eq!(steps.load(Ordering::SeqCst), 0);
        assert_eq!(engine.num_in_flight(), 0);
        let good = engine.add(request("good", vec![1, 2, 99])).unwrap();
        assert_eq!(finish(good).await, vec![7, 7, 7]);
        engine.health().unwrap();
        engine.shutdown();
    }

    #[tokio::test]
    async fn a_request_the_worker_fails_ends_alone_and_the_engine_serves_on() {
        let (engine, steps) = start_core(16);
        let a = engine.add(request("a", vec![1, 2])).unwrap();
        let mut bad = engine.add(request("bad", vec![REFUSED, 3])).unwrap();
        let b = engine.add(request("b", vec![4])).unwrap();
        match bad.next().await {
            Some(CoreEvent::Error(CoreError::Failed(m))) => {
                assert!(m.contains("fake worker"), "{m}")
            }
            other => panic!("expected the request to fail, got {other:?}"),
        }
        assert!(bad.next().await.is_none(), "nothing follows the error");
        drop(bad);
        assert_eq!(finish(a).await, vec![7, 7, 7]);
        assert_eq!(finish(b).await, vec![7, 7, 7]);
        engine.health().unwrap();
        assert_eq!(engine.num_in_flight(), 0);
        let later = engine.add(request("later", vec![5])).unwrap();
        assert_eq!(finish(later).await, vec![7, 7, 7]);
        assert!(steps.load(Ordering::SeqCst) >= 3);
        engine.shutdown();
    }

    #[tokio::test]
    async fn sampling_parameters_the_worker_would_refuse_fail_that_request_only() {
        let (engine, _) = start_core(16);
        let mut r = request("nan", vec![1]);
        r.sampling.temperature = f32::NAN;
        assert!(matches!(engine.add(r), Err(CoreError::Rejected(_))));
        let mut r = request("neg", vec![1]);
        r.sampling.temperature = -1.0;
        assert!(matches!(engine.add(r), Err(CoreError::Rejected(_))));
        assert_eq!(
            finish(engine.add(request("ok", vec![1])).unwrap())
                .await
                .len(),
            3
        );
        engine.shutdown();
    }

    #[tokio::test]
    async fn a_full_queue_refuses_until_a_sequence_ends() {
        let (engine, _) = start_core(2);
        let a = engine.add(request("a", vec![1])).unwrap();
        let b = engine.add(request("b", vec![2])).unwrap();
        assert_eq!(engine.num_in_flight(), 2);
        match engine.add(request("c", vec![3])) {
            Err(CoreError::Overloaded(m)) => assert!(m.contains("2 sequences"), "{m}"),
            other => panic!("expected Overloaded, got {:?}", other.err()),
        }
        // A finished (or dropped) stream frees its place.
        finish(a).await;
        drop(b);
        assert_eq!(engine.num_in_flight(), 0);
        assert_eq!(
            finish(engine.add(request("c", vec![3])).unwrap())
                .await
                .len(),
            3
        );
        engine.shutdown();
    }
}
