//! The reference backend: plain torch ops, one sequence at a time. It runs
//! on CPU (and on GPU, slowly) and is the ground truth the CUDA kernels are
//! tested against.

use tch::{Kind, TchError, Tensor};

use model_files::AttentionWindow;

use super::{AttentionBackend, AttentionLayer, AttentionMetadata};
use crate::paged_kv::LayerKvCache;

/// Gathers each sequence's visible context from its blocks and runs
/// `scaled_dot_product_attention` with a bottom-right causal mask (and the
/// layer's sliding window or attention chunk).
pub struct TorchRefBackend;

impl AttentionBackend for TorchRefBackend {
    fn name(&self) -> &'static str {
        "torch"
    }

    fn forward(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        cache: &mut LayerKvCache,
        meta: &AttentionMetadata,
        layer: &AttentionLayer,
    ) -> Result<Tensor, TchError> {
        cache.write(&meta.slot_mapping, k, v)?;
        let mut outputs = Vec::with_capacity(meta.num_seqs());
        for i in 0..meta.num_seqs() {
            outputs.push(attend_one(q, cache, meta, layer, i)?);
        }
        match outputs.len() {
            1 => Ok(outputs.swap_remove(0)),
            _ => Tensor::f_cat(&outputs, 0),
        }
    }
}

/// Sequence `i`'s attention output, `[q_len, heads * head_dim]`, from its
/// visible context in the cache (this step's keys already written).
pub(super) fn attend_one(
    q: &Tensor,
    cache: &LayerKvCache,
    meta: &AttentionMetadata,
    layer: &AttentionLayer,
    i: usize,
) -> Result<Tensor, TchError> {
    let heads = q.size()[1];
    let head_dim = q.size()[2];
    let start = meta.query_start_loc[i];
    let q_len = meta.query_start_loc[i + 1] - start;
    let ctx = meta.seq_lens[i];
    // Keys before `first` are out of every query's window (the
    // first query's window starts earliest).
    let first = layer.window.first_visible((ctx - q_len).max(0) as usize) as i64;
    let visible = ctx - first;
    let slots = meta
        .context_slots
        .f_narrow(0, meta.context_start[i] + first, visible)?;
    // [1, heads, q_len, d] and [1, kv_heads, visible, d]
    let qi = q
        .f_narrow(0, start, q_len)?
        .f_transpose(0, 1)?
        .f_unsqueeze(0)?;
    let (ki, vi) = cache.gather(&slots)?;
    let ki = ki.f_transpose(0, 1)?.f_unsqueeze(0)?;
    let vi = vi.f_transpose(0, 1)?.f_unsqueeze(0)?;
    let full = layer.window == AttentionWindow::Full;
    let out = if q_len == 1 || (q_len == ctx && full) {
        // One query sees every visible key; a whole prompt without a
        // window is plain causal.
        Tensor::f_scaled_dot_product_attention::<Tensor>(
            &qi,
            &ki,
            &vi,
            None,
            0.0,
            q_len > 1,
            layer.scale,
            true,
        )?
    } else {
        // Query j sits at position ctx - q_len + j and sees keys
        // 0..=that, from its window's first position on.
        let device = q.device();
        let rows = Tensor::f_arange(q_len, (Kind::Int64, device))?
            .f_unsqueeze(1)?
            .f_add_scalar(ctx - q_len)?;
        let cols = Tensor::f_arange(visible, (Kind::Int64, device))?
            .f_add_scalar(first)?
            .f_unsqueeze(0)?;
        let mut mask = cols.f_le_tensor(&rows)?;
        let window_start = match layer.window {
            AttentionWindow::Full => None,
            AttentionWindow::Sliding(w) => Some(rows.f_sub_scalar(w as i64 - 1)?),
            AttentionWindow::Chunked(c) => Some(rows.f_sub(&rows.f_remainder(c.max(1) as i64)?)?),
        };
        if let Some(start) = window_start {
            mask = mask.f_logical_and(&cols.f_ge_tensor(&start)?)?;
        }
        Tensor::f_scaled_dot_product_attention(
            &qi,
            &ki,
            &vi,
            Some(&mask),
            0.0,
            false,
            layer.scale,
            true,
        )?
    };
    out.f_squeeze_dim(0)?
        .f_transpose(0, 1)?
        .f_reshape([q_len, heads * head_dim])
}
