//! The reference backend: plain torch ops, one sequence at a time. It runs
//! on CPU (and on GPU, slowly) and is the ground truth the CUDA kernels are
//! tested against.

use tch::{Kind, Tensor};

use super::{AttentionBackend, AttentionMetadata};
use crate::paged_kv::LayerKvCache;

/// Gathers each sequence's context from its blocks and runs
/// `scaled_dot_product_attention` with a bottom-right causal mask.
pub struct TorchRefBackend;

impl AttentionBackend for TorchRefBackend {
    fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut LayerKvCache,
        meta: &AttentionMetadata,
        scale: f64,
    ) -> Tensor {
        cache.write(&meta.slot_mapping, k, v);
        let heads = q.size()[1];
        let head_dim = q.size()[2];
        let mut outputs = Vec::with_capacity(meta.num_seqs());
        for (i, slots) in meta.context_slots.iter().enumerate() {
            let start = meta.query_start_loc[i];
            let q_len = meta.query_start_loc[i + 1] - start;
            let ctx = meta.seq_lens[i];
            // [1, heads, q_len, d] and [1, kv_heads, ctx, d]
            let qi = q.narrow(0, start, q_len).transpose(0, 1).unsqueeze(0);
            let (ki, vi) = cache.gather(slots);
            let ki = ki.transpose(0, 1).unsqueeze(0);
            let vi = vi.transpose(0, 1).unsqueeze(0);
            let out = if q_len == 1 || q_len == ctx {
                Tensor::scaled_dot_product_attention::<Tensor>(
                    &qi,
                    &ki,
                    &vi,
                    None,
                    0.0,
                    q_len > 1,
                    scale,
                    true,
                )
            } else {
                // Query j sits at position ctx - q_len + j and sees keys 0..=that.
                let rows =
                    Tensor::arange(q_len, (Kind::Int64, q.device())).unsqueeze(1) + (ctx - q_len);
                let cols = Tensor::arange(ctx, (Kind::Int64, q.device())).unsqueeze(0);
                let mask = cols.le_tensor(&rows);
                Tensor::scaled_dot_product_attention(
                    &qi,
                    &ki,
                    &vi,
                    Some(&mask),
                    0.0,
                    false,
                    scale,
                    true,
                )
            };
            outputs.push(
                out.squeeze_dim(0)
                    .transpose(0, 1)
                    .reshape([q_len, heads * head_dim]),
            );
        }
        match outputs.len() {
            1 => outputs.swap_remove(0),
            _ => Tensor::cat(&outputs, 0),
        }
    }
}
