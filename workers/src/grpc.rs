//! The `Worker` gRPC service over one [`ModelRunner`].
//!
//! The runner is blocking (model loads and forward passes), so every call
//! that touches it runs on tokio's blocking pool behind a mutex; the
//! runtime threads stay free, and `Health` answers without the mutex, even
//! while a long step or load runs. `Shutdown` replies, then signals the
//! server to stop (the `worker` binary exits when it does).

use std::sync::{Arc, Mutex};

use proto::worker::worker_server::Worker;
use proto::worker::{
    HealthRequest, HealthResponse, InitKvCacheRequest, InitKvCacheResponse, InitRequest,
    InitResponse, LoadModelRequest, LoadModelResponse, ProfileMemoryRequest, ProfileMemoryResponse,
    ShutdownRequest, ShutdownResponse, StepRequest, StepResult,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::runner::{ModelRunner, WorkerError};

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

/// The service: a runner once `Init` made one.
pub struct WorkerService {
    runner: Arc<Mutex<Option<ModelRunner>>>,
    shutdown: watch::Sender<bool>,
}

impl WorkerService {
    /// A service with no runner yet, and the receiver that turns true when
    /// a `Shutdown` call arrives.
    pub fn new() -> (Self, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        (
            Self {
                runner: Arc::new(Mutex::new(None)),
                shutdown: tx,
            },
            rx,
        )
    }

    /// Runs `f` on the runner on the blocking pool.
    async fn with_runner<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut ModelRunner) -> Result<T, WorkerError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let runner = Arc::clone(&self.runner);
        tokio::task::spawn_blocking(move || {
            let mut guard = runner
                .lock()
                .map_err(|_| Status::internal("the runner panicked in an earlier call"))?;
            let runner = guard
                .as_mut()
                .ok_or_else(|| Status::failed_precondition("call Init first"))?;
            f(runner).map(Response::new).map_err(|e| to_status(&e))
        })
        .await
        .map_err(|e| Status::internal(format!("worker task failed: {e}")))?
    }
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let req = request.into_inner();
        let runner = Arc::clone(&self.runner);
        tokio::task::spawn_blocking(move || {
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
            let mut guard = runner
                .lock()
                .map_err(|_| Status::internal("the runner panicked in an earlier call"))?;
            *guard = Some(new);
            Ok(Response::new(InitResponse {}))
        })
        .await
        .map_err(|e| Status::internal(format!("worker task failed: {e}")))?
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
        self.with_runner(move |r| r.execute_step(&req)).await
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
