//! Rotary position embeddings as HF's Llama applies them (rotate the two
//! halves of each head), with llama3 frequency-dependent scaling.

use model_files::{ModelConfig, RopeScaling};
use tch::{Device, Kind, TchError, Tensor};

/// Inverse frequencies for one head dimension; applied per position.
pub struct RotaryEmbedding {
    /// `[head_dim / 2]`, f32.
    inv_freq: Tensor,
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
        }
    }

    /// The tables [`Self::apply`] takes for `positions` `[T]`, once per
    /// step for every layer: `cos` and a signed `sin` (`[-sin, sin]` over
    /// the two halves), each `[T, 1, head_dim]` in `kind`.
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> Result<(Tensor, Tensor), TchError> {
        let freqs = positions
            .f_to_kind(Kind::Float)?
            .f_unsqueeze(-1)?
            .f_mul(&self.inv_freq.f_unsqueeze(0)?)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        let sin = freqs.f_sin()?;
        let signed_sin = Tensor::f_cat(&[&sin.f_neg()?, &sin], -1)?;
        Ok((
            emb.f_cos()?.f_to_kind(kind)?.f_unsqueeze(1)?,
            signed_sin.f_to_kind(kind)?.f_unsqueeze(1)?,
        ))
    }

    /// Rotates `x` `[T, heads, head_dim]` as HF's `x * cos + rotate_half(x)
    /// * sin`, in three kernels: swapping the halves is a flip of
    /// `[.., 2, half]`, and the signed sine supplies rotate_half's minus.
    pub fn apply(x: &Tensor, cos: &Tensor, signed_sin: &Tensor) -> Result<Tensor, TchError> {
        let size = x.size();
        let half = size.last().copied().unwrap_or(0) / 2;
        let swapped = x
            .f_reshape([size[0], size[1], 2, half])?
            .f_flip([2])?
            .f_view([size[0], size[1], 2 * half])?;
        x.f_mul(cos)?.f_addcmul(&swapped, signed_sin)
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
