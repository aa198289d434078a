//! A request as the scheduler sees it: token ids, the parameters that decide
//! when it finishes, its place in the queues, and its status.
//!
//! Follows vLLM v1's `Request`. The scheduler never sees text: stop strings
//! and detokenization belong to `engine`; here only token-level stops
//! (EOS, stop token ids, `max_tokens`, `min_tokens`, context length) apply.

use std::sync::Arc;

use kv_cache::{BlockHashExtras, RequestId};

/// Sampling settings the worker applies; the scheduler only carries them to
/// the worker once, in the new-request data, behind an `Arc`.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass; 1 disables it.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: u32,
    /// Drop tokens below this fraction of the top probability; 0 disables it.
    pub min_p: f32,
    /// Per-request seed for reproducible sampling.
    pub seed: Option<u64>,
    /// OpenAI presence penalty.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty.
    pub frequency_penalty: f32,
    /// Multiplicative repetition penalty; 1 disables it.
    pub repetition_penalty: f32,
    /// Number of top log-probabilities to return per token, if any.
    pub logprobs: Option<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            logprobs: None,
        }
    }
}

/// The token-level conditions that end a request, checked after every
/// sampled token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopParams {
    /// Most output tokens to generate.
    pub max_tokens: usize,
    /// EOS and stop tokens are ignored until this many output tokens exist.
    pub min_tokens: usize,
    /// Keep generating past EOS (benchmarks use this).
    pub ignore_eos: bool,
    /// The model's end-of-sequence token ids (several for some chat models).
    pub eos_token_ids: Vec<u32>,
    /// Extra token ids that end the request (the token is kept in the output).
    pub stop_token_ids: Vec<u32>,
}

impl Default for StopParams {
    fn default() -> Self {
        Self {
            max_tokens: 16,
            min_tokens: 0,
            ignore_eos: false,
            eos_token_ids: Vec::new(),
            stop_token_ids: Vec::new(),
        }
    }
}

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// The model produced an EOS token.
    Eos,
    /// The model produced one of the request's stop token ids (this one).
    StopToken(u32),
    /// The request produced `max_tokens` output tokens.
    MaxTokens,
    /// The request reached the model's context length.
    MaxModelLen,
    /// The client or the engine aborted it.
    Aborted,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Queued, never scheduled.
    Waiting,
    /// In the running batch.
    Running,
    /// Preempted: its blocks were freed and it waits to be recomputed.
    Preempted,
    /// Done, with the reason.
    Finished(FinishReason),
}

/// One generation request and its progress.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) id: RequestId,
    pub(crate) prompt_token_ids: Arc<[u32]>,
    /// Prompt then output tokens; the prompt part mirrors `prompt_token_ids`.
    pub(crate) all_token_ids: Vec<u32>,
    pub(crate) sampling_params: Arc<SamplingParams>,
    pub(crate) stop: StopParams,
    pub(crate) hash_extras: BlockHashExtras,
    pub(crate) arrival_time: f64,
    pub(crate) priority: i32,
    pub(crate) status: RequestStatus,
    pub(crate) num_computed_tokens: usize,
    pub(crate) num_cached_tokens: Option<usize>,
    pub(crate) num_preemptions: u32,
    /// Tokens the workers hold (they had all of them when it was last
    /// scheduled), so the next step sends only those appended since.
    pub(crate) num_tokens_sent: usize,
    /// Admission order, to break ties between equal arrival times.
    pub(crate) seq: u64,
}

impl Request {
    /// Starts a builder for a request with these prompt tokens.
    ///
    /// ```
    /// use scheduler::Request;
    /// let req = Request::builder("r1", vec![1, 2, 3]).max_tokens(8).priority(1).arrival_time(0.5).build();
    /// assert_eq!(req.num_prompt_tokens(), 3);
    /// ```
    pub fn builder(
        id: impl Into<RequestId>,
        prompt_token_ids: impl Into<Arc<[u32]>>,
    ) -> RequestBuilder {
        RequestBuilder {
            id: id.into(),
            prompt_token_ids: prompt_token_ids.into(),
            sampling_params: Arc::new(SamplingParams::default()),
            stop: StopParams::default(),
            hash_extras: BlockHashExtras::default(),
            arrival_time: 0.0,
            priority: 0,
        }
    }

    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The prompt token ids.
    pub fn prompt_token_ids(&self) -> &[u32] {
        &self.prompt_token_ids
    }

    /// The output token ids generated so far (they survive preemption).
    pub fn output_token_ids(&self) -> &[u32] {
        &self.all_token_ids[self.prompt_token_ids.len()..]
    }

    /// Prompt then output token ids.
    pub fn all_token_ids(&self) -> &[u32] {
        &self.all_token_ids
    }

    /// Prompt length.
    pub fn num_prompt_tokens(&self) -> usize {
        self.prompt_token_ids.len()
    }

    /// Output tokens generated so far.
    pub fn num_output_tokens(&self) -> usize {
        self.all_token_ids.len() - self.prompt_token_ids.len()
    }

    /// Prompt plus output length.
    pub fn num_tokens(&self) -> usize {
        self.all_token_ids.len()
    }

    /// Tokens whose KV is computed or scheduled to be computed this step.
    pub fn num_computed_tokens(&self) -> usize {
        self.num_computed_tokens
    }

    /// Prompt tokens served from the prefix cache at first admission.
    pub fn num_cached_tokens(&self) -> Option<usize> {
        self.num_cached_tokens
    }

    /// How many times it was preempted.
    pub fn num_preemptions(&self) -> u32 {
        self.num_preemptions
    }

    /// Sampling settings for the worker.
    pub fn sampling_params(&self) -> &Arc<SamplingParams> {
        &self.sampling_params
    }

    /// Stop conditions.
    pub fn stop_params(&self) -> &StopParams {
        &self.stop
    }

    /// Arrival time, in the caller's clock (seconds).
    pub fn arrival_time(&self) -> f64 {
        self.arrival_time
    }

    /// Priority; lower values are served first under the priority policy.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// Current status.
    pub fn status(&self) -> RequestStatus {
        self.status
    }

    /// Whether it has finished, and why.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        match self.status {
            RequestStatus::Finished(r) => Some(r),
            _ => None,
        }
    }
}

/// Builds a [`Request`]; every field but the id and prompt has a default.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    id: RequestId,
    prompt_token_ids: Arc<[u32]>,
    sampling_params: Arc<SamplingParams>,
    stop: StopParams,
    hash_extras: BlockHashExtras,
    arrival_time: f64,
    priority: i32,
}

impl RequestBuilder {
    /// Sets all stop parameters at once.
    pub fn stop_params(mut self, stop: StopParams) -> Self {
        self.stop = stop;
        self
    }

    /// Most output tokens.
    pub fn max_tokens(mut self, n: usize) -> Self {
        self.stop.max_tokens = n;
        self
    }

    /// Fewest output tokens before EOS or a stop token may end the request.
    pub fn min_tokens(mut self, n: usize) -> Self {
        self.stop.min_tokens = n;
        self
    }

    /// The EOS token id (replaces any set before).
    pub fn eos_token_id(mut self, id: u32) -> Self {
        self.stop.eos_token_ids = vec![id];
        self
    }

    /// Keep generating past EOS.
    pub fn ignore_eos(mut self, ignore: bool) -> Self {
        self.stop.ignore_eos = ignore;
        self
    }

    /// Token ids that end the request.
    pub fn stop_token_ids(mut self, ids: Vec<u32>) -> Self {
        self.stop.stop_token_ids = ids;
        self
    }

    /// Sampling settings for the worker.
    pub fn sampling_params(mut self, params: impl Into<Arc<SamplingParams>>) -> Self {
        self.sampling_params = params.into();
        self
    }

    /// Extra keys for prefix-cache hashing (LoRA adapter, salt, images).
    pub fn hash_extras(mut self, extras: BlockHashExtras) -> Self {
        self.hash_extras = extras;
        self
    }

    /// Arrival time in the caller's clock; the scheduler reads no clock.
    pub fn arrival_time(mut self, t: f64) -> Self {
        self.arrival_time = t;
        self
    }

    /// Priority; lower is served first under [`crate::SchedulingPolicy::Priority`].
    pub fn priority(mut self, p: i32) -> Self {
        self.priority = p;
        self
    }

    /// The request, in status [`RequestStatus::Waiting`].
    pub fn build(self) -> Request {
        Request {
            all_token_ids: self.prompt_token_ids.to_vec(),
            id: self.id,
            prompt_token_ids: self.prompt_token_ids,
            sampling_params: self.sampling_params,
            stop: self.stop,
            hash_extras: self.hash_extras,
            arrival_time: self.arrival_time,
            priority: self.priority,
            status: RequestStatus::Waiting,
            num_computed_tokens: 0,
            num_cached_tokens: None,
            num_preemptions: 0,
            num_tokens_sent: 0,
            seq: 0,
        }
    }
}
