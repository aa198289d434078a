//! Attention over the paged KV cache, behind one trait so the CUDA kernels
//! of `kernels` and the torch-ops reference are interchangeable.
//!
//! A forward pass covers a flat batch: sequence `i` owns query rows
//! `query_start_loc[i]..query_start_loc[i+1]` and, after this step's keys are
//! written, `seq_lens[i]` keys in its blocks. Its queries are the last
//! `q_len` positions of that context (a prefill chunk or one decode token),
//! so the causal mask is aligned bottom-right.

mod torch_ref;

use tch::{Device, Tensor};

use crate::paged_kv::LayerKvCache;

pub use self::torch_ref::TorchRefBackend;

/// Per-step attention inputs, built once per forward and shared by layers.
pub struct AttentionMetadata {
    /// `[T]` int64: where each new token's K and V go.
    pub slot_mapping: Tensor,
    /// Host copy of the query offsets, `B + 1` entries.
    pub query_start_loc: Vec<i64>,
    /// Host copy of each sequence's context length after this step.
    pub seq_lens: Vec<i64>,
    /// Per sequence, `[seq_len]` int64 flat slots of its whole context, in
    /// position order (from its block table).
    pub context_slots: Vec<Tensor>,
}

impl AttentionMetadata {
    /// Builds the metadata from host-side block tables.
    pub fn new(
        slot_mapping: &[i64],
        query_start_loc: Vec<i64>,
        seq_lens: Vec<i64>,
        block_tables: &[Vec<u32>],
        block_size: usize,
        device: Device,
    ) -> Self {
        let context_slots = block_tables
            .iter()
            .zip(&seq_lens)
            .map(|(table, &len)| {
                let slots: Vec<i64> = (0..len as usize)
                    .map(|p| {
                        i64::from(table[p / block_size]) * block_size as i64
                            + (p % block_size) as i64
                    })
                    .collect();
                Tensor::from_slice(&slots).to_device(device)
            })
            .collect();
        Self {
            slot_mapping: Tensor::from_slice(slot_mapping).to_device(device),
            query_start_loc,
            seq_lens,
            context_slots,
        }
    }

    /// Number of sequences in the batch.
    pub fn num_seqs(&self) -> usize {
        self.seq_lens.len()
    }
}

/// Writes this step's K/V into the cache and attends.
pub trait AttentionBackend: Send + Sync {
    /// `q` `[T, heads, head_dim]`, `k`/`v` `[T, kv_heads, head_dim]`;
    /// returns `[T, heads * head_dim]`.
    fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut LayerKvCache,
        meta: &AttentionMetadata,
        scale: f64,
    ) -> Tensor;
}
