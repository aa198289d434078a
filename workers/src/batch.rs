//! The flat varlen input of one forward pass, built from plain per-sequence
//! descriptions and validated here, so the model never sees an id out of
//! range or a slot outside the cache.

use tch::{Device, TchError, Tensor};

use crate::attention::AttentionMetadata;

/// One sequence's part of a step: the tokens to run now (a prefill chunk
/// or a single decode token) after `num_computed` already cached ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceChunk {
    /// Token ids to feed this step.
    pub token_ids: Vec<u32>,
    /// Tokens of this sequence already in the KV cache (the position of the
    /// first token in `token_ids`).
    pub num_computed: usize,
    /// Per KV cache group, the block ids holding positions
    /// `0..num_computed + token_ids.len()` in order; need not be
    /// contiguous. A windowed group's entries behind its window may name
    /// any block (the null block): they are never read.
    pub block_tables: Vec<Vec<u32>>,
    /// Whether to return logits for the last token of the chunk (false for
    /// a prefill chunk that does not finish the prompt).
    pub want_logits: bool,
}

impl SequenceChunk {
    /// Checks this chunk (sequence `seq` of its batch) against `limits`:
    /// what [`ForwardBatch::build`] refuses, asked one sequence at a time,
    /// so a worker can drop the one bad sequence of a step and run the
    /// rest.
    pub fn check(&self, seq: usize, limits: BatchLimits) -> Result<(), BatchError> {
        if self.token_ids.is_empty() {
            return Err(BatchError::EmptyChunk { seq });
        }
        let end = self.num_computed + self.token_ids.len();
        if end > limits.max_positions {
            return Err(BatchError::TooLong {
                seq,
                position: end,
                max: limits.max_positions,
            });
        }
        if self.block_tables.len() != limits.num_groups {
            return Err(BatchError::WrongGroupCount {
                seq,
                got: self.block_tables.len(),
                expected: limits.num_groups,
            });
        }
        let blocks_needed = end.div_ceil(limits.block_size.max(1));
        for table in &self.block_tables {
            if table.len() < blocks_needed {
                return Err(BatchError::BlockTableTooShort {
                    seq,
                    needed: end,
                    blocks_needed,
                    have: table.len(),
                });
            }
            if let Some(&block) = table[..blocks_needed]
                .iter()
                .find(|&&b| b as usize >= limits.num_blocks)
            {
                return Err(BatchError::BlockOutOfRange {
                    seq,
                    block,
                    num_blocks: limits.num_blocks,
                });
            }
        }
        if let Some(&id) = self
            .token_ids
            .iter()
            .find(|&&id| id as usize >= limits.vocab_size)
        {
            return Err(BatchError::TokenOutOfRange {
                seq,
                id,
                vocab_size: limits.vocab_size,
            });
        }
        Ok(())
    }
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("sequence {seq}: empty chunk")]
    EmptyChunk { seq: usize },
    #[error("sequence {seq}: token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        seq: usize,
        id: u32,
        vocab_size: usize,
    },
    #[error(
        "sequence {seq}: {needed} positions need {blocks_needed} blocks, block table has {have}"
    )]
    BlockTableTooShort {
        seq: usize,
        needed: usize,
        blocks_needed: usize,
        have: usize,
    },
    #[error("sequence {seq}: {got} block tables for a cache of {expected} KV cache groups")]
    WrongGroupCount {
        seq: usize,
        got: usize,
        expected: usize,
    },
    #[error("sequence {seq}: block id {block} is outside the cache of {num_blocks} blocks")]
    BlockOutOfRange {
        seq: usize,
        block: u32,
        num_blocks: usize,
    },
    #[error("sequence {seq}: position {position} exceeds the model's {max} positions")]
    TooLong {
        seq: usize,
        position: usize,
        max: usize,
    },
    #[error("empty batch")]
    Empty,
    /// Copying the batch to the device failed (out of memory).
    #[error("could not copy the batch to the device: {0}")]
    Device(String),
}

/// Limits a batch is validated against.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub vocab_size: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub max_positions: usize,
    /// Block tables each sequence carries (KV cache groups).
    pub num_groups: usize,
}

/// Tensors for one forward pass.
pub struct ForwardBatch {
    /// `[T]` int64 token ids, sequences back to back.
    pub input_ids: Tensor,
    /// `[T]` int64 positions.
    pub positions: Tensor,
    /// `[N]` int64 rows of the flat batch whose logits are wanted.
    pub logits_indices: Tensor,
    /// For each sequence, `Some(row in the returned logits)` if it asked.
    pub logits_rows: Vec<Option<usize>>,
    /// One per KV cache group: the slots its layers write and read.
    pub attn: Vec<AttentionMetadata>,
}

impl ForwardBatch {
    /// Validates `chunks` against `limits` and builds the tensors on `device`.
    pub fn build(
        chunks: &[SequenceChunk],
        limits: BatchLimits,
        device: Device,
    ) -> Result<Self, BatchError> {
        if chunks.is_empty() {
            return Err(BatchError::Empty);
        }
        let total: usize = chunks.iter().map(|c| c.token_ids.len()).sum();
        let mut ids = Vec::with_capacity(total);
        let mut positions = Vec::with_capacity(total);
        let mut query_start_loc = Vec::with_capacity(chunks.len() + 1);
        let mut seq_lens = Vec::with_capacity(chunks.len());
        let mut logits_indices = Vec::new();
        let mut logits_rows = Vec::with_capacity(chunks.len());
        let bs = limits.block_size;
        query_start_loc.push(0i64);
        for (seq, chunk) in chunks.iter().enumerate() {
            chunk.check(seq, limits)?;
            let end = chunk.num_computed + chunk.token_ids.len();
            for (i, &id) in chunk.token_ids.iter().enumerate() {
                ids.push(i64::from(id));
                positions.push((chunk.num_computed + i) as i64);
            }
            query_start_loc.push(ids.len() as i64);
            seq_lens.push(end as i64);
            if chunk.want_logits {
                logits_rows.push(Some(logits_indices.len()));
                logits_indices.push(ids.len() as i64 - 1);
            } else {
                logits_rows.push(None);
            }
        }
        let on_device = |e: TchError| BatchError::Device(e.to_string());
        let upload = |v: &[i64]| {
            Tensor::f_from_slice(v)
                .and_then(|t| t.f_to_device(device))
                .map_err(on_device)
        };
        let attn = (0..limits.num_groups)
            .map(|group| {
                let tables: Vec<&[u32]> = chunks
                    .iter()
                    .map(|c| c.block_tables[group].as_slice())
                    .collect();
                let slots: Vec<i64> = chunks
                    .iter()
                    .zip(&tables)
                    .flat_map(|(c, table)| {
                        (c.num_computed..c.num_computed + c.token_ids.len()).map(move |pos| {
                            i64::from(table[pos / bs]) * bs as i64 + (pos % bs) as i64
                        })
                    })
                    .collect();
                AttentionMetadata::new(
                    &slots,
                    query_start_loc.clone(),
                    seq_lens.clone(),
                    &tables,
                    bs,
                    device,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(on_device)?;
        Ok(Self {
            input_ids: upload(&ids)?,
            positions: upload(&positions)?,
            logits_indices: upload(&logits_indices)?,
            logits_rows,
            attn,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BatchLimits = BatchLimits {
        vocab_size: 100,
        num_blocks: 8,
        block_size: 4,
        max_positions: 64,
        num_groups: 1,
    };

    fn chunk(ids: &[u32], computed: usize, table: &[u32]) -> SequenceChunk {
        SequenceChunk {
            token_ids: ids.to_vec(),
            num_computed: computed,
            block_tables: vec![table.to_vec()],
            want_logits: true,
        }
    }

    #[test]
    fn slots_follow_block_table() {
        let b = ForwardBatch::build(&[chunk(&[1, 2, 3], 3, &[5, 2])], LIMITS, Device::Cpu).unwrap();
        // positions 3, 4, 5 -> block 5 offset 3, block 2 offsets 0 and 1
        assert_eq!(
            Vec::<i64>::try_from(&b.attn[0].slot_mapping).unwrap(),
            vec![23, 8, 9]
        );
        assert_eq!(Vec::<i64>::try_from(&b.positions).unwrap(), vec![3, 4, 5]);
    }

    #[test]
    fn each_kv_cache_group_gets_slots_from_its_own_table() {
        let limits = BatchLimits {
            num_groups: 2,
            ..LIMITS
        };
        let two = SequenceChunk {
            block_tables: vec![vec![5, 2], vec![0, 7]],
            ..chunk(&[1, 2], 3, &[])
        };
        let b = ForwardBatch::build(&[two], limits, Device::Cpu).unwrap();
        // Positions 3 and 4: block 5 offset 3, block 2 offset 0; then
        // block 0 offset 3 (a dropped entry: any block), block 7 offset 0.
        let slots = |g: usize| Vec::<i64>::try_from(&b.attn[g].slot_mapping).unwrap();
        assert_eq!((slots(0), slots(1)), (vec![23, 8], vec![3, 28]));
        let one_table = chunk(&[1], 0, &[0]);
        assert!(matches!(
            ForwardBatch::build(&[one_table], limits, Device::Cpu).err(),
            Some(BatchError::WrongGroupCount {
                got: 1,
                expected: 2,
                ..
            })
        ));
    }

    #[test]
    fn refuses_bad_inputs() {
        let err = |c: SequenceChunk| ForwardBatch::build(&[c], LIMITS, Device::Cpu).err();
        assert!(matches!(
            err(chunk(&[100], 0, &[0])),
            Some(BatchError::TokenOutOfRange { .. })
        ));
        assert!(matches!(
            err(chunk(&[1; 5], 0, &[0])),
            Some(BatchError::BlockTableTooShort { .. })
        ));
        assert!(matches!(
            err(chunk(&[1], 0, &[8])),
            Some(BatchError::BlockOutOfRange { .. })
        ));
        assert!(matches!(
            err(chunk(&[], 0, &[0])),
            Some(BatchError::EmptyChunk { .. })
        ));
        assert!(matches!(
            err(chunk(&[1], 64, &[0; 17])),
            Some(BatchError::TooLong { .. })
        ));
    }
}
