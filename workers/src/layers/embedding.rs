//! Vocab-parallel embedding and LM head: each rank holds a contiguous slice
//! of the vocabulary.

use tch::{Kind, Tensor};

use super::linear::{dense_weight, load_weight, Feeds};
use super::linear_weight::LinearWeight;
use super::ForwardError;
use crate::parallel::TpGroup;
use crate::weights::{Shard, WeightError, Weights};

/// Token embedding table `[vocab, hidden]`, split by vocabulary rows.
pub struct VocabParallelEmbedding {
    weight: Tensor,
    vocab_start: i64,
    vocab_per_rank: i64,
    tp: TpGroup,
}

impl VocabParallelEmbedding {
    /// Loads `name` of shape `[vocab_size, hidden]`.
    pub fn load(
        weights: &Weights,
        name: &str,
        vocab_size: i64,
        hidden: i64,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let shard = Shard {
            dim: 0,
            rank: tp.rank,
            world_size: tp.world_size,
        };
        let weight = weights.get(name, &[vocab_size, hidden], Some(shard))?;
        let vocab_per_rank = vocab_size / tp.world_size as i64;
        Ok(Self {
            weight,
            vocab_start: vocab_per_rank * tp.rank as i64,
            vocab_per_rank,
            tp: tp.clone(),
        })
    }

    /// Rows for `ids` (`[T]` int64), `[T, hidden]`. Ids outside this rank's
    /// slice contribute zeros; the all-reduce fills them in from their rank.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor, ForwardError> {
        if self.tp.skips_collectives() {
            return Ok(self.weight.f_index_select(0, ids)?);
        }
        let local = ids.f_sub_scalar(self.vocab_start)?;
        let mask = local
            .f_ge(0)?
            .f_logical_and(&local.f_lt(self.vocab_per_rank)?)?;
        let safe = local.f_where_self(&mask, &local.f_zeros_like()?)?;
        let rows = self
            .weight
            .f_index_select(0, &safe)?
            .f_mul(&mask.f_unsqueeze(-1)?.f_to_kind(self.weight.kind())?)?;
        Ok(self.tp.comm.all_reduce_sum(&rows)?)
    }

    /// The table itself, for a tied LM head.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
}

/// Output projection to vocabulary logits, split by vocabulary rows; the
/// full logits are gathered so rank 0 can sample.
pub struct ParallelLmHead {
    weight: LinearWeight,
    tp: TpGroup,
}

impl ParallelLmHead {
    /// Loads an untied head `name` of shape `[vocab_size, hidden]`.
    pub fn load(
        weights: &Weights,
        name: &str,
        vocab_size: i64,
        hidden: i64,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let shard = Shard {
            dim: 0,
            rank: tp.rank,
            world_size: tp.world_size,
        };
        Ok(Self {
            weight: load_weight(weights, &[(name, vocab_size, shard)], hidden, Feeds::Logits)?,
            tp: tp.clone(),
        })
    }

    /// Shares the embedding table `name` (tied embeddings); with int8
    /// quantization, the head holds its own int8 copy.
    pub fn tied(
        embedding: &VocabParallelEmbedding,
        weights: &Weights,
        name: &str,
        tp: &TpGroup,
    ) -> Result<Self, WeightError> {
        let weight = dense_weight(
            weights,
            &[name],
            embedding.weight().shallow_clone(),
            Feeds::Logits,
        )
        .map_err(|source| WeightError::Torch {
            file: weights.file(),
            tensor: name.to_string(),
            source,
        })?;
        Ok(Self {
            weight,
            tp: tp.clone(),
        })
    }

    /// Full-vocabulary logits in f32, `[N, vocab]`, on every rank.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor, ForwardError> {
        let local = self.weight.matmul(hidden)?.f_to_kind(Kind::Float)?;
        if self.tp.skips_collectives() {
            Ok(local)
        } else {
            Ok(self.tp.comm.all_gather(&local, -1)?)
        }
    }
}
