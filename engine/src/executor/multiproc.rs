//! Worker processes driven over gRPC (vLLM's `MultiprocExecutor`).

use proto::worker::{LoadModelResponse, StepRequest, StepResult};

use super::{Executor, ExecutorConfig, ExecutorError};

/// One `worker` process per tensor-parallel rank.
pub struct MultiprocExecutor {
    info: LoadModelResponse,
}

impl MultiprocExecutor {
    /// Spawns and brings up the workers.
    pub fn start(_config: &ExecutorConfig) -> Result<Self, ExecutorError> {
        Err(ExecutorError::Config(
            "the multiprocess executor lands in the next commit; use ENGINE_EXECUTOR=uniproc".into(),
        ))
    }
}

impl Executor for MultiprocExecutor {
    fn execute(&mut self, _step: StepRequest) -> Result<StepResult, ExecutorError> {
        Err(ExecutorError::ShutDown)
    }
    fn num_kv_blocks(&self) -> usize {
        0
    }
    fn model_info(&self) -> &LoadModelResponse {
        &self.info
    }
    fn check_health(&mut self) -> Result<(), ExecutorError> {
        Err(ExecutorError::ShutDown)
    }
    fn shutdown(&mut self) {}
}
