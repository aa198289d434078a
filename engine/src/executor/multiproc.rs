//! Worker processes driven over gRPC (vLLM's `MultiprocExecutor`): one
//! `worker` process per tensor-parallel rank, each told its rank, loaded,
//! profiled (the KV cache gets the minimum block count over ranks) and
//! sent every step concurrently; rank 0's result is the step's result.
//! With more than one rank the workers get a `tcp://127.0.0.1:PORT`
//! communicator id and join the group there during `Init`
//! (`workers::parallel`): the CPU communicator, or NCCL bootstrapped over
//! it (`--tp-communicator`); a rank that dies fails its peers' collectives
//! and, through the exit poll below, the whole group.
//!
//! The executor owns its own single-threaded tokio runtime and blocks on
//! it, so the engine core's thread needs no async and drives the sockets
//! itself: no hop to a runtime thread and back per step (0.1 to 0.6 ms of
//! a SmolLM2 step's transport time, scripts/step_breakdown.py). While any call is in flight it
//! polls the children with `try_wait`, so a worker that exits fails the
//! call within ~100 ms even if its socket lingers. The first failure
//! leaves the executor failed: every later call returns
//! [`ExecutorError::WorkerDied`] at once. Workers get `--parent-pid`, so
//! they exit if this process dies; `Drop` kills any still running.
//!
//! Every step has a deadline ([`StepDeadline`]): a worker that stops
//! answering (SIGSTOP, a stuck kernel, an NCCL wait) fails the step when it
//! passes, and the group is killed (SIGKILL ends a stopped process too), so
//! the engine reports unhealthy instead of blocking for ever.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use proto::worker::worker_client::WorkerClient;
use proto::worker::{
    HealthRequest, InitKvCacheRequest, InitRequest, LoadModelResponse, ShutdownRequest,
    StepRequest, StepResult,
};
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};
use tonic::{Response, Status};

use super::{
    clamp_blocks, load_request, log_phase, profile_request, BitmaskJob, Executor, ExecutorConfig,
    ExecutorError,
};

/// Environment variable naming the `worker` binary.
pub const WORKER_BIN_ENV: &str = "ENGINE_WORKER_BIN";

/// How long a worker may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a health check may take.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often in-flight calls look for exited children.
const EXIT_POLL: Duration = Duration::from_millis(100);
/// Largest gRPC message either way (a step of many new prompts).
const MAX_MESSAGE: usize = 256 << 20;

struct WorkerProcess {
    rank: usize,
    child: Child,
    client: Option<WorkerClient<Channel>>,
}

/// One `worker` process per tensor-parallel rank.
pub struct MultiprocExecutor {
    runtime: Runtime,
    workers: Vec<WorkerProcess>,
    info: LoadModelResponse,
    num_blocks: usize,
    deadline: StepDeadline,
    /// [`ExecutorConfig::overlaps_bitmasks`].
    overlap_bitmasks: bool,
    /// The first fatal failure: `(rank, reason)`.
    failed: Option<(usize, String)>,
    shut_down: bool,
}

/// Where the `worker` binary is: `configured`, else `$ENGINE_WORKER_BIN`,
/// else next to the current executable (or one folder up, where test
/// binaries in `target/<profile>/deps` find `target/<profile>/worker`).
pub fn find_worker_binary(configured: Option<&Path>) -> Result<PathBuf, ExecutorError> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = configured {
        candidates.push(p.to_path_buf());
    } else if let Some(p) = std::env::var_os(WORKER_BIN_ENV) {
        candidates.push(PathBuf::from(p));
    } else if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("worker"));
            if let Some(up) = dir.parent() {
                candidates.push(up.join("worker"));
            }
        }
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        tried.push(c.display().to_string());
    }
    Err(ExecutorError::WorkerBinaryNotFound {
        tried: tried.join(", "),
    })
}

/// Reads the child's `LISTENING <addr>` line on a thread (which then keeps
/// draining its stdout to our stderr) and returns the address.
fn wait_for_address(rank: usize, child: &mut Child) -> Result<String, ExecutorError> {
    let stdout = child.stdout.take().ok_or_else(|| ExecutorError::Startup {
        rank,
        reason: "no stdout pipe".into(),
    })?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("worker-{rank}-stdout"))
        .spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("LISTENING ") {
                    Some(addr) if !sent => {
                        sent = true;
                        let _ = tx.send(addr.trim().to_string());
                    }
                    _ => eprintln!("[worker {rank}] {line}"),
                }
            }
        })
        .map_err(|e| ExecutorError::Startup {
            rank,
            reason: format!("stdout reader: {e}"),
        })?;
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match rx.recv_timeout(EXIT_POLL) {
            Ok(addr) => return Ok(addr),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(ExecutorError::Startup {
                    rank,
                    reason: "it closed stdout without printing its address".into(),
                })
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ExecutorError::Startup {
                rank,
                reason: format!("it exited ({status}) before listening"),
            });
        }
        if Instant::now() > deadline {
            return Err(ExecutorError::Startup {
                rank,
                reason: format!("no address within {STARTUP_TIMEOUT:?}"),
            });
        }
    }
}

/// A rendezvous address for the ranks' CPU communicator: a loopback port
/// free right now, where rank 0 will listen (as vLLM's `get_open_port`;
/// another process taking it in between fails the startup, it never
/// hangs).
fn communicator_id() -> Result<String, ExecutorError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| ExecutorError::Config(format!("no free port for the communicator: {e}")))?
        .port();
    Ok(format!("tcp://127.0.0.1:{port}"))
}

impl MultiprocExecutor {
    /// Spawns `tensor_parallel_size` workers and brings them up: init,
    /// load, profile memory, KV cache of the minimum block count.
    pub fn start(config: &ExecutorConfig) -> Result<Self, ExecutorError> {
        let binary = find_worker_binary(config.worker_binary.as_deref())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ExecutorError::Config(format!("tokio runtime: {e}")))?;
        let mut exec = Self {
            runtime,
            workers: Vec::with_capacity(config.tensor_parallel_size),
            info: LoadModelResponse::default(),
            num_blocks: 0,
            deadline: StepDeadline::new(config.step_timeout),
            overlap_bitmasks: config.overlaps_bitmasks(),
            failed: None,
            shut_down: false,
        };
        // From here on, an early return drops `exec`, which kills the
        // children spawned so far.
        for rank in 0..config.tensor_parallel_size {
            let child = Command::new(&binary)
                .args(["--listen", "127.0.0.1:0", "--parent-pid"])
                .arg(std::process::id().to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| ExecutorError::Spawn {
                    rank,
                    path: binary.clone(),
                    source,
                })?;
            exec.workers.push(WorkerProcess {
                rank,
                child,
                client: None,
            });
        }
        for w in &mut exec.workers {
            let addr = wait_for_address(w.rank, &mut w.child)?;
            let rank = w.rank;
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| ExecutorError::Startup {
                    rank,
                    reason: format!("bad address {addr}: {e}"),
                })?
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(10));
            let channel =
                exec.runtime
                    .block_on(endpoint.connect())
                    .map_err(|e| ExecutorError::Startup {
                        rank,
                        reason: format!("connecting to {addr}: {e}"),
                    })?;
            w.client = Some(
                WorkerClient::new(channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            );
        }

        let world_size = config.tensor_parallel_size as u32;
        let device = config.device.clone();
        let communicator = config.tp_communicator.to_string();
        let communicator_id = if world_size > 1 {
            communicator_id()?
        } else {
            String::new()
        };
        let setup = |call: &'static str| {
            move |(rank, message)| ExecutorError::Setup {
                rank,
                call,
                message,
            }
        };
        exec.broadcast(None, move |rank, mut c| {
            let device = if world_size > 1 && device == "cuda" {
                format!("cuda:{rank}")
            } else {
                device.clone()
            };
            let communicator_id = communicator_id.clone();
            let communicator = communicator.clone();
            async move {
                c.init(InitRequest {
                    device,
                    rank: rank as u32,
                    world_size,
                    communicator_id,
                    communicator,
                })
                .await
            }
        })
        .map_err(setup("Init"))?;
        let load_started = std::time::Instant::now();
        let load = load_request(config);
        let infos = exec
            .broadcast(None, move |_, mut c| {
                let load = load.clone();
                async move { c.load_model(load).await }
            })
            .map_err(setup("LoadModel"))?;
        exec.info = infos.into_iter().next().unwrap_or_default();
        log_phase("model loaded", load_started);
        let profile_started = std::time::Instant::now();
        let profile = profile_request(config);
        let profiles = exec
            .broadcast(None, move |_, mut c| async move {
                c.profile_memory(profile).await
            })
            .map_err(setup("ProfileMemory"))?;
        let num_blocks = clamp_blocks(profiles.iter().map(|p| p.num_blocks).min().unwrap_or(0))?;
        let kv = InitKvCacheRequest {
            num_blocks,
            block_size: config.block_size as u32,
        };
        exec.broadcast(
            None,
            move |_, mut c| async move { c.init_kv_cache(kv).await },
        )
        .map_err(setup("InitKvCache"))?;
        log_phase("KV cache profiled and allocated", profile_started);
        exec.num_blocks = num_blocks as usize;
        Ok(exec)
    }

    /// Process ids of the workers, rank order (for tests and diagnostics).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.child.id()).collect()
    }

    /// Calls every rank concurrently; returns the responses in rank order,
    /// or the first `(rank, reason)` failure: an error status, a timeout,
    /// or a process that exited while waiting.
    fn broadcast<T, F, Fut>(
        &mut self,
        timeout: Option<Duration>,
        call: F,
    ) -> Result<Vec<T>, (usize, String)>
    where
        T: Send + 'static,
        F: Fn(usize, WorkerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>> + Send + 'static,
    {
        let mut handles = Vec::with_capacity(self.workers.len());
        for w in &self.workers {
            let Some(client) = w.client.clone() else {
                return Err((w.rank, "not connected".into()));
            };
            let fut = call(w.rank, client);
            let rank = w.rank;
            handles.push(self.runtime.spawn(async move {
                let res = match timeout {
                    Some(t) => match tokio::time::timeout(t, fut).await {
                        Ok(r) => r,
                        Err(_) => return Err((rank, format!("no answer within {t:?}"))),
                    },
                    None => fut.await,
                };
                res.map(Response::into_inner)
                    .map_err(|s| (rank, format!("{:?}: {}", s.code(), s.message())))
            }));
        }
        let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
        let workers = &mut self.workers;
        let result = self.runtime.block_on(async {
            let all = async {
                let mut out = Vec::with_capacity(handles.len());
                for (rank, h) in handles.into_iter().enumerate() {
                    match h.await {
                        Ok(Ok(v)) => out.push(v),
                        Ok(Err(e)) => return Err(e),
                        Err(e) => return Err((rank, format!("call task failed: {e}"))),
                    }
                }
                Ok(out)
            };
            tokio::pin!(all);
            let mut tick = tokio::time::interval(EXIT_POLL);
            loop {
                tokio::select! {
                    res = &mut all => return res,
                    _ = tick.tick() => {
                        for w in workers.iter_mut() {
                            if let Ok(Some(status)) = w.child.try_wait() {
                                return Err((w.rank, format!("process exited ({status})")));
                            }
                        }
                    }
                }
            }
        });
        if result.is_err() {
            for a in aborts {
                a.abort();
            }
        }
        result
    }

    fn check_usable(&self) -> Result<(), ExecutorError> {
        if let Some((rank, reason)) = &self.failed {
            return Err(ExecutorError::WorkerDied {
                rank: *rank,
                reason: reason.clone(),
            });
        }
        if self.shut_down {
            return Err(ExecutorError::ShutDown);
        }
        Ok(())
    }

    fn fail(&mut self, (rank, reason): (usize, String)) -> ExecutorError {
        tracing::error!(rank, %reason, "worker failed; the executor is now unusable");
        self.failed = Some((rank, reason.clone()));
        // A group missing a rank can never run another step: stop the
        // others now rather than leave them holding memory (and, on a
        // GPU, their device) until shutdown.
        self.kill_all();
        ExecutorError::WorkerDied { rank, reason }
    }

    fn kill_all(&mut self) {
        for w in &mut self.workers {
            if let Ok(None) = w.child.try_wait() {
                let _ = w.child.kill();
            }
            let _ = w.child.wait();
        }
    }
}

impl Executor for MultiprocExecutor {
    fn execute(
        &mut self,
        mut step: StepRequest,
        bitmasks: Option<BitmaskJob<'_>>,
    ) -> Result<StepResult, ExecutorError> {
        self.check_usable()?;
        let tokens: u64 = step.scheduled.iter().map(|s| u64::from(s.num_tokens)).sum();
        let deadline = self.deadline.for_step(tokens);
        let started = Instant::now();
        step.bitmasks_follow = bitmasks.is_some();
        let overlap = self.overlap_bitmasks;
        let res = std::thread::scope(|scope| {
            // The job on a second thread while the step runs (or first);
            // rank 0, the one that samples, gets its result in a second
            // call.
            let computed = bitmasks.map(|job| {
                let (sender, receiver) = tokio::sync::oneshot::channel();
                if overlap {
                    scope.spawn(move || {
                        let _ = sender.send(job());
                    });
                } else {
                    let _ = sender.send(job());
                }
                receiver
            });
            let computed = std::sync::Mutex::new(computed);
            self.broadcast(Some(deadline), move |rank, mut c| {
                let step = step.clone();
                let computed = match rank {
                    0 => computed.lock().ok().and_then(|mut c| c.take()),
                    _ => None,
                };
                async move {
                    let Some(computed) = computed else {
                        return c.execute_step(step).await;
                    };
                    let mut submitter = c.clone();
                    let submit = async move {
                        let masks = computed.await.map_err(|_| {
                            Status::internal("the bitmask job ended without a result")
                        })?;
                        submitter.submit_bitmasks(masks).await
                    };
                    let (result, submitted) = tokio::join!(c.execute_step(step), submit);
                    submitted?;
                    result
                }
            })
        });
        match res {
            Ok(results) => {
                self.deadline.observe(tokens, started.elapsed());
                Ok(results.into_iter().next().unwrap_or_default())
            }
            Err((rank, reason)) => Err(self.fail((
                rank,
                format!("{reason} (step deadline {deadline:?}: --step-timeout plus the measured time per token)"),
            ))),
        }
    }

    fn overlaps_bitmasks(&self) -> bool {
        self.overlap_bitmasks
    }

    fn num_kv_blocks(&self) -> usize {
        self.num_blocks
    }

    fn model_info(&self) -> &LoadModelResponse {
        &self.info
    }

    fn check_health(&mut self) -> Result<(), ExecutorError> {
        self.check_usable()?;
        match self.broadcast(Some(HEALTH_TIMEOUT), |_, mut c| async move {
            c.health(HealthRequest {}).await
        }) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        if self.failed.is_none() {
            let _ = self.broadcast(Some(Duration::from_secs(2)), |_, mut c| async move {
                c.shutdown(ShutdownRequest {}).await
            });
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline
            && self
                .workers
                .iter_mut()
                .any(|w| matches!(w.child.try_wait(), Ok(None)))
        {
            // The timer must be made inside the runtime's context.
            self.runtime
                .block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
        }
        self.kill_all();
    }
}

/// The deadline of each step: the configured base plus
/// [`StepDeadline::HEADROOM`] times the measured seconds per token for
/// every token the step schedules, so it follows the model, the device and
/// the batch. The first step (warm-up: allocator, kernels, caches) is not
/// measured.
#[derive(Debug, Clone)]
pub struct StepDeadline {
    base: Duration,
    /// Moving average of seconds per scheduled token.
    secs_per_token: f64,
    steps_seen: u64,
}

impl StepDeadline {
    /// How many times the usual time per token a step may take.
    pub const HEADROOM: f64 = 10.0;
    /// Longest deadline, whatever the measurements say.
    pub const MAX: Duration = Duration::from_secs(24 * 3600);

    /// A deadline of `base` until steps have been measured.
    pub fn new(base: Duration) -> Self {
        Self {
            base,
            secs_per_token: 0.0,
            steps_seen: 0,
        }
    }

    /// The deadline of a step scheduling `tokens` tokens.
    pub fn for_step(&self, tokens: u64) -> Duration {
        let extra = Self::HEADROOM * self.secs_per_token * tokens as f64;
        Duration::try_from_secs_f64(extra)
            .map_or(Self::MAX, |e| self.base.saturating_add(e))
            .min(Self::MAX)
    }

    /// Records that a step of `tokens` tokens took `took`.
    pub fn observe(&mut self, tokens: u64, took: Duration) {
        self.steps_seen += 1;
        if self.steps_seen == 1 || tokens == 0 {
            return;
        }
        let rate = took.as_secs_f64() / tokens as f64;
        self.secs_per_token = if self.steps_seen == 2 {
            rate
        } else {
            0.9 * self.secs_per_token + 0.1 * rate
        };
    }
}

impl Drop for MultiprocExecutor {
    fn drop(&mut self) {
        self.kill_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_deadline_grows_with_tokens_and_the_measured_rate() {
        let mut d = StepDeadline::new(Duration::from_secs(3));
        assert_eq!(d.for_step(1000), Duration::from_secs(3));
        // The first (warm-up) step is not measured.
        d.observe(10, Duration::from_secs(100));
        assert_eq!(d.for_step(1000), Duration::from_secs(3));
        d.observe(100, Duration::from_secs(1)); // 10 ms a token
        assert_eq!(d.for_step(0), Duration::from_secs(3));
        let one = d.for_step(1);
        assert!((one.as_secs_f64() - 3.1).abs() < 1e-9, "{one:?}");
        let many = d.for_step(1000);
        assert!((many.as_secs_f64() - 103.0).abs() < 1e-6, "{many:?}");
        // Absurd measurements cannot overflow it.
        d.observe(1, Duration::MAX);
        assert_eq!(d.for_step(u64::MAX), StepDeadline::MAX);
    }
}
