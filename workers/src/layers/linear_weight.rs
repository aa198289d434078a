//! The forms a linear layer's weight matrix `W` (`[out, in]`) can be held
//! in, and `x W^T` for each, so the layers above never ask which one they
//! have.
//!
//! Quantized forms go through libtorch's CPU kernels for packed weights:
//! `_weight_int4pack_mm_for_cpu` (4-bit values, a scale and zero per group
//! of 32 inputs) and `_weight_int8pack_mm` (int8, a scale per output row).
//! Both take bf16 activations on their fast paths (on an AVX-512 CPU the f32
//! path of the int4 kernel measured some 40x slower), so a quantized product
//! rounds its input to bf16 and widens the result back to the caller's
//! dtype: the one numerical difference from dequantizing, stated in
//! docs/ARCHITECTURE.md.
//!
//! The int4 kernel unpacks its weights again for every row of `x`, so its
//! cost grows with the rows as a dense product's does not: on SmolLM2's
//! shapes (2 AVX-512 cores) it is 2.4x faster than a bf16 GEMM for one
//! row, even at 8, and 1.9x, 2.5x and 2.8x slower at 32, 128 and 512. An
//! int4 matrix therefore also keeps its dequantized values in bf16 (half
//! the memory of f32, read only by products of
//! [`BATCHED_MIN_ROWS`] rows or more: prefill chunks and large decode
//! batches), and one-row decode keeps reading the 4-bit form.

use kernels::q8_matmul::Q8Matrix;
use tch::{Device, Kind, TchError, Tensor};

use crate::weights::Int4Weight;
use model_files::gguf::INT4_GROUP_SIZE;

/// Products of at most this many rows read a logits matrix's int8 copy:
/// measured on SmolLM2's 49152 x 576 head (2 AVX-512 cores), the int8
/// kernel takes 4.4 ms for one row and 7.5 for two, MKL's f32 GEMM 11 and
/// 12; from four rows on the f32 GEMM is faster.
pub const Q8_MAX_ROWS: i64 = 2;

/// Products of this many rows or more read an int4 matrix's bf16 copy.
pub const BATCHED_MIN_ROWS: i64 = 16;

/// The input width torch's int8 kernel handles correctly must be a multiple
/// of this.
pub const INT8_MIN_INPUTS: i64 = 32;

/// A weight matrix in one of the forms the product below knows.
pub enum LinearWeight {
    /// `[out, in]` in the model's dtype.
    Dense(Tensor),
    /// torch's packed int4: `[out, in / 2]` uint8 and `[in / 32, out, 2]`
    /// bf16 (scale, zero) pairs, and the same weights dequantized to bf16
    /// `[out, in]` for products of many rows.
    Int4 {
        packed: Tensor,
        scales_zeros: Tensor,
        batched: Tensor,
    },
    /// `[out, in]` int8 and one bf16 scale per output row.
    Int8 { weight: Tensor, scales: Tensor },
    /// The vocabulary logits of a quantized model on the CPU: f32 `[out,
    /// in]` for products of many rows, and the same weights as int8 blocks
    /// of 32 (Q8_0; exactly the file's values when the file held Q8_0)
    /// for one-row decode, whose product reads a quarter of the bytes and
    /// still returns f32 logits ([`kernels::q8_matmul`]).
    Logits { dense: Tensor, q8: Q8Matrix },
}

impl LinearWeight {
    /// Packs 4-bit values and group scales for the int4 kernel, and
    /// dequantizes them to bf16 for products of many rows: `(q - 8) *
    /// scale + zero` from the same bf16 scales and zeros the kernel reads,
    /// rounded once to bf16.
    pub fn int4(weight: &Int4Weight) -> Result<Self, TchError> {
        let packed = weight
            .values
            .f_to_kind(Kind::Int)?
            .f_internal_convert_weight_to_int4pack_for_cpu(1)?;
        let scales = weight.scales.f_to_kind(Kind::BFloat16)?;
        let zeros = weight.zeros.f_to_kind(Kind::BFloat16)?;
        let scales_zeros = Tensor::f_stack(&[&scales, &zeros], -1)?
            .f_transpose(0, 1)?
            .f_contiguous()?;
        let per_input = |t: &Tensor| {
            t.f_to_kind(Kind::Float)?
                .f_repeat_interleave_self_int(INT4_GROUP_SIZE as i64, 1, None)
        };
        let batched = weight
            .values
            .f_to_kind(Kind::Float)?
            .f_sub_scalar(8.0)?
            .f_mul(&per_input(&scales)?)?
            .f_add(&per_input(&zeros)?)?
            .f_to_kind(Kind::BFloat16)?;
        Ok(Self::Int4 {
            packed,
            scales_zeros,
            batched,
        })
    }

    /// Quantizes `dense` (`[out, in]`) to int8 with one scale per row:
    /// `scale = max |w| / 127`, `q = round(w / scale)`; each weight is off
    /// by at most half its row's scale. A matrix whose `in` is not a
    /// multiple of [`INT8_MIN_INPUTS`] stays dense: torch 2.11's bf16 int8
    /// kernel returns garbage for such widths (measured at 40 inputs).
    pub fn int8(dense: Tensor) -> Result<Self, TchError> {
        if dense
            .size()
            .get(1)
            .is_none_or(|&k| k % INT8_MIN_INPUTS != 0)
        {
            return Ok(Self::Dense(dense));
        }
        let dense = dense.f_to_kind(Kind::Float)?;
        let scales = dense
            .f_abs()?
            .f_amax([1i64].as_slice(), true)?
            .f_clamp_min(f64::from(f32::MIN_POSITIVE))?
            .f_div_scalar(127.0)?;
        let weight = dense
            .f_div(&scales)?
            .f_round()?
            .f_clamp(-127.0, 127.0)?
            .f_to_kind(Kind::Int8)?;
        Ok(Self::Int8 {
            weight,
            scales: scales.f_squeeze_dim(1)?.f_to_kind(Kind::BFloat16)?,
        })
    }

    /// Keeps `dense` (f32 on the CPU, inputs a multiple of 32) with an
    /// int8 block copy for one-row products; anything else stays dense.
    pub fn logits(dense: Tensor) -> Result<Self, TchError> {
        let size = dense.size();
        let (&[rows, cols], Kind::Float, Device::Cpu) =
            (size.as_slice(), dense.kind(), dense.device())
        else {
            return Ok(Self::Dense(dense));
        };
        let values = Vec::<f32>::try_from(&dense.f_contiguous()?.f_view([-1])?)?;
        match Q8Matrix::quantize(&values, rows as usize, cols as usize) {
            Ok(q8) => Ok(Self::Logits { dense, q8 }),
            Err(_) => Ok(Self::Dense(dense)),
        }
    }

    /// `x W^T`, `[tokens, out]`, in `x`'s dtype.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Self::Dense(w) => x.f_linear::<&Tensor>(w, None),
            Self::Logits { q8, .. }
                if rows(x) <= Q8_MAX_ROWS
                    && x.kind() == Kind::Float
                    && x.device() == Device::Cpu =>
            {
                q8_product(q8, x)
            }
            Self::Logits { dense, .. } => x.f_linear::<&Tensor>(dense, None),
            Self::Int4 { batched, .. } if rows(x) >= BATCHED_MIN_ROWS => {
                bf16_product(x, |x| x.f_linear::<&Tensor>(batched, None))
            }
            Self::Int4 {
                packed,
                scales_zeros,
                ..
            } => bf16_product(x, |x| {
                x.f_internal_weight_int4pack_mm_for_cpu(
                    packed,
                    INT4_GROUP_SIZE as i64,
                    scales_zeros,
                )
            }),
            Self::Int8 { weight, scales } => {
                bf16_product(x, |x| x.f_internal_weight_int8pack_mm(weight, scales))
            }
        }
    }

    /// `residual + x W^T` for a 2-D `x`: one GEMM accumulating onto the
    /// residual when dense.
    pub fn matmul_add(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor, TchError> {
        match self {
            Self::Dense(w) => residual.f_addmm(x, &w.f_tr()?),
            _ => residual.f_add(&self.matmul(x)?),
        }
    }
}

/// `x W^T` through the int8 block kernel, on torch's thread count.
fn q8_product(q8: &Q8Matrix, x: &Tensor) -> Result<Tensor, TchError> {
    let rows = rows(x);
    let values = Vec::<f32>::try_from(&x.f_contiguous()?.f_view([-1])?)?;
    let threads = usize::try_from(tch::utils::get_num_threads()).unwrap_or(1);
    let out = q8
        .matmul(&values, rows as usize, threads)
        .map_err(|e| TchError::Kind(e.to_string()))?;
    let mut size = x.size();
    if let Some(last) = size.last_mut() {
        *last = q8.rows() as i64;
    }
    Tensor::f_from_slice(&out)?.f_view(size.as_slice())
}

/// The rows of `x` (all but its last dimension).
fn rows(x: &Tensor) -> i64 {
    let size = x.size();
    size.iter().rev().skip(1).product()
}

/// Runs `product` on `x` in bf16 and returns the result in `x`'s dtype.
fn bf16_product(
    x: &Tensor,
    product: impl FnOnce(&Tensor) -> Result<Tensor, TchError>,
) -> Result<Tensor, TchError> {
    let kind = x.kind();
    let y = product(&x.f_to_kind(Kind::BFloat16)?)?;
    y.f_to_kind(kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    /// The packed int4 product equals `x` times the dequantized matrix
    /// within bf16 rounding of the activations and of the scales.
    #[test]
    fn int4_product_matches_the_dequantized_weight() {
        tch::manual_seed(0);
        let (out, inp) = (48i64, 96i64);
        let groups = inp / INT4_GROUP_SIZE as i64;
        let opts = (Kind::Float, Device::Cpu);
        let weight = Int4Weight {
            values: Tensor::randint(16, [out, inp], (Kind::Uint8, Device::Cpu)),
            scales: Tensor::rand([out, groups], opts) * 0.02 + 0.001,
            zeros: Tensor::randn([out, groups], opts) * 0.01,
        };
        let dense = (weight.values.to_kind(Kind::Float) - 8.0)
            * weight
                .scales
                .repeat_interleave_self_int(INT4_GROUP_SIZE as i64, 1, None)
            + weight
                .zeros
                .repeat_interleave_self_int(INT4_GROUP_SIZE as i64, 1, None);
        let int4 = LinearWeight::int4(&weight).unwrap();
        // One row through the packed kernel, many through the bf16 copy.
        for rows in [1, 5, BATCHED_MIN_ROWS, 3 * BATCHED_MIN_ROWS] {
            let x = Tensor::randn([rows, inp], opts);
            let want = x.linear::<&Tensor>(&dense, None);
            let got = int4.matmul(&x).unwrap();
            assert_eq!(got.kind(), Kind::Float);
            let scale = want.abs().max().double_value(&[]);
            assert!(
                max_abs_diff(&got, &want) < 0.02 * scale,
                "int4 off by more than bf16 rounding at {rows} rows"
            );
        }
    }

    /// Logits: one row through the int8 block copy, within its rounding
    /// of the f32 product, still in f32; many rows through the f32 matrix
    /// itself, bit for bit.
    #[test]
    fn logits_of_one_row_read_the_int8_copy_and_stay_f32() {
        tch::manual_seed(0);
        let opts = (Kind::Float, Device::Cpu);
        let dense = Tensor::randn([100, 64], opts) * 0.05;
        let head = LinearWeight::logits(dense.shallow_clone()).unwrap();
        assert!(matches!(head, LinearWeight::Logits { .. }));
        let one = Tensor::randn([1, 64], opts);
        let got = head.matmul(&one).unwrap();
        assert_eq!((got.kind(), got.size()), (Kind::Float, vec![1, 100]));
        let want = one.linear::<&Tensor>(&dense, None);
        let scale = want.abs().max().double_value(&[]);
        assert!(max_abs_diff(&got, &want) < 0.01 * scale);
        assert!(
            max_abs_diff(&got, &want) > 0.0,
            "the int8 copy was not read"
        );
        let many = Tensor::randn([Q8_MAX_ROWS + 3, 64], opts);
        let want = many.linear::<&Tensor>(&dense, None);
        assert_eq!(max_abs_diff(&head.matmul(&many).unwrap(), &want), 0.0);
        // A width the blocks cannot split stays dense.
        let odd = LinearWeight::logits(Tensor::randn([4, 40], opts)).unwrap();
        assert!(matches!(odd, LinearWeight::Dense(_)));
    }

    #[test]
    fn int8_product_is_within_half_a_step_per_weight() {
        tch::manual_seed(1);
        let dense = Tensor::randn([64, 96], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([3, 96], (Kind::Float, Device::Cpu));
        let want = x.linear::<&Tensor>(&dense, None);
        let int8 = LinearWeight::int8(dense.shallow_clone()).unwrap();
        assert!(matches!(int8, LinearWeight::Int8 { .. }));
        let got = int8.matmul(&x).unwrap();
        let scale = want.abs().max().double_value(&[]);
        assert!(max_abs_diff(&got, &want) < 0.03 * scale);
        let add = int8
            .matmul_add(&x, &Tensor::ones([3, 64], (Kind::Float, Device::Cpu)))
            .unwrap();
        assert!(max_abs_diff(&(add - 1.0), &got) < 1e-6);
    }

    #[test]
    fn int8_keeps_widths_the_kernel_mishandles_dense() {
        let dense = Tensor::randn([64, 40], (Kind::Float, Device::Cpu));
        let weight = LinearWeight::int8(dense).unwrap();
        assert!(matches!(weight, LinearWeight::Dense(_)));
    }
}
