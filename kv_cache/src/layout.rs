//! Which layers share a block table: KV cache groups, as vLLM v1's hybrid
//! allocator forms them (`vllm/v1/core/kv_cache_utils.py`).
//!
//! A layer that attends to a sliding window or to its own chunk never reads
//! keys behind that window again, so its blocks there can be freed while a
//! full-attention layer of the same request still needs all of its own.
//! Layers are therefore grouped by window: every group has its own block
//! table per request, and all groups draw from one pool of equally sized
//! blocks. To keep the block size equal, groups hold the same number of
//! layers (`layers_per_block`, the fewest layers of any window kind); a
//! kind with more layers spans several groups. Block `b` of the pool is one
//! row in each of `layers_per_block` K/V tensors, and layer `l` lives in
//! tensor [`LayerPlace::slot`]; since one block id belongs to one group at a
//! time, the layers of different groups sharing a tensor never collide.
//!
//! A model whose layers all share one window is one group, which is the
//! layout every layer had before this module: one table per request, and a
//! block holds every layer.

use model_files::AttentionWindow;

/// Where one layer's K/V live: which group's block table it follows and
/// which of the block's per-layer tensors holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerPlace {
    /// The KV cache group (index into [`KvCacheLayout::group_windows`]).
    pub group: usize,
    /// The tensor of the block that holds this layer, `0..layers_per_block`.
    pub slot: usize,
}

/// The grouping of a model's layers into KV cache groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvCacheLayout {
    group_windows: Vec<AttentionWindow>,
    layers: Vec<LayerPlace>,
    layers_per_block: usize,
}

impl KvCacheLayout {
    /// One group holding every layer's KV for every position: what
    /// `--disable-hybrid-kv-cache-manager` asks for, and what a model with
    /// full attention everywhere gets anyway.
    pub fn uniform(num_layers: usize) -> Self {
        Self {
            group_windows: vec![AttentionWindow::Full],
            layers: (0..num_layers)
                .map(|slot| LayerPlace { group: 0, slot })
                .collect(),
            layers_per_block: num_layers,
        }
    }

    /// Groups layers by their attention window (one window per layer, in
    /// layer order), so a windowed group keeps only what its window sees.
    pub fn hybrid(windows: &[AttentionWindow]) -> Self {
        let mut kinds: Vec<(AttentionWindow, Vec<usize>)> = Vec::new();
        for (layer, &window) in windows.iter().enumerate() {
            match kinds.iter_mut().find(|(w, _)| *w == window) {
                Some((_, layers)) => layers.push(layer),
                None => kinds.push((window, vec![layer])),
            }
        }
        if kinds.len() <= 1 {
            let window = kinds.first().map_or(AttentionWindow::Full, |(w, _)| *w);
            let mut layout = Self::uniform(windows.len());
            layout.group_windows = vec![window];
            return layout;
        }
        // Full attention first, so group 0 is a full group whenever there
        // is one (the prefix cache and metrics read it).
        kinds.sort_by_key(|(w, _)| *w != AttentionWindow::Full);
        let per_block = kinds.iter().map(|(_, l)| l.len()).min().unwrap_or(1);
        let mut group_windows = Vec::new();
        let mut layers = vec![LayerPlace { group: 0, slot: 0 }; windows.len()];
        for (window, members) in &kinds {
            for chunk in members.chunks(per_block) {
                let group = group_windows.len();
                group_windows.push(*window);
                for (slot, &layer) in chunk.iter().enumerate() {
                    layers[layer] = LayerPlace { group, slot };
                }
            }
        }
        Self {
            group_windows,
            layers,
            layers_per_block: per_block,
        }
    }

    /// The window each group keeps blocks for, group 0 first.
    pub fn group_windows(&self) -> &[AttentionWindow] {
        &self.group_windows
    }

    /// Number of groups (block tables per request).
    pub fn num_groups(&self) -> usize {
        self.group_windows.len()
    }

    /// Number of layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Layers one block holds K/V for: the number of per-layer tensors.
    pub fn layers_per_block(&self) -> usize {
        self.layers_per_block
    }

    /// Where layer `layer` lives; `None` past the last layer.
    pub fn place(&self, layer: usize) -> Option<LayerPlace> {
        self.layers.get(layer).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use AttentionWindow::{Chunked, Full, Sliding};

    #[test]
    fn one_window_everywhere_is_one_group_of_every_layer() {
        let layout = KvCacheLayout::hybrid(&[Sliding(8); 3]);
        assert_eq!(layout.group_windows(), &[Sliding(8)]);
        assert_eq!(layout.layers_per_block(), 3);
        assert_eq!(layout.place(2), Some(LayerPlace { group: 0, slot: 2 }));
        assert_eq!(KvCacheLayout::hybrid(&[Full; 2]), KvCacheLayout::uniform(2));
    }

    #[test]
    fn llama4_interleave_makes_equal_groups_with_full_first() {
        // Layers 3 and 7 are NoPE (full); the rest chunked.
        let windows: Vec<_> = (0..8)
            .map(|l| if l % 4 == 3 { Full } else { Chunked(8) })
            .collect();
        let layout = KvCacheLayout::hybrid(&windows);
        assert_eq!(layout.layers_per_block(), 2);
        assert_eq!(
            layout.group_windows(),
            &[Full, Chunked(8), Chunked(8), Chunked(8)]
        );
        assert_eq!(layout.place(3), Some(LayerPlace { group: 0, slot: 0 }));
        assert_eq!(layout.place(7), Some(LayerPlace { group: 0, slot: 1 }));
        assert_eq!(layout.place(0), Some(LayerPlace { group: 1, slot: 0 }));
        assert_eq!(layout.place(6), Some(LayerPlace { group: 3, slot: 1 }));
        // Every (group, slot) pair is used by exactly one layer.
        let mut seen: Vec<_> = (0..8).map(|l| layout.place(l).unwrap()).collect();
        seen.sort_by_key(|p| (p.group, p.slot));
        seen.dedup();
        assert_eq!(seen.len(), 8);
    }

    #[test]
    fn uneven_kinds_leave_the_last_group_short() {
        let layout = KvCacheLayout::hybrid(&[Full, Full, Sliding(4), Sliding(4), Sliding(4)]);
        assert_eq!(layout.layers_per_block(), 2);
        assert_eq!(layout.group_windows(), &[Full, Sliding(4), Sliding(4)]);
        assert_eq!(layout.place(4), Some(LayerPlace { group: 2, slot: 0 }));
        assert_eq!(layout.place(5), None);
    }
}
