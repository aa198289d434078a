//! Continuous-batching scheduler: the request state machine,
//! `schedule() -> SchedulerOutput`, `update_from_output()`, token budget,
//! chunked prefill, preemption and priorities (issue 3).
//!
//! Pure Rust: it must not know about torch, tokenizers or HTTP, and it reads
//! no clock (arrival times are passed in). It follows vLLM v1's scheduler
//! (`vllm/v1/core/sched/`): one token budget per step, running requests
//! before new ones, chunked prefill, preemption by recompute, and an output
//! of deltas for workers that keep their own per-request state. The wire
//! form of [`SchedulerOutput`] lives in `proto`.
//!
//! Modules: [`config`] (limits and policy), [`request`] (requests, sampling
//! and stop parameters), [`output`] (what a step sends and receives),
//! [`scheduler`] (the algorithm), `queue` (the waiting queue) and `stop`
//! (token-level stop checks).

#![warn(missing_docs)]

pub mod config;
mod error;
pub mod output;
mod queue;
pub mod request;
pub mod scheduler;
mod stop;

pub use config::{SchedulerConfig, SchedulingPolicy};
pub use error::SchedulerError;
pub use kv_cache::{
    AttentionWindow, BlockHashExtras, BlockId, KvCacheConfig, KvCacheLayout, MultiModalSpan,
    RequestId,
};
pub use output::{
    CachedRequestData, ModelRunnerOutput, NewRequestData, RequestOutput, SchedulerOutput,
};
pub use request::{
    FinishReason, Request, RequestBuilder, RequestStatus, SamplingParams, StopParams,
};
pub use scheduler::{Scheduler, SchedulerStats};
