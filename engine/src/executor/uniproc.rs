//! The in-process executor (vLLM's `UniProcExecutor`): one
//! [`ModelRunner`] on the caller's thread, no gRPC. For `engine generate`,
//! tests, and `--distributed-executor-backend uni`.

use proto::worker::{InitKvCacheRequest, InitRequest, LoadModelResponse, StepRequest, StepResult};
use workers::runner::ModelRunner;

use super::{
    clamp_blocks, load_request, log_phase, profile_request, BitmaskJob, Executor, ExecutorConfig,
    ExecutorError,
};

/// A model runner in this process.
pub struct UniprocExecutor {
    runner: Option<ModelRunner>,
    info: LoadModelResponse,
    num_blocks: usize,
    /// [`ExecutorConfig::overlaps_bitmasks`].
    overlap_bitmasks: bool,
}

impl UniprocExecutor {
    /// Loads the model and allocates the KV cache in this process.
    pub fn start(config: &ExecutorConfig) -> Result<Self, ExecutorError> {
        if config.tensor_parallel_size != 1 {
            return Err(ExecutorError::Config(format!(
                "the uniproc executor runs tensor parallel size 1, not {}",
                config.tensor_parallel_size
            )));
        }
        let mut runner = ModelRunner::new(&InitRequest {
            device: config.device.clone(),
            rank: 0,
            world_size: 1,
            communicator_id: String::new(),
            communicator: config.tp_communicator.to_string(),
        })?;
        let load_started = std::time::Instant::now();
        let info = runner.load_model(&load_request(config))?;
        log_phase("model loaded", load_started);
        let profile_started = std::time::Instant::now();
        let profile = runner.profile_memory(&profile_request(config))?;
        let num_blocks = clamp_blocks(profile.num_blocks)?;
        runner.init_kv_cache(&InitKvCacheRequest {
            num_blocks,
            block_size: config.block_size as u32,
        })?;
        log_phase("KV cache profiled and allocated", profile_started);
        Ok(Self {
            runner: Some(runner),
            info,
            num_blocks: num_blocks as usize,
            overlap_bitmasks: config.overlaps_bitmasks(),
        })
    }
}

impl Executor for UniprocExecutor {
    fn execute(
        &mut self,
        mut step: StepRequest,
        bitmasks: Option<BitmaskJob<'_>>,
    ) -> Result<StepResult, ExecutorError> {
        let runner = self.runner.as_mut().ok_or(ExecutorError::ShutDown)?;
        let Some(job) = bitmasks else {
            return Ok(runner.execute_step(&step)?);
        };
        step.bitmasks_follow = true;
        let (sender, mut receiver) = std::sync::mpsc::channel();
        if !self.overlap_bitmasks {
            let _ = sender.send(job());
            return Ok(runner.execute_step_with(&step, &mut receiver)?);
        }
        // The job on a second thread, the forward pass on this one.
        std::thread::scope(|scope| {
            scope.spawn(move || {
                // The runner waits with a limit: a send that finds it gone
                // has nobody to tell.
                let _ = sender.send(job());
            });
            Ok(runner.execute_step_with(&step, &mut receiver)?)
        })
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
        self.runner
            .as_ref()
            .map(|_| ())
            .ok_or(ExecutorError::ShutDown)
    }

    fn shutdown(&mut self) {
        self.runner = None;
    }
}
