//! `x W^T` on the CPU for a matrix held as int8 in blocks of 32 inputs,
//! one f32 scale per block (GGUF's Q8_0, the scale widened from f16), with
//! f32 activations and f32 results.
//!
//! Why it exists: torch 2.11 has no CPU product of int8 weights that
//! returns f32 (`_weight_int8pack_mm` returns bf16, whose logits tie at
//! SmolLM2's scale), and the LM head in f32 reads 4 bytes a weight: on a
//! 2-vCPU VM its 49152 x 576 product was half of a decode step. This one
//! reads 1.125 bytes a weight and keeps the logits in f32.
//!
//! The arithmetic of one output row does not depend on what else is in
//! the batch (each row keeps its own 32 lane accumulators, summed in a
//! fixed order), nor on the instruction set: the same code is compiled
//! for AVX-512, AVX2+FMA and plain x86-64 / other targets, with fused
//! multiply-adds everywhere (`mul_add`), so every path gives the same bits.

use std::ops::Range;

/// Inputs per block, each block with its own scale (Q8_0's 32).
pub const BLOCK: usize = 32;

/// Why a product cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Q8Error {
    /// The input width is not a whole number of blocks.
    #[error("{cols} inputs is not a multiple of the block size {BLOCK}")]
    Cols { cols: usize },
    /// A slice's length does not match the shape it is said to have.
    #[error("{what} holds {got} values, not {want}")]
    Len {
        what: &'static str,
        got: usize,
        want: usize,
    },
}

/// A `[rows, cols]` matrix as int8 blocks with f32 scales.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// `rows * cols`, row-major.
    values: Vec<i8>,
    /// `rows * cols / BLOCK`, one per block, row-major.
    scales: Vec<f32>,
}

impl Q8Matrix {
    /// Quantizes `w` (`[rows, cols]`, row-major) as ggml's Q8_0 does: per
    /// block `d = max |w| / 127`, `q = round(w / d)`. Each weight is off by
    /// at most `d / 2`; a matrix that was Q8_0 and was dequantized comes
    /// back to the same `q` and (up to an f32 rounding of `d`) the same
    /// scale.
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> Result<Self, Q8Error> {
        if cols % BLOCK != 0 {
            return Err(Q8Error::Cols { cols });
        }
        check_len("the weights", w.len(), rows.saturating_mul(cols))?;
        let mut values = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(w.len() / BLOCK);
        for block in w.chunks_exact(BLOCK) {
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let inverse = if d > 0.0 { 1.0 / d } else { 0.0 };
            scales.push(d);
            values.extend(
                block
                    .iter()
                    .map(|v| (v * inverse).round().clamp(-127.0, 127.0) as i8),
            );
        }
        Ok(Self {
            rows,
            cols,
            values,
            scales,
        })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The weights as f32 (`[rows, cols]`), for checks and references.
    pub fn dequantize(&self) -> Vec<f32> {
        self.values
            .chunks_exact(BLOCK)
            .zip(&self.scales)
            .flat_map(|(q, &d)| q.iter().map(move |&v| f32::from(v) * d))
            .collect()
    }

    /// `x W^T` for `x` of `[m, cols]` (row-major): `[m, rows]`, split over
    /// up to `threads` threads by output feature.
    pub fn matmul(&self, x: &[f32], m: usize, threads: usize) -> Result<Vec<f32>, Q8Error> {
        check_len("the input", x.len(), m.saturating_mul(self.cols))?;
        let mut out = vec![0f32; m * self.rows];
        if m == 0 || self.rows == 0 {
            return Ok(out);
        }
        let threads = threads.clamp(1, self.rows);
        let per = self.rows.div_ceil(threads);
        let parts: Vec<(Range<usize>, Vec<f32>)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per).min(self.rows)..((t + 1) * per).min(self.rows);
                    scope.spawn(move || {
                        let part = self.part(x, m, range.clone());
                        (range, part)
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        // A thread that panicked left its part out: that is a bug here,
        // not an input error, and it must not pass as zeros.
        let covered: usize = parts.iter().map(|(r, _)| r.len()).sum();
        if covered != self.rows {
            return Err(Q8Error::Len {
                what: "the computed output",
                got: covered * m,
                want: self.rows * m,
            });
        }
        for (range, part) in parts {
            // `part` is `[range.len(), m]`: scatter into `[m, rows]`.
            for (i, n) in range.enumerate() {
                for (r, &v) in part[i * m..(i + 1) * m].iter().enumerate() {
                    out[r * self.rows + n] = v;
                }
            }
        }
        Ok(out)
    }

    /// Output features `range` for all `m` rows, as `[range.len(), m]`.
    fn part(&self, x: &[f32], m: usize, range: Range<usize>) -> Vec<f32> {
        let mut part = vec![0f32; range.len() * m];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has the features the function is built for.
                unsafe { part_avx512(self, x, m, range, &mut part) };
                return part;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: as above.
                unsafe { part_avx2(self, x, m, range, &mut part) };
                return part;
            }
        }
        part_body(self, x, m, range, &mut part);
        part
    }
}

fn check_len(what: &'static str, got: usize, want: usize) -> Result<(), Q8Error> {
    if got == want {
        Ok(())
    } else {
        Err(Q8Error::Len { what, got, want })
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
fn part_avx512(w: &Q8Matrix, x: &[f32], m: usize, range: Range<usize>, part: &mut [f32]) {
    part_body(w, x, m, range, part);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn part_avx2(w: &Q8Matrix, x: &[f32], m: usize, range: Range<usize>, part: &mut [f32]) {
    part_body(w, x, m, range, part);
}

/// The product for one range of output features; inlined into each
/// instruction-set variant above: each row of `x` against each weight
/// row, the weight block widened to f32 as it is read.
#[inline(always)]
fn part_body(w: &Q8Matrix, x: &[f32], m: usize, range: Range<usize>, part: &mut [f32]) {
    let blocks = w.cols / BLOCK;
    for (i, n) in range.enumerate() {
        let q = &w.values[n * w.cols..(n + 1) * w.cols];
        let d = &w.scales[n * blocks..(n + 1) * blocks];
        for (out, x_row) in part[i * m..(i + 1) * m]
            .iter_mut()
            .zip(x.chunks_exact(w.cols))
        {
            *out = dot(q, d, x_row);
        }
    }
}

/// One weight row against one row of `x`: 32 lane accumulators, one
/// fused multiply-add per lane and block, summed by [`lane_sum`].
#[inline(always)]
fn dot(q: &[i8], d: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0f32; BLOCK];
    for ((qb, &scale), xb) in q.chunks_exact(BLOCK).zip(d).zip(x.chunks_exact(BLOCK)) {
        let (Ok(qb), Ok(xb)) = (<&[i8; BLOCK]>::try_from(qb), <&[f32; BLOCK]>::try_from(xb)) else {
            continue;
        };
        for j in 0..BLOCK {
            acc[j] = xb[j].mul_add(f32::from(qb[j]) * scale, acc[j]);
        }
    }
    lane_sum(&acc)
}

/// Pairwise sum of the 32 lanes, always in the same order.
#[inline(always)]
fn lane_sum(v: &[f32; BLOCK]) -> f32 {
    let mut s = [0f32; 16];
    for j in 0..16 {
        s[j] = v[j] + v[j + 16];
    }
    let mut h = [0f32; 8];
    for j in 0..8 {
        h[j] = s[j] + s[j + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible pseudo-random f32 in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(w: &[f32], rows: usize, cols: usize, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f64; m * rows];
        for r in 0..m {
            for n in 0..rows {
                out[r * rows + n] = (0..cols)
                    .map(|k| f64::from(x[r * cols + k]) * f64::from(w[n * cols + k]))
                    .sum();
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn the_product_matches_the_dequantized_weights_in_f64() {
        let (rows, cols) = (37, 96);
        let q = Q8Matrix::quantize(&values(rows * cols, 1), rows, cols).unwrap();
        let dense = q.dequantize();
        for m in [1, 3, 4, 9, 12] {
            let x = values(m * cols, 2 + m as u64);
            let got = q.matmul(&x, m, 3).unwrap();
            let want = reference(&dense, rows, cols, &x, m);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-4, "{m} rows: off by {worst}");
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_and_in_any_batch_and_thread_split() {
        let (rows, cols) = (50, 64);
        let q = Q8Matrix::quantize(&values(rows * cols, 3), rows, cols).unwrap();
        let m = 11;
        let x = values(m * cols, 4);
        let batch = q.matmul(&x, m, 2).unwrap();
        for r in 0..m {
            let alone = q.matmul(&x[r * cols..(r + 1) * cols], 1, 1).unwrap();
            assert_eq!(alone, batch[r * rows..(r + 1) * rows], "row {r}");
        }
        assert_eq!(q.matmul(&x, m, 7).unwrap(), batch);
    }

    #[test]
    fn quantizing_is_within_half_a_step_and_idempotent() {
        let (rows, cols) = (4, 64);
        let w = values(rows * cols, 5);
        let q = Q8Matrix::quantize(&w, rows, cols).unwrap();
        let dense = q.dequantize();
        for (b, (wb, db)) in w.chunks(BLOCK).zip(dense.chunks(BLOCK)).enumerate() {
            let step = q.scales[b];
            for (a, c) in wb.iter().zip(db) {
                assert!((a - c).abs() <= step / 2.0 + 1e-7);
            }
        }
        // A Q8_0 matrix read back as f32 quantizes to the same values.
        let again = Q8Matrix::quantize(&dense, rows, cols).unwrap();
        assert_eq!(again.values, q.values);
        let worst = again
            .dequantize()
            .iter()
            .zip(&dense)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-6, "{worst}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert_eq!(
            Q8Matrix::quantize(&[0.0; 40], 1, 40).unwrap_err(),
            Q8Error::Cols { cols: 40 }
        );
        assert!(Q8Matrix::quantize(&[0.0; 64], 3, 32).is_err());
        let q = Q8Matrix::quantize(&[0.5; 64], 2, 32).unwrap();
        assert!(q.matmul(&[1.0; 33], 1, 1).is_err());
        assert_eq!(q.matmul(&[], 0, 4).unwrap(), Vec::<f32>::new());
        // An all-zero block has scale 0 and gives zeros, not NaN.
        let zero = Q8Matrix::quantize(&[0.0; 32], 1, 32).unwrap();
        assert_eq!(zero.matmul(&[1.0; 32], 1, 1).unwrap(), vec![0.0]);
    }
}
