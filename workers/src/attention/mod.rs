//! Attention over the paged KV cache, behind one trait so the CUDA kernels
//! of `kernels` and the torch-ops reference are interchangeable; which one
//! runs is chosen once at startup ([`select_backend`]), not by the models.
//!
//! A forward pass covers a flat batch: sequence `i` owns query rows
//! `query_start_loc[i]..query_start_loc[i+1]` and, after this step's keys are
//! written, `seq_lens[i]` keys in its blocks. Its queries are the last
//! `q_len` positions of that context (a prefill chunk or one decode token),
//! so the causal mask is aligned bottom-right. A layer with a sliding
//! window also hides keys more than `window - 1` positions behind a query.

mod torch_batched;
mod torch_ref;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use model_files::AttentionWindow;
use tch::{Device, TchError, Tensor};

use crate::paged_kv::LayerKvCache;

pub use self::torch_batched::TorchBatchedBackend;
pub use self::torch_ref::TorchRefBackend;

/// Per-step attention inputs, built once per forward and shared by layers.
pub struct AttentionMetadata {
    /// `[T]` int64: where each new token's K and V go.
    pub slot_mapping: Tensor,
    /// Host copy of the query offsets, `B + 1` entries.
    pub query_start_loc: Vec<i64>,
    /// Host copy of each sequence's context length after this step.
    pub seq_lens: Vec<i64>,
    /// `[sum of seq_lens]` int64: every sequence's context slots in
    /// position order, back to back (sequence `i` from `context_start[i]`):
    /// one host-to-device copy per step, not one per sequence.
    pub context_slots: Tensor,
    /// Offsets into `context_slots`, `B + 1` entries.
    pub context_start: Vec<i64>,
    /// What a backend derives from the above once per step and window
    /// (the batched decode's gather index and mask): built by the first
    /// layer with that window, shared by the rest.
    decode_plans: RefCell<Vec<(AttentionWindow, Rc<DecodePlan>)>>,
}

/// A step's decode tokens (sequences adding one token) as one padded
/// batch over a window's visible keys, for [`TorchBatchedBackend`].
pub struct DecodePlan {
    /// The decode sequences, in batch order.
    pub seqs: Vec<usize>,
    /// `[n]` int64: their query rows.
    pub tokens: Tensor,
    /// `[n * longest]` int64: each row's visible key slots, padded by
    /// repeating its last.
    pub slots: Tensor,
    /// `[n, 1, 1, longest]` bool: which of those keys are real.
    pub mask: Tensor,
    /// Keys per row.
    pub longest: i64,
}

impl AttentionMetadata {
    /// Builds the metadata from host-side block tables (each covering its
    /// sequence's `seq_lens` positions; `ForwardBatch` has checked that).
    pub fn new(
        slot_mapping: &[i64],
        query_start_loc: Vec<i64>,
        seq_lens: Vec<i64>,
        block_tables: &[&[u32]],
        block_size: usize,
        device: Device,
    ) -> Result<Self, TchError> {
        let total: i64 = seq_lens.iter().sum();
        let mut slots = Vec::with_capacity(total.max(0) as usize);
        let mut context_start = Vec::with_capacity(seq_lens.len() + 1);
        context_start.push(0);
        for (table, &len) in block_tables.iter().zip(&seq_lens) {
            slots.extend((0..len.max(0) as usize).map(|p| {
                i64::from(table[p / block_size]) * block_size as i64 + (p % block_size) as i64
            }));
            context_start.push(slots.len() as i64);
        }
        Ok(Self {
            slot_mapping: Tensor::f_from_slice(slot_mapping)?.f_to_device(device)?,
            query_start_loc,
            seq_lens,
            context_slots: Tensor::f_from_slice(&slots)?.f_to_device(device)?,
            context_start,
            decode_plans: RefCell::default(),
        })
    }

    /// The decode plan for `window`: the one built earlier in this step,
    /// else what `build` makes (kept for the next layer).
    pub fn decode_plan(
        &self,
        window: AttentionWindow,
        build: impl FnOnce(&Self) -> Result<DecodePlan, TchError>,
    ) -> Result<Rc<DecodePlan>, TchError> {
        if let Some((_, plan)) = self
            .decode_plans
            .borrow()
            .iter()
            .find(|(w, _)| *w == window)
        {
            return Ok(Rc::clone(plan));
        }
        let plan = Rc::new(build(self)?);
        self.decode_plans
            .borrow_mut()
            .push((window, Rc::clone(&plan)));
        Ok(plan)
    }

    /// Number of sequences in the batch.
    pub fn num_seqs(&self) -> usize {
        self.seq_lens.len()
    }
}

/// One attention layer's constants, as its model gives them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionLayer {
    /// Softmax scale (usually `head_dim^-0.5`).
    pub scale: f64,
    /// Which earlier keys a query sees: all, the last `n` positions
    /// (Mistral, Qwen3's sliding layers) or its own chunk (Llama 4's local
    /// layers).
    pub window: AttentionWindow,
}

/// Writes this step's K/V into the cache and attends.
pub trait AttentionBackend: Send + Sync {
    /// The name `select_backend` knows it by.
    fn name(&self) -> &'static str;

    /// `q` `[T, heads, head_dim]`, `k`/`v` `[T, kv_heads, head_dim]`;
    /// returns `[T, heads * head_dim]`. An error (out of memory, a device
    /// failure) fails the step, never the process.
    fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut LayerKvCache,
        meta: &AttentionMetadata,
        layer: &AttentionLayer,
    ) -> Result<Tensor, TchError>;
}

/// `--attention-backend`: which [`AttentionBackend`] a worker builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// The fastest backend this build has for the device: today
    /// torch-batched everywhere (1.56x the reference's output tok/s at 32
    /// concurrent streams on 2 CPU cores); the CUDA kernels will be chosen
    /// here. `--batch-invariant` asks for [`BackendChoice::Torch`] instead.
    #[default]
    Auto,
    /// The torch-ops reference ([`TorchRefBackend`]).
    Torch,
    /// The reference with each step's decode tokens in one padded call
    /// ([`TorchBatchedBackend`]).
    TorchBatched,
}

impl BackendChoice {
    /// The name `--attention-backend` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Torch => "torch",
            Self::TorchBatched => "torch-batched",
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" | "" => Ok(Self::Auto),
            "torch" => Ok(Self::Torch),
            "torch-batched" => Ok(Self::TorchBatched),
            other => Err(format!(
                "unknown attention backend `{other}` (this build has: auto, torch, torch-batched)"
            )),
        }
    }
}

/// Builds the backend `choice` names for `device`, once at startup.
pub fn select_backend(choice: BackendChoice, device: Device) -> Arc<dyn AttentionBackend> {
    match (choice, device) {
        (BackendChoice::Torch, _) => Arc::new(TorchRefBackend),
        (BackendChoice::Auto | BackendChoice::TorchBatched, _) => Arc::new(TorchBatchedBackend),
    }
}
