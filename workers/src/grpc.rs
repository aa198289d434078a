//! The `Worker` gRPC service over one [`ModelRunner`].
//!
//! The runner is blocking (model loads and forward passes), so every call
//! that touches it runs on one dedicated thread, the model thread, one call
//! at a time; the runtime threads stay free, and `Health` answers without
//! it, even while a long step or load runs. `SubmitBitmasks` does not
//! queue for the model thread either: it leaves the bitmasks in a mailbox
//! the running step waits on after its forward pass. `Shutdown` replies,
//! then signals the server to stop (the `worker` binary exits when it
//! does).
//!
//! Why one thread and not tokio's blocking pool: torch's CPU kernels run on
//! an OpenMP thread team that belongs to the thread calling into torch.
//! Steps landing on whichever pool thread was free built several teams,
//! whose threads spun against each other on the same cores: SmolLM2's
//! decode step took 30.7 ms in the server against 20 ms for the same
//! forward on one thread (`engine generate`), a fifth of the samples in
//! the scheduler (measured with perf, 2 cores).

use proto::worker::worker_server::Worker;
use proto::worker::{
    HealthRequest, HealthResponse, InitKvCacheRequest, InitKvCacheResponse, InitRequest,
    InitResponse, LoadModelRequest, LoadModelResponse, ProfileMemoryRequest, ProfileMemoryResponse,
    ShutdownRequest, ShutdownResponse, StepBitmasks, StepRequest, StepResult,
    SubmitBitmasksResponse,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::runner::{BitmaskMailbox, ModelRunner, WorkerError};

/// Maps a runner error to a gRPC status: caller mistakes are
/// `INVALID_ARGUMENT`, calls out of order `FAILED_PRECONDITION`, the rest
/// `INTERNAL`.
pub fn to_status(e: &WorkerError) -> Status {
    if e.is_invalid_argument() {
        Status::invalid_argument(e.to_string())
    } else if matches!(e, WorkerError::NotReady(_)) {
        Status::failed_precondition(e.to_string())
    } else {
        Status::internal(e.to_string())
    }
}

/// On CPU, ranks of one group share the host's cores: each rank's torch
/// gets `cores / world_size` threads (at least one), since every rank
/// spinning on all cores makes them fight over them, and a collective
/// waits for the slowest rank. Process-wide, so it is done here, in the
/// worker process, not in the runner (tests run several ranks in one
/// process).
fn share_cpu_threads(req: &InitRequest) {
    if req.world_size > 1 && req.device == "cpu" {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let per_rank = (cores / req.world_size as usize).max(1);
        tch::set_num_threads(per_rank as i32);
    }
}

/// A call for the model thread: it gets the runner slot (empty until
/// `Init`).
type Job = Box<dyn FnOnce(&mut Option<ModelRunner>) + Send>;

/// What a call gets when the model thread has ended: a call panicked on it.
fn model_thread_gone() -> Status {
    Status::internal("the model thread is gone: a call panicked on it")
}

/// The service: the model thread, which holds the runner once `Init` made
/// one.
pub struct WorkerService {
    /// Calls waiting for the model thread. The engine sends one call at a
    /// time, so the bound is never reached by a well-behaved caller; a
    /// caller that sends more waits for room.
    jobs: tokio::sync::mpsc::Sender<Job>,
    /// The bitmasks of the step in flight, for the model thread.
    bitmasks: Arc<BitmaskMailbox>,
    shutdown: watch::Sender<bool>,
}

/// Calls that may wait for the model thread at once.
const MAX_QUEUED_CALLS: usize = 8;

impl WorkerService {
    /// A service with no runner yet, its model thread started, and the
    /// receiver that turns true when a `Shutdown` call arrives.
    pub fn new() -> std::io::Result<(Self, watch::Receiver<bool>)> {
        let (jobs, mut queue) = tokio::sync::mpsc::channel::<Job>(MAX_QUEUED_CALLS);
        std::thread::Builder::new()
            .name("model".into())
            .spawn(move || {
                let mut runner = None;
                while let Some(job) = queue.blocking_recv() {
                    job(&mut runner);
                }
            })?;
        let (tx, rx) = watch::channel(false);
        Ok((
            Self {
                jobs,
                bitmasks: Arc::default(),
                shutdown: tx,
            },
            rx,
        ))
    }

    /// Runs `f` on the model thread with the runner slot and waits for it.
    async fn on_model_thread<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Option<ModelRunner>) -> Result<T, Status> + Send + 'static,
    ) -> Result<T, Status> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |runner: &mut Option<ModelRunner>| {
                // The caller may have gone (its RPC was cancelled).
                let _ = reply.send(f(runner));
            }))
            .await
            .map_err(|_| model_thread_gone())?;
        answer.await.map_err(|_| model_thread_gone())?
    }

    /// Runs `f` on the runner, on the model thread.
    async fn with_runner<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ModelRunner) -> Result<T, WorkerError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        self.on_model_thread(move |runner| {
            let runner = runner
                .as_mut()
                .ok_or_else(|| Status::failed_precondition("call Init first"))?;
            f(runner).map(Response::new).map_err(|e| to_status(&e))
        })
        .await
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let req = request.into_inner();
        self.on_model_thread(move |runner| {
            share_cpu_threads(&req);
            let new = ModelRunner::new(&req).map_err(|e| to_status(&e))?;
            // One line on the shared stderr: what `--tp-communicator auto`
            // resolved to, for whoever reads the server's log.
            eprintln!(
                "worker: rank {} of {} on {}, communicator {}",
                req.rank,
                req.world_size,
                req.device,
                new.communicator()
            );
            *runner = Some(new);
            Ok(Response::new(InitResponse {}))
        })
        .await
    }

    async fn load_model(
        &self,
        request: Request<LoadModelRequest>,
    ) -> Result<Response<LoadModelResponse>, Status> {
        let req = request.into_inner();
        self.with_runner(move |r| r.load_model(&req)).await
    }

    async fn profile_memory(
        &self,
        request: Request<ProfileMemoryRequest>,
    ) -> Result<Response<ProfileMemoryResponse>, Status> {
        let req = request.into_inner();
        self.with_runner(move |r| r.profile_memory(&req)).await
    }

    async fn init_kv_cache(
        &self,
        request: Request<InitKvCacheRequest>,
    ) -> Result<Response<InitKvCacheResponse>, Status> {
        let req = request.into_inner();
        self.with_runner(move |r| r.init_kv_cache(&req)).await
    }

    async fn execute_step(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResult>, Status> {
        let req = request.into_inner();
        let bitmasks = Arc::clone(&self.bitmasks);
        self.with_runner(move |r| r.execute_step_with(&req, &mut &*bitmasks))
            .await
    }

    async fn submit_bitmasks(
        &self,
        request: Request<StepBitmasks>,
    ) -> Result<Response<SubmitBitmasksResponse>, Status> {
        self.bitmasks.put(request.into_inner());
        Ok(Response::new(SubmitBitmasksResponse {}))
    }

    async fn health(
        &self,
        _request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {}))
    }

    async fn shutdown(
        &self,
        _request: Request<ShutdownRequest>,
    ) -> Result<Response<ShutdownResponse>, Status> {
        // Receivers gone means the server is already stopping.
        let _ = self.shutdown.send(true);
        Ok(Response::new(ShutdownResponse {}))
    }
}
