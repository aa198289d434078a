//! The KV cache tensors: per block slot, K and V of shape
//! `[num_blocks, block_size, num_kv_heads, head_dim]`.
//!
//! The scheduler (through `kv_cache`) owns which block belongs to whom; this
//! module only holds the memory. Writes go to flat slot ids
//! (`block * block_size + offset`), reads gather a sequence's blocks through
//! its block table. Layers are grouped into KV cache groups
//! ([`KvCacheLayout`]): a block holds `layers_per_block` layers, and layer
//! `l` lives in tensor `layout.place(l).slot`, read through its group's
//! block table; with one group that is one tensor per layer, as before.

use kv_cache::KvCacheLayout;
use tch::{Device, Kind, TchError, Tensor};

/// Shape of the cache, fixed when it is allocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCacheSpec {
    pub num_blocks: usize,
    pub block_size: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Which layers share a block table, and which tensor each lives in.
    pub layout: KvCacheLayout,
}

impl KvCacheSpec {
    /// Bytes one block takes across the layers it holds, K and V, for `kind`.
    pub fn bytes_per_block(&self, kind: Kind) -> usize {
        2 * self.layout.layers_per_block()
            * self.block_size
            * self.num_kv_heads
            * self.head_dim
            * kind.elt_size_in_bytes()
    }
}

/// One layer's K and V blocks.
pub struct LayerKvCache {
    pub key: Tensor,
    pub value: Tensor,
}

impl LayerKvCache {
    /// Stores `k`, `v` (`[T, kv_heads, head_dim]`) at flat `slots` (`[T]`).
    pub fn write(&mut self, slots: &Tensor, k: &Tensor, v: &Tensor) -> Result<(), TchError> {
        let (nb, bs, h, d) = dims4(&self.key);
        let mut flat_k = self.key.f_view([nb * bs, h, d])?;
        let mut flat_v = self.value.f_view([nb * bs, h, d])?;
        let _ = flat_k.f_index_copy_(0, slots, k)?;
        let _ = flat_v.f_index_copy_(0, slots, v)?;
        Ok(())
    }

    /// K and V rows at flat `slots`, `[len(slots), kv_heads, head_dim]`.
    pub fn gather(&self, slots: &Tensor) -> Result<(Tensor, Tensor), TchError> {
        let (nb, bs, h, d) = dims4(&self.key);
        Ok((
            self.key.f_view([nb * bs, h, d])?.f_index_select(0, slots)?,
            self.value
                .f_view([nb * bs, h, d])?
                .f_index_select(0, slots)?,
        ))
    }
}

fn dims4(t: &Tensor) -> (i64, i64, i64, i64) {
    let s = t.size();
    (s[0], s[1], s[2], s[3])
}

/// The whole cache: one [`LayerKvCache`] per block slot
/// (`spec.layout.layers_per_block()` of them).
pub struct PagedKvCache {
    pub spec: KvCacheSpec,
    pub layers: Vec<LayerKvCache>,
}

impl PagedKvCache {
    /// Allocates zeroed blocks on `device`.
    pub fn new(spec: KvCacheSpec, kind: Kind, device: Device) -> Result<Self, tch::TchError> {
        let shape = [
            spec.num_blocks as i64,
            spec.block_size as i64,
            spec.num_kv_heads as i64,
            spec.head_dim as i64,
        ];
        let layers = (0..spec.layout.layers_per_block())
            .map(|_| {
                Ok(LayerKvCache {
                    key: Tensor::f_zeros(shape, (kind, device))?,
                    value: Tensor::f_zeros(shape, (kind, device))?,
                })
            })
            .collect::<Result<Vec<_>, tch::TchError>>()?;
        Ok(Self { spec, layers })
    }
}
