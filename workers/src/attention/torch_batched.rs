//! The reference ops with a step's decode tokens attended together: one
//! padded `scaled_dot_product_attention` over every sequence that adds one
//! token this step, instead of one call per sequence. At 32 concurrent
//! streams a decode step is 32 such tokens, and the per-sequence loop's
//! gathers and small calls were the cost (issue 15). Prefill chunks still
//! go through the per-sequence path of [`TorchRefBackend`], whose masks
//! they need.
//!
//! Padding: each decode sequence's visible keys are gathered into a row of
//! the longest one's length, the tail repeating its last key and masked
//! out, so padded scores are exactly zero after the softmax. The gather
//! index and mask depend on the step and the layer's window only, so the
//! first layer with a window builds them ([`DecodePlan`], kept in the
//! step's metadata) and the others reuse them.
//!
//! [`TorchRefBackend`]: super::TorchRefBackend

use tch::{Device, Kind, TchError, Tensor};

use super::torch_ref::attend_one;
use super::{AttentionBackend, AttentionLayer, AttentionMetadata, DecodePlan};
use crate::paged_kv::LayerKvCache;

/// Decode tokens batched into one attention call; everything else per
/// sequence, as the reference does it.
pub struct TorchBatchedBackend;

impl AttentionBackend for TorchBatchedBackend {
    fn name(&self) -> &'static str {
        "torch-batched"
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
        let q_len = |i: usize| meta.query_start_loc[i + 1] - meta.query_start_loc[i];
        let decodes = (0..meta.num_seqs()).filter(|&i| q_len(i) == 1).count();
        let batched = if decodes > 1 {
            let plan =
                meta.decode_plan(layer.window, |meta| plan_decodes(meta, layer, q.device()))?;
            Some(attend_decodes(q, cache, layer, &plan)?)
        } else {
            None
        };
        let mut outputs = Vec::with_capacity(meta.num_seqs());
        let mut next_decode = 0;
        for i in 0..meta.num_seqs() {
            match &batched {
                Some(rows) if q_len(i) == 1 => {
                    outputs.push(rows.f_narrow(0, next_decode, 1)?);
                    next_decode += 1;
                }
                _ => outputs.push(attend_one(q, cache, meta, layer, i)?),
            }
        }
        match (outputs.len(), batched) {
            (n, Some(rows)) if n == decodes => Ok(rows),
            (1, _) => Ok(outputs.swap_remove(0)),
            _ => Tensor::f_cat(&outputs, 0),
        }
    }
}

/// Which sequences of the step decode, and the padded gather of their
/// visible keys under `layer`'s window: the same for every layer with
/// that window, so built once a step.
fn plan_decodes(
    meta: &AttentionMetadata,
    layer: &AttentionLayer,
    device: Device,
) -> Result<DecodePlan, TchError> {
    let seqs: Vec<usize> = (0..meta.num_seqs())
        .filter(|&i| meta.query_start_loc[i + 1] - meta.query_start_loc[i] == 1)
        .collect();
    let mut tokens = Vec::with_capacity(seqs.len());
    let mut firsts = Vec::with_capacity(seqs.len());
    let mut lens = Vec::with_capacity(seqs.len());
    for &i in &seqs {
        let ctx = meta.seq_lens[i];
        let first = layer.window.first_visible((ctx - 1).max(0) as usize) as i64;
        tokens.push(meta.query_start_loc[i]);
        firsts.push(meta.context_start[i] + first);
        lens.push(ctx - first);
    }
    let longest = lens.iter().copied().max().unwrap_or(0);
    let n = seqs.len() as i64;
    let host = |v: &[i64]| -> Result<Tensor, TchError> {
        Tensor::f_from_slice(v)?.f_to_device(device)?.f_view([n, 1])
    };
    let (firsts, lens) = (host(&firsts)?, host(&lens)?);
    // Row r, column c: context index firsts[r] + min(c, lens[r] - 1).
    let cols = Tensor::f_arange(longest, (Kind::Int64, device))?.f_view([1, longest])?;
    let index = cols
        .f_minimum(&lens.f_sub_scalar(1)?)?
        .f_add(&firsts)?
        .f_view([n * longest])?;
    Ok(DecodePlan {
        slots: meta.context_slots.f_index_select(0, &index)?,
        tokens: Tensor::f_from_slice(&tokens)?.f_to_device(device)?,
        mask: cols.f_lt_tensor(&lens)?.f_view([n, 1, 1, longest])?,
        seqs,
        longest,
    })
}

/// Attention of the one new query of each sequence of `plan` (all decode
/// tokens), `[plan.seqs.len(), heads * head_dim]` in the plan's order.
fn attend_decodes(
    q: &Tensor,
    cache: &LayerKvCache,
    layer: &AttentionLayer,
    plan: &DecodePlan,
) -> Result<Tensor, TchError> {
    let (heads, head_dim) = (q.size()[1], q.size()[2]);
    let (n, longest) = (plan.seqs.len() as i64, plan.longest);
    let (keys, values) = cache.gather(&plan.slots)?;
    let kv_heads = keys.size()[1];
    // [n, kv_heads, longest, d]
    let to_rows = |t: Tensor| {
        t.f_view([n, longest, kv_heads, head_dim])?
            .f_permute([0, 2, 1, 3])
    };
    let (keys, values) = (to_rows(keys)?, to_rows(values)?);
    // [n, heads, 1, d]
    let queries = q.f_index_select(0, &plan.tokens)?.f_unsqueeze(2)?;
    Tensor::f_scaled_dot_product_attention(
        &queries,
        &keys,
        &values,
        Some(&plan.mask),
        0.0,
        false,
        layer.scale,
        true,
    )?
    .f_reshape([n, heads * head_dim])
}
