//! One worker's model execution, call by call as the `Worker` service
//! names them: init, load, profile memory, allocate the KV cache, execute
//! steps.
//!
//! A step applies its deltas to the [`InputBatch`], then, for each
//! scheduled `(req_id, num_tokens)`, feeds tokens
//! `num_computed .. num_computed + num_tokens` of the request and asks for
//! logits only when that reaches the end of its known tokens (a finished
//! prefill or a decode). `ForwardBatch` turns the chunks into flat varlen
//! ids, positions, slot mapping and block tables; the model runs; the
//! batched sampler draws one token per row. Only rank 0 reports tokens.
//! When the step's structured outputs have bitmasks, rank 0 takes them
//! from a [`BitmaskSource`] between the forward pass and sampling.

use std::time::{Duration, Instant};

use model_files::{AttentionWindow, ModelSource};
use proto::worker::kv_cache_group::Window;
use proto::worker::{
    FailedRequest, InitKvCacheRequest, InitKvCacheResponse, InitRequest, KvCacheGroup,
    LoadModelRequest, LoadModelResponse, ProfileMemoryRequest, ProfileMemoryResponse,
    RequestOutput, ScheduledTokens, StepRequest, StepResult, StepTimings,
};
use tch::{Device, Kind};

use super::bitmasks::{check_bitmask, BitmaskSource, NoBitmasks};
use super::device_memory::cuda_mem_info;
use super::{InputBatch, WorkerError};
use crate::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use crate::layers::moe::ExpertPlacement;
use crate::loader::{self, LoadOptions};
use crate::models::CausalLm;
use crate::paged_kv::PagedKvCache;
use crate::parallel::{CommunicatorKind, TcpOptions, TpGroup};
use crate::progress::LoadProgress;
use crate::sampler::{Sampler, SamplerRow};

struct Loaded {
    model: Box<dyn CausalLm>,
    kind: Kind,
    /// Whether layers are grouped by attention window in the KV cache.
    hybrid_kv_cache: bool,
    info: LoadModelResponse,
}

struct KvCache {
    cache: PagedKvCache,
    limits: BatchLimits,
}

/// A worker's model, KV cache and persistent batch.
pub struct ModelRunner {
    device: Device,
    tp: TpGroup,
    loaded: Option<Loaded>,
    kv: Option<KvCache>,
    batch: InputBatch,
    sampler: Sampler,
}

impl ModelRunner {
    /// Checks the device and the rank, and joins the tensor-parallel group
    /// named by `communicator_id` with the communicator `communicator`
    /// asks for (blocks until every rank has joined).
    pub fn new(req: &InitRequest) -> Result<Self, WorkerError> {
        Self::with_options(req, TcpOptions::default())
    }

    /// [`Self::new`] with the communicator's timeouts given (tests use
    /// short ones).
    pub fn with_options(req: &InitRequest, options: TcpOptions) -> Result<Self, WorkerError> {
        let device = loader::parse_device(&req.device).map_err(WorkerError::InvalidArgument)?;
        if req.world_size == 0 || req.rank >= req.world_size {
            return Err(WorkerError::InvalidArgument(format!(
                "rank {} is outside a group of {}",
                req.rank, req.world_size
            )));
        }
        if let Device::Cuda(i) = device {
            if !tch::Cuda::is_available() || i >= tch::Cuda::device_count() as usize {
                return Err(WorkerError::InvalidArgument(format!(
                    "device {} is not available (no GPU visible, or built without CUDA)",
                    req.device
                )));
            }
        }
        let communicator: CommunicatorKind = req
            .communicator
            .parse()
            .map_err(WorkerError::InvalidArgument)?;
        let tp = TpGroup::join(
            req.rank as usize,
            req.world_size as usize,
            &req.communicator_id,
            communicator,
            device,
            options,
        )?;
        Ok(Self {
            device,
            tp,
            loaded: None,
            kv: None,
            batch: InputBatch::new(),
            sampler: Sampler::new(),
        })
    }

    /// This worker's rank.
    pub fn rank(&self) -> usize {
        self.tp.rank
    }

    /// Which communicator the group runs on (`none`, `tcp` or `nccl`).
    pub fn communicator(&self) -> &'static str {
        self.tp.comm.name()
    }

    /// What `load_model` reported, once a model is loaded.
    pub fn model_info(&self) -> Option<&LoadModelResponse> {
        self.loaded.as_ref().map(|l| &l.info)
    }

    /// The persistent batch (for tests and diagnostics).
    pub fn input_batch(&self) -> &InputBatch {
        &self.batch
    }

    /// Loads the weights for this rank.
    pub fn load_model(&mut self, req: &LoadModelRequest) -> Result<LoadModelResponse, WorkerError> {
        let source = ModelSource::resolve(&req.model)?;
        let options = LoadOptions {
            format: req
                .load_format
                .parse()
                .map_err(WorkerError::InvalidArgument)?,
            device: self.device,
            kind: loader::parse_dtype(&req.dtype, self.device)
                .map_err(WorkerError::InvalidArgument)?,
            seed: req.seed,
            attention_backend: req
                .attention_backend
                .parse()
                .map_err(WorkerError::InvalidArgument)?,
            hf_overrides: loader::parse_hf_overrides(&req.hf_overrides)
                .map_err(WorkerError::InvalidArgument)?,
            quantization: req
                .quantization
                .parse()
                .map_err(WorkerError::InvalidArgument)?,
            expert_placement: if req.enable_expert_parallel {
                ExpertPlacement::WholeExperts
            } else {
                ExpertPlacement::SplitIntermediate
            },
        };
        self.kv = None;
        self.loaded = None;
        // Rank 0 shows loading progress on the shared stderr.
        let progress = LoadProgress::new(&source.name, self.tp.rank == 0);
        let model = loader::load_model(&source, &options, &self.tp, |done, total| {
            progress.update(done, total)
        })?;
        progress.finish();
        let config = model.config();
        let hybrid_kv_cache = !req.disable_hybrid_kv_cache;
        let layout = model.kv_cache_spec(1, 1, hybrid_kv_cache).layout;
        let info = LoadModelResponse {
            vocab_size: config.vocab_size as u32,
            max_position_embeddings: config.max_position_embeddings as u32,
            kv_cache_groups: layout
                .group_windows()
                .iter()
                .map(|&w| group_to_wire(w))
                .collect(),
        };
        // Dummy weights reseed torch's generator: reseed it from the OS.
        self.sampler = Sampler::new();
        self.loaded = Some(Loaded {
            model,
            kind: options.kind,
            hybrid_kv_cache,
            info: info.clone(),
        });
        Ok(info)
    }

    fn loaded(&self) -> Result<&Loaded, WorkerError> {
        self.loaded.as_ref().ok_or(WorkerError::NotReady(
            "no model loaded (call LoadModel first)",
        ))
    }

    /// How many KV blocks fit: on CPU `cpu_kv_cache_bytes / bytes_per_block`;
    /// on CUDA, after a forward pass of `max_num_batched_tokens` tokens,
    /// `total * gpu_memory_utilization - used`, where `used` is everything
    /// the device holds now (weights, torch's cached activations, other
    /// processes: conservative).
    pub fn profile_memory(
        &mut self,
        req: &ProfileMemoryRequest,
    ) -> Result<ProfileMemoryResponse, WorkerError> {
        let block_size = req.block_size as usize;
        if block_size == 0 {
            return Err(WorkerError::InvalidArgument(
                "block_size must be positive".into(),
            ));
        }
        let loaded = self.loaded()?;
        let bytes_per_block = loaded
            .model
            .kv_cache_spec(1, block_size, loaded.hybrid_kv_cache)
            .bytes_per_block(loaded.kind) as u64;
        let budget = match self.device {
            Device::Cuda(index) => {
                let util = f64::from(req.gpu_memory_utilization);
                if !(util > 0.0 && util <= 1.0) {
                    return Err(WorkerError::InvalidArgument(format!(
                        "gpu_memory_utilization must be in (0, 1], got {util}"
                    )));
                }
                self.profile_run(req.max_num_batched_tokens as usize, block_size)?;
                tch::Cuda::synchronize(index as i64);
                let (free, total) = cuda_mem_info(index).map_err(WorkerError::Memory)?;
                let used = total.saturating_sub(free);
                ((total as f64 * util) as u64).saturating_sub(used)
            }
            _ => req.cpu_kv_cache_bytes,
        };
        Ok(ProfileMemoryResponse {
            num_blocks: budget / bytes_per_block.max(1),
            bytes_per_block,
        })
    }

    /// A forward pass over `tokens` dummy tokens (one sequence, a scratch
    /// KV cache just big enough), so torch's allocator holds the peak
    /// activations when memory is measured.
    fn profile_run(&mut self, tokens: usize, block_size: usize) -> Result<(), WorkerError> {
        let loaded = self.loaded()?;
        let config = loaded.model.config();
        let tokens = tokens.clamp(1, config.max_position_embeddings.max(1));
        let per_table = tokens.div_ceil(block_size);
        let spec = loaded
            .model
            .kv_cache_spec(1, block_size, loaded.hybrid_kv_cache);
        let num_groups = spec.layout.num_groups();
        let num_blocks = per_table * num_groups;
        let spec = loaded
            .model
            .kv_cache_spec(num_blocks, block_size, loaded.hybrid_kv_cache);
        let mut cache = PagedKvCache::new(spec, loaded.kind, self.device)?;
        let limits = BatchLimits {
            vocab_size: config.vocab_size,
            num_blocks,
            block_size,
            max_positions: config.max_position_embeddings,
            num_groups,
        };
        // Every group its own blocks, as the scheduler would give them.
        let chunk = SequenceChunk {
            token_ids: vec![0; tokens],
            num_computed: 0,
            block_tables: (0..num_groups)
                .map(|g| ((g * per_table) as u32..((g + 1) * per_table) as u32).collect())
                .collect(),
            want_logits: true,
        };
        let batch = ForwardBatch::build(&[chunk], limits, self.device)?;
        let _ = loaded.model.forward(&batch, &mut cache)?;
        Ok(())
    }

    /// Allocates the KV cache.
    pub fn init_kv_cache(
        &mut self,
        req: &InitKvCacheRequest,
    ) -> Result<InitKvCacheResponse, WorkerError> {
        if req.num_blocks == 0 || req.block_size == 0 {
            return Err(WorkerError::InvalidArgument(format!(
                "KV cache needs positive num_blocks and block_size, got {} and {}",
                req.num_blocks, req.block_size
            )));
        }
        self.kv = None;
        let loaded = self.loaded.as_ref().ok_or(WorkerError::NotReady(
            "no model loaded (call LoadModel first)",
        ))?;
        let (num_blocks, block_size) = (req.num_blocks as usize, req.block_size as usize);
        let spec = loaded
            .model
            .kv_cache_spec(num_blocks, block_size, loaded.hybrid_kv_cache);
        let num_groups = spec.layout.num_groups();
        let cache = PagedKvCache::new(spec, loaded.kind, self.device)?;
        let config = loaded.model.config();
        self.kv = Some(KvCache {
            cache,
            limits: BatchLimits {
                vocab_size: config.vocab_size,
                num_blocks,
                block_size,
                max_positions: config.max_position_embeddings,
                num_groups,
            },
        });
        Ok(InitKvCacheResponse {})
    }

    /// Applies the step's deltas, runs the scheduled tokens and samples.
    ///
    /// A request the worker cannot run (invalid sampling parameters, a
    /// chunk outside the vocabulary, the cache or the model's positions, a
    /// request it does not hold) is left out of the step, forgotten, and
    /// named in `StepResult::failed`; the others run. At tp 1 a forward or
    /// sampler error fails the step's requests the same way and leaves the
    /// worker usable (nothing was advanced); in a group of several ranks it
    /// is an error, since the ranks may no longer agree.
    ///
    /// A step whose bitmasks follow (`bitmasks_follow`) gets them from
    /// `bitmasks` after the forward pass; a request whose bitmask is
    /// unusable (too short, allowing nothing), or all the step's sampled
    /// requests when none come, fail the same way.
    pub fn execute_step_with(
        &mut self,
        step: &StepRequest,
        bitmasks: &mut dyn BitmaskSource,
    ) -> Result<StepResult, WorkerError> {
        let (Some(loaded), Some(kv)) = (self.loaded.as_ref(), self.kv.as_mut()) else {
            return Err(WorkerError::NotReady(
                "KV cache not initialized (call LoadModel and InitKvCache first)",
            ));
        };
        let started = Instant::now();
        let mut timings = StepTimings::default();
        let mut failed = self.batch.apply(step);
        let mut runnable = Vec::with_capacity(step.scheduled.len());
        let mut chunks = Vec::with_capacity(step.scheduled.len());
        for s in &step.scheduled {
            if failed.iter().any(|f| f.req_id == s.req_id) {
                continue;
            }
            match chunk_for(&self.batch, s, kv.limits, runnable.len()) {
                Ok(chunk) => {
                    runnable.push(s);
                    chunks.push(chunk);
                }
                Err(reason) => failed.push(FailedRequest {
                    req_id: s.req_id.clone(),
                    reason,
                }),
            }
        }
        timings.prepare_us = micros(started.elapsed());
        let sampling = Sampling {
            on_this_rank: self.tp.rank == 0,
            bitmasks: step.bitmasks_follow.then_some((step.step_id, bitmasks)),
        };
        let outputs = if chunks.is_empty() {
            Ok((Vec::new(), Vec::new()))
        } else {
            forward_and_sample(
                loaded,
                kv,
                &mut self.sampler,
                &self.batch,
                sampling,
                &runnable,
                &chunks,
                self.device,
                &mut timings,
            )
        };
        let outputs = match outputs {
            Ok((outputs, refused)) => {
                failed.extend(refused);
                for s in &runnable {
                    if let Some(state) = self.batch.get_mut(&s.req_id) {
                        state.num_computed_tokens += s.num_tokens as usize;
                    }
                }
                outputs
            }
            Err(e) if self.tp.world_size == 1 => {
                tracing::warn!(error = %e, requests = runnable.len(), "step failed; failing its requests");
                let reason = e.to_string();
                failed.extend(runnable.iter().map(|s| FailedRequest {
                    req_id: s.req_id.clone(),
                    reason: reason.clone(),
                }));
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        for f in &failed {
            self.batch.forget(&f.req_id);
        }
        Ok(StepResult {
            step_id: step.step_id,
            outputs,
            failed,
            timings: Some(timings),
        })
    }

    /// [`Self::execute_step_with`] for callers that send no bitmasks.
    pub fn execute_step(&mut self, step: &StepRequest) -> Result<StepResult, WorkerError> {
        self.execute_step_with(step, &mut NoBitmasks)
    }
}

/// `d` in whole microseconds, as `StepTimings` carries it.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The chunk `s` asks for of a request the worker holds, checked against
/// the cache's limits; the reason it cannot run otherwise.
fn chunk_for(
    batch: &InputBatch,
    s: &ScheduledTokens,
    limits: BatchLimits,
    seq: usize,
) -> Result<SequenceChunk, String> {
    let state = batch.get(&s.req_id).ok_or_else(|| {
        WorkerError::UnknownRequest {
            req_id: s.req_id.clone(),
            context: "scheduled but not held",
        }
        .to_string()
    })?;
    let start = state.num_computed_tokens;
    let end = start + s.num_tokens as usize;
    let token_ids = state.token_ids.get(start..end).ok_or_else(|| {
        WorkerError::ScheduledPastKnownTokens {
            req_id: s.req_id.clone(),
            start,
            num_tokens: s.num_tokens as usize,
            known: state.token_ids.len(),
        }
        .to_string()
    })?;
    let chunk = SequenceChunk {
        token_ids: token_ids.to_vec(),
        num_computed: start,
        block_tables: state.block_tables.clone(),
        want_logits: end == state.token_ids.len(),
    };
    chunk.check(seq, limits).map_err(|e| e.to_string())?;
    Ok(chunk)
}

/// Whether this rank samples, and where a step's bitmasks come from when
/// they follow it: `(step_id, source)`.
struct Sampling<'a> {
    on_this_rank: bool,
    bitmasks: Option<(u64, &'a mut dyn BitmaskSource)>,
}

/// Runs the model over `chunks` (one per `scheduled` request, same order)
/// and, on the sampling rank, draws a token for each chunk that finishes
/// its known tokens; returns the outputs and the requests refused for
/// their bitmask (left out of sampling). Advances nothing: the caller
/// does once it succeeds. Adds the batch build to `timings.prepare_us`
/// and fills the rest.
#[allow(clippy::too_many_arguments)]
fn forward_and_sample(
    loaded: &Loaded,
    kv: &mut KvCache,
    sampler: &mut Sampler,
    batch: &InputBatch,
    sampling: Sampling<'_>,
    scheduled: &[&ScheduledTokens],
    chunks: &[SequenceChunk],
    device: Device,
    timings: &mut StepTimings,
) -> Result<(Vec<RequestOutput>, Vec<FailedRequest>), WorkerError> {
    let started = Instant::now();
    let forward = ForwardBatch::build(chunks, kv.limits, device)?;
    let built = Instant::now();
    timings.prepare_us += micros(built - started);
    let logits = loaded.model.forward(&forward, &mut kv.cache)?;
    let forwarded = Instant::now();
    timings.forward_us = micros(forwarded - built);
    if !sampling.on_this_rank {
        return Ok((Vec::new(), Vec::new()));
    }
    // The forward pass is queued (on a GPU, maybe still running): now the
    // bitmasks, which the engine computed meanwhile.
    let masks = sampling.bitmasks.map(|(step_id, source)| {
        let masks = source.wait(step_id);
        timings.bitmask_wait_us = micros(forwarded.elapsed());
        masks
    });
    let waited = Instant::now();
    let mut allowed: std::collections::HashMap<&str, &[u32]> = Default::default();
    let mut refused = Vec::new();
    match &masks {
        None => {}
        Some(Ok(step)) => {
            for m in &step.masks {
                allowed.insert(&m.req_id, &m.allowed_token_bitmask);
            }
        }
        Some(Err(reason)) => {
            for (s, row) in scheduled.iter().zip(&forward.logits_rows) {
                if row.is_some() {
                    refused.push(FailedRequest {
                        req_id: s.req_id.clone(),
                        reason: reason.clone(),
                    });
                }
            }
        }
    }
    for (s, row) in scheduled.iter().zip(&forward.logits_rows) {
        let Some(mask) = allowed.get(s.req_id.as_str()) else {
            continue;
        };
        if let (Some(_), Err(reason)) = (row, check_bitmask(mask, kv.limits.vocab_size)) {
            refused.push(FailedRequest {
                req_id: s.req_id.clone(),
                reason,
            });
        }
    }
    let is_refused = |id: &str| refused.iter().any(|f| f.req_id == id);
    let mut rows = Vec::new();
    for (s, row) in scheduled.iter().zip(&forward.logits_rows) {
        if row.is_some() && !is_refused(&s.req_id) {
            if let Some(state) = batch.get(&s.req_id) {
                rows.push(SamplerRow {
                    params: &state.sampling,
                    token_ids: &state.token_ids,
                    num_prompt_tokens: state.num_prompt_tokens,
                    allowed: allowed.get(s.req_id.as_str()).copied(),
                });
            }
        }
    }
    // Every row refused: the logits of nobody are not worth a sampler call.
    let mut sampled = if rows.is_empty() {
        Vec::new().into_iter()
    } else {
        let rows_logits = if refused.is_empty() {
            logits
        } else {
            let keep: Vec<i64> = scheduled
                .iter()
                .zip(&forward.logits_rows)
                .filter_map(|(s, row)| row.filter(|_| !is_refused(&s.req_id)))
                .map(|r| r as i64)
                .collect();
            logits.index_select(
                0,
                &tch::Tensor::from_slice(&keep).to_device(logits.device()),
            )
        };
        sampler.sample(&rows_logits, &rows)?.into_iter()
    };
    let mut outputs = Vec::with_capacity(scheduled.len());
    for (s, row) in scheduled.iter().zip(&forward.logits_rows) {
        if is_refused(&s.req_id) {
            continue;
        }
        let mut out = RequestOutput {
            req_id: s.req_id.clone(),
            ..Default::default()
        };
        if row.is_some() {
            if let Some(token) = sampled.next() {
                out.sampled_token_ids.push(token.token);
                if let Some(lp) = token.logprobs {
                    out.logprobs.push(proto::worker::TokenLogprobs {
                        logprob: lp.logprob,
                        rank: lp.rank,
                        top_token_ids: lp.top_token_ids,
                        top_logprobs: lp.top_logprobs,
                    });
                }
            }
        }
        outputs.push(out);
    }
    timings.sample_us = micros(waited.elapsed());
    Ok((outputs, refused))
}

/// A KV cache group's window as the wire names it.
fn group_to_wire(window: AttentionWindow) -> KvCacheGroup {
    let (window, size) = match window {
        AttentionWindow::Full => (Window::Full, 0),
        AttentionWindow::Sliding(n) => (Window::Sliding, n),
        AttentionWindow::Chunked(n) => (Window::Chunked, n),
    };
    KvCacheGroup {
        window: window as i32,
        size: u32::try_from(size).unwrap_or(u32::MAX),
    }
}
