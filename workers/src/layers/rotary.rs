//! Rotary position embeddings as HF applies them, with llama3
//! frequency-dependent scaling: Llama-shaped models rotate the two halves
//! of each head (`rotate_half`), Llama 4 rotates adjacent pairs (its
//! complex-number form, `view_as_complex`).

use model_files::{ModelConfig, RopeScaling};
use tch::{Device, Kind, TchError, Tensor};

/// Inverse frequencies for one head dimension; applied per position.
pub struct RotaryEmbedding {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor,
    /// Pairs `(x[2i], x[2i+1])` rather than `(x[i], x[i + d/2])`.
    interleaved: bool,
}

/// One step's rotary tables, built once and applied by every layer.
pub struct RopeTables {
    /// `[T, 1, head_dim]`: each pair's cosine at both of its places.
    cos: Tensor,
    /// `[T, 1, head_dim]`: each pair's sine, negated at its first place.
    signed_sin: Tensor,
    interleaved: bool,
}

impl RotaryEmbedding {
    /// Builds the frequencies for `config` on `device`.
    pub fn new(config: &ModelConfig, device: Device) -> Self {
        let dim = config.head_dim();
        let base = config.rope_theta;
        let mut inv: Vec<f32> = (0..dim / 2)
            .map(|i| {
                // As HF: arange(0, dim, 2).float() / dim, then base ** that, in f32.
                let exponent = (2 * i) as f32 / dim as f32;
                1.0 / (base as f32).powf(exponent)
            })
            .collect();
        if let Some(scaling) = &config.rope_scaling {
            if scaling.rope_type == "llama3" {
                apply_llama3_scaling(&mut inv, scaling);
            }
        }
        Self {
            inv_freq: Tensor::from_slice(&inv).to_device(device),
            interleaved: config.rope_interleaved(),
        }
    }

    /// The tables for `positions` `[T]`, in `kind`.
    pub fn tables(&self, positions: &Tensor, kind: Kind) -> Result<RopeTables, TchError> {
        let freqs = positions
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq.f_unsqueeze(0)?)?;
        let (cos, sin) = (freqs.f_cos()?, freqs.f_sin()?);
        let (cos, signed_sin) = if self.interleaved {
            // [c0, c0, c1, c1, ...] and [-s0, s0, -s1, s1, ...]
            let pairs = |a: &Tensor, b: &Tensor| -> Result<Tensor, TchError> {
                Tensor::f_stack(&[a, b], -1)?.f_flatten(-2, -1)
            };
            (pairs(&cos, &cos)?, pairs(&sin.f_neg()?, &sin)?)
        } else {
            // [c0, c1, ..., c0, c1, ...] and [-s0, -s1, ..., s0, s1, ...]
            (
                Tensor::f_cat(&[&cos, &cos], -1)?,
                Tensor::f_cat(&[&sin.f_neg()?, &sin], -1)?,
            )
        };
        Ok(RopeTables {
            cos: cos.f_to_kind(kind)?.f_unsqueeze(1)?,
            signed_sin: signed_sin.f_to_kind(kind)?.f_unsqueeze(1)?,
            interleaved: self.interleaved,
        })
    }
}

impl RopeTables {
    /// Rotates `x` `[T, heads, head_dim]`: `x * cos + partner(x) *
    /// signed_sin`, where a value's partner is the other member of its
    /// pair (a flip of `[.., 2, half]` for halves, of `[.., half, 2]` for
    /// adjacent pairs); the signed sine supplies the rotation's minus.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor, TchError> {
        let size = x.size();
        let half = size.last().copied().unwrap_or(0) / 2;
        let (pairs_shape, flip_dim) = if self.interleaved {
            ([size[0], size[1], half, 2], 3)
        } else {
            ([size[0], size[1], 2, half], 2)
        };
        let partner =
            x.f_reshape(pairs_shape)?
                .f_flip([flip_dim])?
                .f_view([size[0], size[1], 2 * half])?;
        x.f_mul(&self.cos)?.f_addcmul(&partner, &self.signed_sin)
    }
}

/// Llama 3.1's rope scaling: long wavelengths slowed by `factor`, short ones
/// kept, the band between interpolated (HF's `_compute_llama3_parameters`).
fn apply_llama3_scaling(inv_freq: &mut [f32], s: &RopeScaling) {
    let factor = s.factor as f32;
    let low = s.low_freq_factor as f32;
    let high = s.high_freq_factor as f32;
    let old_ctx = s.original_max_position_embeddings as f32;
    let low_freq_wavelen = old_ctx / low;
    let high_freq_wavelen = old_ctx / high;
    for f in inv_freq.iter_mut() {
        let wavelen = 2.0 * std::f32::consts::PI / *f;
        let scaled = if wavelen > low_freq_wavelen {
            *f / factor
        } else {
            *f
        };
        let smooth = (old_ctx / wavelen - low) / (high - low);
        let smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled;
        // wavelen is finite and positive here, so >= and <= are the negations HF writes.
        let is_medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
        *f = if is_medium { smoothed } else { scaled };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both forms against the rotation written out pair by pair.
    #[test]
    fn halves_and_adjacent_pairs_rotate_their_pairs() {
        let (t, h, d) = (3i64, 2i64, 8i64);
        let x = Tensor::randn([t, h, d], (Kind::Float, Device::Cpu));
        let positions = Tensor::from_slice(&[0i64, 5, 17]);
        let inv: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32))
            .collect();
        for interleaved in [false, true] {
            let rope = RotaryEmbedding {
                inv_freq: Tensor::from_slice(&inv),
                interleaved,
            };
            let got = rope
                .tables(&positions, Kind::Float)
                .unwrap()
                .apply(&x)
                .unwrap();
            let want = x.zeros_like();
            for (ti, &p) in [0i64, 5, 17].iter().enumerate() {
                for hi in 0..h {
                    for i in 0..d / 2 {
                        let (a, b) = if interleaved {
                            (2 * i, 2 * i + 1)
                        } else {
                            (i, i + d / 2)
                        };
                        let angle = p as f64 * f64::from(inv[i as usize]);
                        let (xa, xb) = (
                            x.double_value(&[ti as i64, hi, a]),
                            x.double_value(&[ti as i64, hi, b]),
                        );
                        let _ = want
                            .get(ti as i64)
                            .get(hi)
                            .get(a)
                            .fill_(xa * angle.cos() - xb * angle.sin());
                        let _ = want
                            .get(ti as i64)
                            .get(hi)
                            .get(b)
                            .fill_(xa * angle.sin() + xb * angle.cos());
                    }
                }
            }
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "interleaved {interleaved}: max |diff| {diff}");
        }
    }
}
