//! Turns logits into next tokens, batched over the rows `[N, vocab]` on the
//! device that holds them (vLLM v1's `Sampler`, in the same order):
//!
//! 1. raw log-probabilities (`log_softmax` of the model output, before any
//!    processing: vLLM v1's default `logprobs_mode = raw_logprobs`);
//! 2. penalties: repetition (HF/vLLM: over prompt and output tokens, a
//!    positive logit is divided by it, a negative one multiplied), then
//!    OpenAI presence and frequency over output tokens;
//! 3. greedy rows (temperature 0) take the argmax here;
//! 4. temperature, min_p, top_k, top_p, then the exponential race: with
//!    `q ~ Exp(1)` per token, `argmax(p / q)` is a draw from `p`.
//!
//! A seeded request's noise comes from a Rust RNG seeded by
//! `(seed, number of output tokens so far)`, so neither preemption and
//! resume nor what else shares the batch changes its draws. Unseeded rows
//! take torch's generator, seeded from the OS when the sampler is made.

use std::collections::HashMap;

pub use proto::sampling::MIN_TEMPERATURE;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

/// How one request picks its tokens (OpenAI / vLLM semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f64,
    /// Keep the `top_k` most likely tokens; 0 or less keeps all.
    pub top_k: i64,
    /// Keep the smallest set whose probability reaches `top_p`; 1.0 keeps all.
    pub top_p: f64,
    /// Drop tokens below `min_p` times the top probability; 0 disables.
    pub min_p: f64,
    /// OpenAI presence penalty over output tokens; 0 disables.
    pub presence_penalty: f64,
    /// OpenAI frequency penalty over output tokens; 0 disables.
    pub frequency_penalty: f64,
    /// Multiplicative penalty over prompt and output tokens; 1 disables.
    pub repetition_penalty: f64,
    /// Fixes the draws; `None` is random.
    pub seed: Option<u64>,
    /// How many top log-probabilities to return per token; `None`: none.
    pub logprobs: Option<u32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplingParams {
    /// Argmax decoding, no penalties.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            seed: None,
            logprobs: None,
        }
    }

    /// From the wire form, checked as [`proto::sampling::check`] defines
    /// (proto3 zeros are unset: `top_p` and `repetition_penalty` 0 read as
    /// 1). The error names the field.
    pub fn from_proto(p: &proto::worker::SamplingParams) -> Result<Self, String> {
        proto::sampling::check(p)?;
        Ok(Self {
            temperature: f64::from(p.temperature),
            top_k: i64::from(p.top_k),
            top_p: f64::from(proto::sampling::top_p(p)),
            min_p: f64::from(p.min_p),
            presence_penalty: f64::from(p.presence_penalty),
            frequency_penalty: f64::from(p.frequency_penalty),
            repetition_penalty: f64::from(proto::sampling::repetition_penalty(p)),
            seed: p.seed,
            logprobs: p.logprobs,
        })
    }

    /// Whether this picks the argmax: temperature below
    /// [`MIN_TEMPERATURE`] (as vLLM's `_SAMPLING_EPS`; dividing logits by
    /// a subnormal such as 1e-40 gives infinities and NaN probabilities)
    /// or `top_k` 1.
    pub fn is_greedy(&self) -> bool {
        self.temperature < MIN_TEMPERATURE || self.top_k == 1
    }

    fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
    }
}

/// One row of the logits: the request it samples for.
#[derive(Debug, Clone, Copy)]
pub struct SamplerRow<'a> {
    pub params: &'a SamplingParams,
    /// Prompt then output tokens so far.
    pub token_ids: &'a [u32],
    /// How many of `token_ids` are the prompt.
    pub num_prompt_tokens: usize,
    /// The tokens a structured output allows (bit `t % 32` of word
    /// `t / 32`, `RequestBitmask.allowed_token_bitmask`); `None`: all.
    pub allowed: Option<&'a [u32]>,
}

impl SamplerRow<'_> {
    fn output_tokens(&self) -> &[u32] {
        self.token_ids
            .get(self.num_prompt_tokens..)
            .unwrap_or_default()
    }
}

/// Log-probabilities of one sampled token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// Raw log-probability of the sampled token.
    pub logprob: f32,
    /// 1-based rank of the sampled token in the vocabulary.
    pub rank: u32,
    /// The most likely tokens, best first, and their log-probabilities.
    pub top_token_ids: Vec<u32>,
    pub top_logprobs: Vec<f32>,
}

/// What one row drew.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledToken {
    pub token: u32,
    /// Set when the request asked for logprobs.
    pub logprobs: Option<TokenLogprobs>,
}

/// Why a batch could not be sampled.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error("an allowed-token bitmask has {words} words; a vocabulary of {vocab} needs {needed}")]
    Bitmask {
        words: usize,
        vocab: usize,
        needed: usize,
    },
    #[error("logits have shape {shape:?}, expected [{rows}, vocab]")]
    Shape { shape: Vec<i64>, rows: usize },
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The batched sampler. Holds only the OS-seeded state for unseeded rows.
pub struct Sampler {
    _private: (),
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

/// `[rows, vocab]` true where a row's bitmask leaves a token out (rows
/// without one allow every token). The words are unpacked on the device:
/// shifting each by 0..32 and keeping the low bit.
fn disallowed(rows: &[SamplerRow<'_>], vocab: i64, device: Device) -> Result<Tensor, SamplerError> {
    let vocab_len = vocab as usize;
    let needed = vocab_len.div_ceil(32);
    let mut words: Vec<i32> = Vec::with_capacity(rows.len() * needed);
    for row in rows {
        match row.allowed {
            Some(mask) if mask.len() >= needed => {
                // Bit patterns as i32: the shifts below keep one bit each.
                words.extend(mask[..needed].iter().map(|&w| w as i32));
            }
            Some(mask) => {
                return Err(SamplerError::Bitmask {
                    words: mask.len(),
                    vocab: vocab_len,
                    needed,
                })
            }
            None => words.extend(std::iter::repeat_n(-1, needed)),
        }
    }
    let words =
        Tensor::from_slice(&words)
            .to_device(device)
            .view([rows.len() as i64, needed as i64, 1]);
    let shifts = Tensor::arange(32, (Kind::Int, device));
    let bits = words.f_bitwise_right_shift(&shifts)?.bitwise_and(1);
    Ok(bits
        .view([rows.len() as i64, needed as i64 * 32])
        .narrow(1, 0, vocab)
        .eq(0))
}

/// SplitMix64 finaliser: a stable mix of (seed, position) into a seed.
fn mix(seed: u64, position: u64) -> u64 {
    let mut z = seed ^ position.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `Exp(1)` noise for a seeded request at output position `position`.
fn seeded_noise(seed: u64, position: u64, vocab: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(mix(seed, position));
    (0..vocab)
        .map(|_| -(1.0 - rng.random::<f32>()).ln().min(-f32::MIN_POSITIVE))
        .collect()
}

impl Sampler {
    /// Seeds torch's generator (used for unseeded rows) from the OS. Make
    /// the sampler after loading weights: dummy weights reseed torch.
    pub fn new() -> Self {
        let seed: u64 = rand::rng().random();
        tch::manual_seed((seed >> 1) as i64);
        Self { _private: () }
    }

    /// Samples one token per row of `logits` `[rows.len(), vocab]`.
    pub fn sample(
        &mut self,
        logits: &Tensor,
        rows: &[SamplerRow<'_>],
    ) -> Result<Vec<SampledToken>, SamplerError> {
        let shape = logits.size();
        let (n, vocab) = match shape[..] {
            [n, v] if n as usize == rows.len() && v > 0 => (n, v),
            _ => {
                return Err(SamplerError::Shape {
                    shape,
                    rows: rows.len(),
                })
            }
        };
        if n == 0 {
            return Ok(Vec::new());
        }
        let _guard = tch::no_grad_guard();
        let device = logits.device();
        let mut logits = logits.f_to_kind(Kind::Float)?;
        if rows.iter().any(|r| r.allowed.is_some()) {
            logits = logits.masked_fill(&disallowed(rows, vocab, device)?, f64::NEG_INFINITY);
        }
        let raw_logprobs = rows
            .iter()
            .any(|r| r.params.logprobs.is_some())
            .then(|| logits.log_softmax(-1, Kind::Float));

        if rows.iter().any(|r| r.params.has_penalties()) {
            logits = logits.copy();
            for (i, row) in rows.iter().enumerate() {
                if row.params.has_penalties() {
                    apply_penalties(&logits.get(i as i64), row, vocab, device)?;
                }
            }
        }

        let greedy = logits.argmax(-1, false);
        let tokens = if rows.iter().all(|r| r.params.is_greedy()) {
            greedy
        } else {
            let random = self.sample_random(&logits, rows, vocab, device)?;
            let is_greedy: Vec<bool> = rows.iter().map(|r| r.params.is_greedy()).collect();
            let mask = Tensor::from_slice(&is_greedy).to_device(device);
            greedy.where_self(&mask, &random)
        };
        let token_vec = Vec::<i64>::try_from(&tokens.to_device(Device::Cpu))?;

        let mut logprobs: Vec<Option<TokenLogprobs>> = vec![None; rows.len()];
        if let Some(raw) = raw_logprobs {
            let picked = tokens.unsqueeze(1);
            let lp = raw.gather(1, &picked, false);
            let rank = raw.gt_tensor(&lp).sum_dim_intlist(1, false, Kind::Int64) + 1;
            let k_max = rows
                .iter()
                .filter_map(|r| r.params.logprobs)
                .max()
                .map_or(0, |k| i64::from(k).min(vocab));
            let lp = Vec::<f32>::try_from(&lp.squeeze_dim(1).to_device(Device::Cpu))?;
            let rank = Vec::<i64>::try_from(&rank.to_device(Device::Cpu))?;
            let (top_vals, top_ids) = if k_max > 0 {
                let (v, ids) = raw.topk(k_max, -1, true, true);
                (
                    Vec::<f32>::try_from(&v.reshape([-1]).to_device(Device::Cpu))?,
                    Vec::<i64>::try_from(&ids.reshape([-1]).to_device(Device::Cpu))?,
                )
            } else {
                (Vec::new(), Vec::new())
            };
            let k_max = k_max as usize;
            for (i, row) in rows.iter().enumerate() {
                let Some(k) = row.params.logprobs else {
                    continue;
                };
                let k = (k as usize).min(k_max);
                let start = i * k_max;
                logprobs[i] = Some(TokenLogprobs {
                    logprob: lp[i],
                    rank: rank[i] as u32,
                    top_token_ids: top_ids[start..start + k]
                        .iter()
                        .map(|&t| t as u32)
                        .collect(),
                    top_logprobs: top_vals[start..start + k].to_vec(),
                });
            }
        }
        Ok(token_vec
            .into_iter()
            .zip(logprobs)
            .map(|(t, logprobs)| SampledToken {
                token: t as u32,
                logprobs,
            })
            .collect())
    }

    /// Temperature, min_p, top_k, top_p and the exponential race for every
    /// row (greedy rows get temperature 1 and are overridden by the caller).
    fn sample_random(
        &mut self,
        logits: &Tensor,
        rows: &[SamplerRow<'_>],
        vocab: i64,
        device: Device,
    ) -> Result<Tensor, SamplerError> {
        let n = rows.len() as i64;
        let column = |f: &dyn Fn(&SamplingParams) -> f32| {
            let v: Vec<f32> = rows.iter().map(|r| f(r.params)).collect();
            Tensor::from_slice(&v).to_device(device).view([n, 1])
        };
        let temps = column(&|p| {
            if p.is_greedy() {
                1.0
            } else {
                p.temperature as f32
            }
        });
        let mut scaled = logits / temps;

        if rows.iter().any(|r| r.params.min_p > 0.0) {
            let min_p = column(&|p| p.min_p as f32);
            let probs = scaled.softmax(-1, Kind::Float);
            let (top, _) = probs.max_dim(-1, true);
            let drop = probs.lt_tensor(&(top * min_p));
            scaled = scaled.masked_fill(&drop, f64::NEG_INFINITY);
        }
        if rows
            .iter()
            .any(|r| r.params.top_k > 0 && r.params.top_k < vocab)
        {
            let kth: Vec<i64> = rows
                .iter()
                .map(|r| {
                    let k = r.params.top_k;
                    if k > 0 && k < vocab {
                        k - 1
                    } else {
                        vocab - 1
                    }
                })
                .collect();
            let kth = Tensor::from_slice(&kth).to_device(device).view([n, 1]);
            let (sorted, _) = scaled.sort(-1, true);
            let threshold = sorted.gather(1, &kth, false);
            scaled = scaled.masked_fill(&scaled.lt_tensor(&threshold), f64::NEG_INFINITY);
        }
        if rows.iter().any(|r| r.params.top_p < 1.0) {
            // Disabled rows get 2.0: cumulative mass never reaches it.
            let top_p = column(&|p| if p.top_p < 1.0 { p.top_p as f32 } else { 2.0 });
            let probs = scaled.softmax(-1, Kind::Float);
            let (sorted, idx) = probs.sort(-1, true);
            let before = sorted.cumsum(-1, Kind::Float) - &sorted;
            // Drop a token when the mass before it already reaches top_p.
            let drop_sorted = before.ge_tensor(&top_p);
            let drop = drop_sorted.scatter(-1, &idx, &drop_sorted);
            scaled = scaled.masked_fill(&drop, f64::NEG_INFINITY);
        }
        let probs = scaled.softmax(-1, Kind::Float);

        let mut noise = Tensor::empty([n, vocab], (Kind::Float, device));
        let _ = noise.exponential_(1.0);
        let _ = noise.clamp_min_(f64::from(f32::MIN_POSITIVE));
        let seeded: Vec<(usize, u64, u64)> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.params.is_greedy())
            .filter_map(|(i, r)| {
                r.params
                    .seed
                    .map(|s| (i, s, r.output_tokens().len() as u64))
            })
            .collect();
        if !seeded.is_empty() {
            let mut values = Vec::with_capacity(seeded.len() * vocab as usize);
            for &(_, seed, position) in &seeded {
                values.extend(seeded_noise(seed, position, vocab as usize));
            }
            let index: Vec<i64> = seeded.iter().map(|&(i, _, _)| i as i64).collect();
            let index = Tensor::from_slice(&index).to_device(device);
            let values = Tensor::from_slice(&values)
                .view([seeded.len() as i64, vocab])
                .to_device(device);
            let _ = noise.index_copy_(0, &index, &values);
        }
        Ok((probs / noise).argmax(-1, false))
    }
}

/// Repetition, presence and frequency penalties on one row (a view into
/// the batch's logits, changed in place).
fn apply_penalties(
    row_logits: &Tensor,
    row: &SamplerRow<'_>,
    vocab: i64,
    device: Device,
) -> Result<(), SamplerError> {
    let mut row_logits = row_logits.shallow_clone();
    let in_vocab = |t: &&u32| i64::from(**t) < vocab;
    let p = row.params;
    if p.repetition_penalty != 1.0 {
        let mut seen: Vec<i64> = row
            .token_ids
            .iter()
            .filter(in_vocab)
            .map(|&t| i64::from(t))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        if !seen.is_empty() {
            let idx = Tensor::from_slice(&seen).to_device(device);
            let vals = row_logits.index_select(0, &idx);
            let penalized = (&vals / p.repetition_penalty)
                .where_self(&vals.gt(0.0), &(&vals * p.repetition_penalty));
            let _ = row_logits.f_index_copy_(0, &idx, &penalized)?;
        }
    }
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in row.output_tokens().iter().filter(in_vocab) {
            *counts.entry(t).or_default() += 1;
        }
        if !counts.is_empty() {
            let (ids, amounts): (Vec<i64>, Vec<f32>) = counts
                .into_iter()
                .map(|(t, c)| {
                    let penalty = p.frequency_penalty * f64::from(c) + p.presence_penalty;
                    (i64::from(t), penalty as f32)
                })
                .unzip();
            let idx = Tensor::from_slice(&ids).to_device(device);
            let amounts = Tensor::from_slice(&amounts).to_device(device);
            let vals = row_logits.index_select(0, &idx) - amounts;
            let _ = row_logits.f_index_copy_(0, &idx, &vals)?;
        }
    }
    Ok(())
}

/// One sequence sampled alone (`engine generate`): tracks its own output
/// so penalties and seeded positions work as in the batched path.
pub struct SequenceSampler {
    params: SamplingParams,
    sampler: Sampler,
    output: Vec<u32>,
}

impl SequenceSampler {
    /// `seed` fixes the draws (it overrides `params.seed`); without one the
    /// draws are random.
    pub fn new(mut params: SamplingParams, seed: Option<u64>) -> Self {
        if seed.is_some() {
            params.seed = seed;
        }
        Self {
            params,
            sampler: Sampler::new(),
            output: Vec::new(),
        }
    }

    /// Picks a token from `logits` `[vocab]` (f32).
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32, SamplerError> {
        let row = SamplerRow {
            params: &self.params,
            token_ids: &self.output,
            num_prompt_tokens: 0,
            allowed: None,
        };
        let drawn = self.sampler.sample(&logits.unsqueeze(0), &[row])?;
        let token = drawn.first().map_or(0, |d| d.token);
        self.output.push(token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Tensor {
        Tensor::from_slice(&[0.1f32, 2.0, 0.5, 1.9, -1.0])
    }

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            temperature: 1.0,
            ..SamplingParams::greedy()
        };
        f(&mut p);
        p
    }

    /// Draws `times` tokens for one row over `logits`, each at a new output
    /// position (so seeded rows see fresh noise).
    fn draws(p: &SamplingParams, logits: &Tensor, history: &[u32], times: usize) -> Vec<u32> {
        let mut s = Sampler::new();
        let mut tokens = history.to_vec();
        (0..times)
            .map(|_| {
                let row = SamplerRow {
                    params: p,
                    token_ids: &tokens,
                    num_prompt_tokens: history.len(),
                    allowed: None,
                };
                let t = s.sample(&logits.unsqueeze(0), &[row]).unwrap()[0].token;
                tokens.push(t);
                t
            })
            .collect()
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = SequenceSampler::new(SamplingParams::greedy(), None);
        assert_eq!(s.sample(&logits()).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_draws() {
        let draw = |seed| {
            let mut s = SequenceSampler::new(params(|_| {}), Some(seed));
            (0..20)
                .map(|_| s.sample(&logits()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn seeded_row_ignores_batch_composition() {
        let seeded = params(|p| p.seed = Some(42));
        let other = params(|_| {});
        let history = [3u32, 1, 4];
        let mut s = Sampler::new();
        let alone = s
            .sample(
                &logits().unsqueeze(0),
                &[SamplerRow {
                    params: &seeded,
                    token_ids: &history,
                    num_prompt_tokens: 1,
                    allowed: None,
                }],
            )
            .unwrap();
        for _ in 0..10 {
            let batch = Tensor::stack(&[logits(), logits().flip([0]), logits()], 0);
            let rows = [
                SamplerRow {
                    params: &other,
                    token_ids: &[],
                    num_prompt_tokens: 0,
                    allowed: None,
                },
                SamplerRow {
                    params: &seeded,
                    token_ids: &history,
                    num_prompt_tokens: 1,
                    allowed: None,
                },
                SamplerRow {
                    params: &other,
                    token_ids: &[],
                    num_prompt_tokens: 0,
                    allowed: None,
                },
            ];
            let out = s.sample(&batch, &rows).unwrap();
            assert_eq!(out[1], alone[0]);
        }
    }

    #[test]
    fn top_k_restricts_support() {
        let p = params(|p| p.top_k = 2);
        assert!(draws(&p, &logits(), &[], 100)
            .iter()
            .all(|t| matches!(t, 1 | 3)));
    }

    #[test]
    fn top_p_restricts_support() {
        // softmax: p(1) ~ 0.43, p(3) ~ 0.39: 0.3 keeps only token 1, 0.6
        // keeps 1 and 3.
        let p = params(|p| p.top_p = 0.3);
        assert!(draws(&p, &logits(), &[], 100).iter().all(|&t| t == 1));
        let p = params(|p| p.top_p = 0.6);
        let d = draws(&p, &logits(), &[], 200);
        assert!(d.iter().all(|t| matches!(t, 1 | 3)));
        assert!(d.contains(&1) && d.contains(&3));
    }

    #[test]
    fn min_p_restricts_support() {
        // p(3)/p(1) = e^-0.1 ~ 0.90; p(2)/p(1) = e^-1.5 ~ 0.22.
        let p = params(|p| p.min_p = 0.5);
        let d = draws(&p, &logits(), &[], 200);
        assert!(d.iter().all(|t| matches!(t, 1 | 3)));
        let p = params(|p| p.min_p = 0.1);
        assert!(draws(&p, &logits(), &[], 400).contains(&2));
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let count = |temp: f64, token: u32| {
            let p = params(|p| p.temperature = temp);
            draws(&p, &logits(), &[], 400)
                .iter()
                .filter(|&&t| t == token)
                .count()
        };
        // Near 0 it is (almost) greedy; very hot it is near uniform.
        assert!(count(0.01, 1) > 390);
        assert!(count(100.0, 4) > 40);
        // Temperature 0 is greedy exactly, and so is anything below 1e-5,
        // subnormals included (1e-40 used to give NaN probabilities).
        for temp in [0.0, 1e-40, f64::from(f32::MIN_POSITIVE) / 2.0, 1e-6, 9.9e-6] {
            let p = params(|p| p.temperature = temp);
            assert!(p.is_greedy(), "{temp}");
            assert!(
                draws(&p, &logits(), &[], 20).iter().all(|&t| t == 1),
                "{temp}"
            );
        }
        assert!(!params(|p| p.temperature = 1e-5).is_greedy());
    }

    #[test]
    fn repetition_penalty_divides_positive_multiplies_negative() {
        // Token 1 (2.0) seen in the prompt: 2.0 / 2 = 1.0 < 1.9, so greedy
        // moves to 3.
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        assert_eq!(draws(&p, &logits(), &[1], 1), vec![3]);
        // Negative logits are pushed further down (multiplied).
        let neg = Tensor::from_slice(&[-1.0f32, -1.5, -3.0]);
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        // token 0: -1 * 2 = -2 < -1.5.
        assert_eq!(draws(&p, &neg, &[0], 1), vec![1]);
    }

    #[test]
    fn presence_and_frequency_penalties_count_output_only() {
        let p = SamplingParams {
            presence_penalty: 0.15,
            ..SamplingParams::greedy()
        };
        // Token 1 in the prompt only: no effect.
        assert_eq!(draws(&p, &logits(), &[1], 1), vec![1]);
        // Token 1 once in the output: 2.0 - 0.15 < 1.9.
        let row_tokens = [0u32, 1];
        let mut s = Sampler::new();
        let out = s
            .sample(
                &logits().unsqueeze(0),
                &[SamplerRow {
                    params: &p,
                    token_ids: &row_tokens,
                    num_prompt_tokens: 1,
                    allowed: None,
                }],
            )
            .unwrap();
        assert_eq!(out[0].token, 3);
        // Frequency scales with the count: 2.0 - 3 * 0.04 = 1.88 < 1.9,
        // but 2.0 - 2 * 0.04 = 1.92 is still the max.
        let p = SamplingParams {
            frequency_penalty: 0.04,
            ..SamplingParams::greedy()
        };
        let run = |tokens: &[u32]| {
            Sampler::new()
                .sample(
                    &logits().unsqueeze(0),
                    &[SamplerRow {
                        params: &p,
                        token_ids: tokens,
                        num_prompt_tokens: 0,
                        allowed: None,
                    }],
                )
                .unwrap()[0]
                .token
        };
        assert_eq!(run(&[1, 1]), 1);
        assert_eq!(run(&[1, 1, 1]), 3);
    }

    #[test]
    fn logprobs_are_raw_with_rank_and_top() {
        let p = SamplingParams {
            logprobs: Some(2),
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        let mut s = Sampler::new();
        let out = s
            .sample(
                &logits().unsqueeze(0),
                &[SamplerRow {
                    params: &p,
                    token_ids: &[1],
                    num_prompt_tokens: 1,
                    allowed: None,
                }],
            )
            .unwrap();
        let raw = Vec::<f32>::try_from(&logits().log_softmax(-1, Kind::Float)).unwrap();
        let lp = out[0].logprobs.clone().unwrap();
        // The penalty moved the pick to token 3 (rank 2 in the raw output).
        assert_eq!(out[0].token, 3);
        assert!((lp.logprob - raw[3]).abs() < 1e-6);
        assert_eq!(lp.rank, 2);
        assert_eq!(lp.top_token_ids, vec![1, 3]);
        assert!((lp.top_logprobs[0] - raw[1]).abs() < 1e-6);
        // logprobs = 0: the sampled token only.
        let p = SamplingParams {
            logprobs: Some(0),
            ..SamplingParams::greedy()
        };
        let out = s
            .sample(
                &logits().unsqueeze(0),
                &[SamplerRow {
                    params: &p,
                    token_ids: &[],
                    num_prompt_tokens: 0,
                    allowed: None,
                }],
            )
            .unwrap();
        let lp = out[0].logprobs.clone().unwrap();
        assert_eq!((lp.rank, lp.top_token_ids.len()), (1, 0));
    }

    #[test]
    fn bad_shapes_and_params_are_errors() {
        let mut s = Sampler::new();
        let p = SamplingParams::greedy();
        let row = SamplerRow {
            params: &p,
            token_ids: &[],
            num_prompt_tokens: 0,
            allowed: None,
        };
        assert!(s.sample(&logits(), &[row]).is_err());
        assert!(s.sample(&logits().unsqueeze(0), &[row, row]).is_err());
    }

    #[test]
    fn a_bitmask_keeps_only_its_tokens_greedy_or_random() {
        // Allowed: tokens 0 and 2 (not the argmax, 1 or 3).
        let mask = [0b0101u32];
        let greedy = SamplingParams::greedy();
        let random = params(|p| p.temperature = 5.0);
        let mut s = Sampler::new();
        let row = |params| SamplerRow {
            params,
            token_ids: &[],
            num_prompt_tokens: 0,
            allowed: Some(&mask),
        };
        let free = SamplerRow {
            allowed: None,
            ..row(&greedy)
        };
        let batch = Tensor::stack(&[logits(), logits(), logits()], 0);
        for _ in 0..50 {
            let out = s
                .sample(&batch, &[row(&greedy), row(&random), free])
                .unwrap();
            assert_eq!(out[0].token, 2, "the best allowed token");
            assert!(matches!(out[1].token, 0 | 2), "{}", out[1].token);
            assert_eq!(out[2].token, 1, "an unmasked row is untouched");
        }
        // Logprobs are those of the masked logits, as in vLLM.
        let with_lp = SamplingParams {
            logprobs: Some(1),
            ..SamplingParams::greedy()
        };
        let out = s.sample(&logits().unsqueeze(0), &[row(&with_lp)]).unwrap();
        let lp = out[0].logprobs.clone().unwrap();
        assert_eq!(lp.top_token_ids, vec![2]);
        assert!(lp.logprob > -1.0 && lp.logprob < 0.0, "{}", lp.logprob);
        // A bitmask shorter than the vocabulary is an error, not a guess.
        let short: [u32; 0] = [];
        let bad = SamplerRow {
            allowed: Some(&short),
            ..row(&greedy)
        };
        assert!(matches!(
            s.sample(&logits().unsqueeze(0), &[bad]),
            Err(SamplerError::Bitmask { .. })
        ));
    }
}
