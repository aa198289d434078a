//! Turns logits into next tokens, on the device that holds them.
//!
//! Greedy is argmax. Random sampling uses the exponential race (as vLLM
//! does): with `q ~ Exp(1)` per token, `argmax(p / q)` is a draw from `p`.
//! The noise comes from a per-request seeded RNG, so the same seed gives
//! the same tokens whatever else is in the batch.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{Kind, Tensor};

/// How one request picks its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    /// Keep the `top_k` most likely tokens; 0 or less keeps all.
    pub top_k: i64,
    /// Keep the smallest set whose probability reaches `top_p`; 1.0 keeps all.
    pub top_p: f64,
}

impl SamplingParams {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        }
    }

    /// Whether this picks the argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// A request's sampling state: its parameters and its RNG.
pub struct SequenceSampler {
    params: SamplingParams,
    rng: StdRng,
}

impl SequenceSampler {
    /// `seed` fixes the draws; without one the RNG is seeded from the OS.
    pub fn new(params: SamplingParams, seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Self { params, rng }
    }

    /// Picks a token from `logits` `[vocab]` (f32).
    pub fn sample(&mut self, logits: &Tensor) -> u32 {
        if self.params.is_greedy() {
            return logits.argmax(-1, false).int64_value(&[]) as u32;
        }
        let vocab = logits.size()[0];
        let mut scaled = logits / self.params.temperature;
        if self.params.top_k > 0 && self.params.top_k < vocab {
            let (top, _) = scaled.topk(self.params.top_k, -1, true, true);
            let threshold = top.get(self.params.top_k - 1);
            scaled = scaled.masked_fill(&scaled.lt_tensor(&threshold), f64::NEG_INFINITY);
        }
        let mut probs = scaled.softmax(-1, Kind::Float);
        if self.params.top_p < 1.0 {
            let (sorted, idx) = probs.sort(-1, true);
            let cumulative = sorted.cumsum(-1, Kind::Float);
            // Drop a token when the mass before it already reaches top_p.
            let drop_sorted = (cumulative - &sorted).ge(self.params.top_p);
            let drop = drop_sorted.scatter(-1, &idx, &drop_sorted);
            probs = probs.masked_fill(&drop, 0.0);
        }
        let noise: Vec<f32> = (0..vocab)
            .map(|_| -(1.0 - self.rng.random::<f32>()).ln())
            .collect();
        let noise = Tensor::from_slice(&noise).to_device(logits.device());
        (probs / noise).argmax(-1, false).int64_value(&[]) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Tensor {
        Tensor::from_slice(&[0.1f32, 2.0, 0.5, 1.9, -1.0])
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = SequenceSampler::new(SamplingParams::greedy(), None);
        assert_eq!(s.sample(&logits()), 1);
    }

    #[test]
    fn same_seed_same_draws() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        };
        let draw = |seed| {
            let mut s = SequenceSampler::new(p.clone(), Some(seed));
            (0..20).map(|_| s.sample(&logits())).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_support() {
        let mut s = SequenceSampler::new(
            SamplingParams {
                temperature: 1.0,
                top_k: 2,
                top_p: 1.0,
            },
            Some(1),
        );
        assert!((0..50).all(|_| matches!(s.sample(&logits()), 1 | 3)));
        let mut s = SequenceSampler::new(
            SamplingParams {
                temperature: 1.0,
                top_k: 0,
                top_p: 0.3,
            },
            Some(1),
        );
        assert!((0..50).all(|_| s.sample(&logits()) == 1));
    }
}
