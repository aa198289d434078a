//! The executor: the one module that owns the workers. It starts them
//! (in this process, or one `worker` process per tensor-parallel rank),
//! brings them up (init, load, profile memory, KV cache), sends each
//! scheduler step to every rank and returns rank 0's sampled tokens.
//!
//! Follows vLLM's `UniProcExecutor` / `MultiprocExecutor` split. The API is
//! blocking: the engine core calls it from its own thread. A worker that
//! dies or fails a step leaves the executor failed: every later call
//! returns [`ExecutorError::WorkerDied`] at once, so the API can answer 503
//! instead of hanging.

mod multiproc;
mod uniproc;

use std::path::PathBuf;
use std::time::Duration;

pub use multiproc::MultiprocExecutor;
use proto::worker::{LoadModelResponse, StepBitmasks, StepRequest, StepResult};
use scheduler::AttentionWindow;
pub use uniproc::UniprocExecutor;
use workers::attention::BackendChoice;
use workers::parallel::CommunicatorKind;
use workers::runner::WorkerError;

/// Computes the allowed-token bitmasks of a step's structured outputs.
/// The executor runs it on another thread while the workers run the
/// step's forward pass (or first, when it does not overlap them: see
/// [`ExecutorConfig::overlap_bitmasks`]), and hands its result to the
/// sampling rank.
pub type BitmaskJob<'a> = Box<dyn FnOnce() -> StepBitmasks + Send + 'a>;

/// Runs scheduler steps on the workers.
pub trait Executor: Send {
    /// Sends `step` to every rank; returns rank 0's result. With
    /// `bitmasks`, the step's sampling waits for what that job computes
    /// (`StepRequest.bitmasks_follow`), which overlaps the forward pass.
    fn execute(
        &mut self,
        step: StepRequest,
        bitmasks: Option<BitmaskJob<'_>>,
    ) -> Result<StepResult, ExecutorError>;
    /// Whether [`Executor::execute`] runs a bitmask job beside the step
    /// (else first, on the caller's thread).
    fn overlaps_bitmasks(&self) -> bool;
    /// KV blocks every rank holds (the minimum over ranks).
    fn num_kv_blocks(&self) -> usize;
    /// Vocabulary size and maximum positions of the loaded model.
    fn model_info(&self) -> &LoadModelResponse;
    /// Errors if a worker is gone or does not answer in time.
    fn check_health(&mut self) -> Result<(), ExecutorError>;
    /// Stops the workers; later calls error.
    fn shutdown(&mut self);
}

/// Where the workers run (vLLM's `--distributed-executor-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecutorBackend {
    /// `mp`: one `worker` process per rank, driven over gRPC.
    #[default]
    Multiproc,
    /// `uni`: one model runner inside this process (tensor parallel size 1).
    Uniproc,
}

impl std::str::FromStr for ExecutorBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mp" => Ok(Self::Multiproc),
            "uni" => Ok(Self::Uniproc),
            other => Err(format!("unknown executor backend `{other}` (mp, uni)")),
        }
    }
}

/// Everything needed to bring the workers up.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// `smollm2`, an HF folder or a `.gguf` file.
    pub model: String,
    /// auto, safetensors, gguf or dummy.
    pub load_format: String,
    /// auto, float32, bfloat16 or float16.
    pub dtype: String,
    /// Seed of dummy weights.
    pub seed: u64,
    /// cpu, cuda or cuda:N (rank r of a multi-GPU group uses cuda:r).
    pub device: String,
    pub tensor_parallel_size: usize,
    /// The ranks' communicator: auto (NCCL for a CUDA group of several in
    /// a build with the `nccl` feature, else TCP; none for one rank), tcp,
    /// or nccl (even for one rank).
    pub tp_communicator: CommunicatorKind,
    /// The workers' attention backend (`--attention-backend`).
    pub attention_backend: BackendChoice,
    /// `--hf-overrides` as given (a JSON object, or empty).
    pub hf_overrides: String,
    /// `--enable-expert-parallel`.
    pub enable_expert_parallel: bool,
    /// `--disable-hybrid-kv-cache-manager`.
    pub disable_hybrid_kv_cache: bool,
    /// `--quantization`: how the workers hold linear weights.
    pub quantization: String,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Fraction of GPU memory the workers may use.
    pub gpu_memory_utilization: f32,
    /// KV cache bytes per worker on CPU.
    pub cpu_kv_cache_bytes: u64,
    /// Largest step, to size activation memory.
    pub max_num_batched_tokens: usize,
    /// The `worker` binary; default: `$ENGINE_WORKER_BIN`, else `worker`
    /// next to the current executable.
    pub worker_binary: Option<PathBuf>,
    /// `mp` or `uni`; `ENGINE_EXECUTOR=uniproc` (or `uni`) forces `uni`.
    pub distributed_executor_backend: ExecutorBackend,
    /// Base deadline of one step (`--step-timeout`); the worker processes'
    /// executor adds a share per scheduled token from the time per token
    /// it measured, and declares the group dead past it. The in-process
    /// executor cannot interrupt its own thread and ignores it.
    pub step_timeout: Duration,
    /// Whether a step's bitmasks are computed on a second thread beside
    /// the forward pass (`None`: when the workers run on an accelerator).
    /// A CPU forward already keeps every core busy: there a second thread
    /// slowed it by as much as it hid (scripts/bench_structured.py, 2
    /// cores), so the bitmasks are computed first and sent with the step.
    pub overlap_bitmasks: Option<bool>,
}

impl ExecutorConfig {
    /// [`ExecutorConfig::overlap_bitmasks`], decided.
    pub fn overlaps_bitmasks(&self) -> bool {
        self.overlap_bitmasks
            .unwrap_or_else(|| !self.device.starts_with("cpu"))
    }
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            model: "smollm2".into(),
            load_format: "auto".into(),
            dtype: "auto".into(),
            seed: 0,
            device: "cpu".into(),
            tensor_parallel_size: 1,
            tp_communicator: CommunicatorKind::Auto,
            attention_backend: BackendChoice::Auto,
            hf_overrides: String::new(),
            enable_expert_parallel: false,
            disable_hybrid_kv_cache: false,
            quantization: String::new(),
            block_size: 16,
            gpu_memory_utilization: 0.9,
            cpu_kv_cache_bytes: 4 << 30,
            max_num_batched_tokens: 2048,
            worker_binary: None,
            distributed_executor_backend: ExecutorBackend::Multiproc,
            step_timeout: Duration::from_secs(60),
            overlap_bitmasks: None,
        }
    }
}

/// Why the executor could not start or run a step.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("invalid executor config: {0}")]
    Config(String),
    #[error("worker binary not found (looked at: {tried}); build it with `cargo build -p workers --bin worker` or set ENGINE_WORKER_BIN")]
    WorkerBinaryNotFound { tried: String },
    #[error("could not start worker {rank} ({path}): {source}")]
    Spawn {
        rank: usize,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("worker {rank} failed to start: {reason}")]
    Startup { rank: usize, reason: String },
    /// A worker refused a setup call (bad model path, out of memory...).
    #[error("worker {rank}: {call} failed: {message}")]
    Setup {
        rank: usize,
        call: &'static str,
        message: String,
    },
    /// A worker process exited, stopped answering or failed a step; the
    /// executor stays failed.
    #[error("worker {rank} died: {reason}")]
    WorkerDied { rank: usize, reason: String },
    /// The in-process runner failed.
    #[error(transparent)]
    Runner(#[from] WorkerError),
    #[error("the executor was shut down")]
    ShutDown,
}

/// Starts the executor the config asks for: worker processes (`mp`) by
/// default, the in-process runner for `uni` or `ENGINE_EXECUTOR=uniproc`.
pub fn start_executor(config: &ExecutorConfig) -> Result<Box<dyn Executor>, ExecutorError> {
    if config.block_size == 0 || config.tensor_parallel_size == 0 {
        return Err(ExecutorError::Config(
            "block_size and tensor_parallel_size must be positive".into(),
        ));
    }
    let forced_uni = std::env::var("ENGINE_EXECUTOR")
        .map(|v| v == "uniproc" || v == "uni")
        .unwrap_or(false);
    if forced_uni || config.distributed_executor_backend == ExecutorBackend::Uniproc {
        Ok(Box::new(UniprocExecutor::start(config)?))
    } else {
        Ok(Box::new(MultiprocExecutor::start(config)?))
    }
}

/// Logs one startup phase and its time (`engine: model loaded in 1.2 s`),
/// so a slow start shows where it spends its time.
fn log_phase(what: &str, started: std::time::Instant) {
    eprintln!("engine: {what} in {:.1} s", started.elapsed().as_secs_f64());
}

/// Wire-form requests every rank gets during bring-up.
fn load_request(config: &ExecutorConfig) -> proto::worker::LoadModelRequest {
    proto::worker::LoadModelRequest {
        model: config.model.clone(),
        load_format: config.load_format.clone(),
        dtype: config.dtype.clone(),
        seed: config.seed,
        attention_backend: config.attention_backend.as_str().into(),
        hf_overrides: config.hf_overrides.clone(),
        enable_expert_parallel: config.enable_expert_parallel,
        disable_hybrid_kv_cache: config.disable_hybrid_kv_cache,
        quantization: config.quantization.clone(),
    }
}

/// The KV cache groups' windows the workers reported at load, group 0
/// first: the scheduler keeps one block table per group.
pub fn kv_cache_groups(info: &LoadModelResponse) -> anyhow::Result<Vec<AttentionWindow>> {
    use proto::worker::kv_cache_group::Window;
    if info.kv_cache_groups.is_empty() {
        anyhow::bail!("the workers reported no KV cache group");
    }
    info.kv_cache_groups
        .iter()
        .map(|group| {
            let size = group.size as usize;
            match Window::try_from(group.window) {
                Ok(Window::Full) => Ok(AttentionWindow::Full),
                Ok(Window::Sliding) if size > 0 => Ok(AttentionWindow::Sliding(size)),
                Ok(Window::Chunked) if size > 0 => Ok(AttentionWindow::Chunked(size)),
                _ => anyhow::bail!(
                    "the workers reported a KV cache group the engine cannot schedule: {group:?}"
                ),
            }
        })
        .collect()
}

fn profile_request(config: &ExecutorConfig) -> proto::worker::ProfileMemoryRequest {
    proto::worker::ProfileMemoryRequest {
        block_size: config.block_size as u32,
        gpu_memory_utilization: config.gpu_memory_utilization,
        cpu_kv_cache_bytes: config.cpu_kv_cache_bytes,
        max_num_batched_tokens: config.max_num_batched_tokens as u32,
    }
}

/// `num_blocks` as the KV cache request takes it (u32 on the wire).
fn clamp_blocks(num_blocks: u64) -> Result<u32, ExecutorError> {
    if num_blocks == 0 {
        return Err(ExecutorError::Config(
            "no KV cache block fits in the memory budget (raise --kv-cache-memory or \
             --gpu-memory-utilization)"
                .into(),
        ));
    }
    Ok(num_blocks.min(u64::from(u32::MAX)) as u32)
}
