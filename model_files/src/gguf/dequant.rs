//! Block dequantization to f32, bit-exact with ggml's reference
//! `dequantize_row_*` in `ggml-quants.c` (and so with gguf-py): every
//! product and sum is done in f32 in the same order, f16 fields are widened
//! exactly, and no fused multiply-add is used.
//!
//! Each format is a function from one block's bytes (`&[u8; TYPE_SIZE]`) to
//! its values (`&mut [f32; BLOCK_SIZE]`); fixed-size arrays make every index
//! provably in range. [`for_blocks`] runs that function over all blocks in
//! parallel.

use half::f16;
use rayon::prelude::*;

use super::types::GgmlType;

/// Why a byte buffer could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    /// No dequantizer for this type (integer, importance-matrix, FP4 ...).
    #[error("no dequantizer for ggml type {0:?}")]
    Unsupported(GgmlType),
    /// The buffer does not hold exactly the blocks the element count needs.
    #[error("{ggml_type:?} data of {n_elements} elements needs {expected} bytes, got {actual}")]
    BadLength {
        /// The type being decoded.
        ggml_type: GgmlType,
        /// Elements asked for.
        n_elements: usize,
        /// Bytes those elements occupy.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
    /// The element count is not a whole number of blocks.
    #[error(
        "{n_elements} elements is not a multiple of the {ggml_type:?} block size {block_size}"
    )]
    NotBlockMultiple {
        /// The type being decoded.
        ggml_type: GgmlType,
        /// Elements asked for.
        n_elements: usize,
        /// Elements per block of that type.
        block_size: usize,
    },
}

/// Decodes `n_elements` values of `ggml_type` from `data` (the tensor's raw
/// bytes, in file order) into f32, in the same order.
///
/// Exists apart from [`crate::gguf::GgufFile`] so weight loaders can decode
/// slices they obtained elsewhere (e.g. one expert's rows) with the same code.
pub fn dequantize(
    ggml_type: GgmlType,
    data: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, DequantError> {
    check_len(ggml_type, data, n_elements)?;
    let mut out = vec![0f32; n_elements];
    match ggml_type {
        GgmlType::F32 => for_blocks(data, &mut out, |b: &[u8; 4], y: &mut [f32; 1]| {
            y[0] = f32::from_le_bytes(*b);
        }),
        GgmlType::F16 => for_blocks(data, &mut out, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = f16_le(*b);
        }),
        GgmlType::BF16 => for_blocks(data, &mut out, |b: &[u8; 2], y: &mut [f32; 1]| {
            y[0] = f32::from_bits(u32::from(u16::from_le_bytes(*b)) << 16);
        }),
        GgmlType::Q8_0 => for_blocks(data, &mut out, q8_0),
        GgmlType::Q4_0 => for_blocks(data, &mut out, q4_0),
        GgmlType::Q4_1 => for_blocks(data, &mut out, q4_1),
        GgmlType::Q5_0 => for_blocks(data, &mut out, q5_0),
        GgmlType::Q5_1 => for_blocks(data, &mut out, q5_1),
        GgmlType::Q4_K => for_blocks(data, &mut out, q4_k),
        GgmlType::Q5_K => for_blocks(data, &mut out, q5_k),
        GgmlType::Q6_K => for_blocks(data, &mut out, q6_k),
        other => return Err(DequantError::Unsupported(other)),
    }
    Ok(out)
}

/// Checks that `data` holds exactly the whole blocks of `n_elements`
/// weights of `ggml_type`.
pub(super) fn check_len(
    ggml_type: GgmlType,
    data: &[u8],
    n_elements: usize,
) -> Result<(), DequantError> {
    let block_size = ggml_type.block_size();
    if n_elements % block_size != 0 {
        return Err(DequantError::NotBlockMultiple {
            ggml_type,
            n_elements,
            block_size,
        });
    }
    let expected = (n_elements / block_size).checked_mul(ggml_type.type_size());
    if expected != Some(data.len()) {
        return Err(DequantError::BadLength {
            ggml_type,
            n_elements,
            expected: expected.unwrap_or(usize::MAX),
            actual: data.len(),
        });
    }
    Ok(())
}

/// Blocks per rayon task: big enough that scheduling costs nothing next to
/// the arithmetic, small enough to spread a 576x576 matrix over the cores.
const MIN_BLOCKS_PER_TASK: usize = 4096;

/// Applies `f` to every `(block bytes, block values)` pair, in parallel.
///
/// The caller has checked `data.len() / TS == out.len() / BS`; the
/// fixed-size conversions then always succeed (`chunks_exact` yields exactly
/// `TS`/`BS` items), so the `if let` only exists to avoid a panic path.
fn for_blocks<const TS: usize, const BS: usize>(
    data: &[u8],
    out: &mut [f32],
    f: impl Fn(&[u8; TS], &mut [f32; BS]) + Sync,
) {
    data.par_chunks_exact(TS)
        .zip(out.par_chunks_exact_mut(BS))
        .with_min_len(MIN_BLOCKS_PER_TASK)
        .for_each(|(src, dst)| {
            if let (Ok(src), Ok(dst)) =
                (<&[u8; TS]>::try_from(src), <&mut [f32; BS]>::try_from(dst))
            {
                f(src, dst);
            }
        });
}

/// An f16 stored little-endian, widened exactly to f32 (ggml's
/// `GGML_FP16_TO_FP32`).
pub(super) fn f16_le(bytes: [u8; 2]) -> f32 {
    f16::from_le_bytes(bytes).to_f32()
}

/// `block_q8_0`: `d: f16, qs: [i8; 32]`; `y = qs * d`.
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_le([b[0], b[1]]);
    for (j, out) in y.iter_mut().enumerate() {
        let q = b[2 + j] as i8;
        *out = f32::from(q) * d;
    }
}

/// `block_q4_0`: `d: f16, qs: [u8; 16]`; low nibbles are elements 0..16,
/// high nibbles 16..32, each minus 8, times `d`.
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_le([b[0], b[1]]);
    for j in 0..16 {
        let q = b[2 + j];
        y[j] = f32::from(i16::from(q & 0x0F) - 8) * d;
        y[j + 16] = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// `block_q4_1`: `d: f16, m: f16, qs: [u8; 16]`; `y = q * d + m`.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_le([b[0], b[1]]);
    let m = f16_le([b[2], b[3]]);
    for j in 0..16 {
        let q = b[4 + j];
        y[j] = f32::from(q & 0x0F) * d + m;
        y[j + 16] = f32::from(q >> 4) * d + m;
    }
}

/// `block_q5_0`: `d: f16, qh: u32, qs: [u8; 16]`; bit `j` of `qh` is the
/// fifth bit of element `j`; values are offset by 16.
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_le([b[0], b[1]]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let q = b[6 + j];
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        let x0 = (u32::from(q & 0x0F) | h0) as i32 - 16;
        let x1 = (u32::from(q >> 4) | h1) as i32 - 16;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

/// `block_q5_1`: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; `y = q * d + m`.
fn q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_le([b[0], b[1]]);
    let m = f16_le([b[2], b[3]]);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let q = b[8 + j];
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        let x0 = u32::from(q & 0x0F) | h0;
        let x1 = u32::from(q >> 4) | h1;
        y[j] = x0 as f32 * d + m;
        y[j + 16] = x1 as f32 * d + m;
    }
}

/// ggml's `get_scale_min_k4`: the 6-bit scale and minimum of sub-block `j`
/// (0..8) packed in the 12 `scales` bytes of Q4_K/Q5_K.
pub(super) fn scale_min_k4(j: usize, s: &[u8; 12]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// The K-quant header `d: f16, dmin: f16, scales: [u8; 12]` at the front
/// of a Q4_K or Q5_K block (both callers' `N` exceed 16, so `get` always
/// hits; it only spares us an index that could panic for other `N`).
fn k_header<const N: usize>(b: &[u8; N]) -> (f32, f32, [u8; 12]) {
    let byte = |i: usize| b.get(i).copied().unwrap_or(0);
    let scales = std::array::from_fn(|i| byte(4 + i));
    (
        f16_le([byte(0), byte(1)]),
        f16_le([byte(2), byte(3)]),
        scales,
    )
}

/// `block_q4_K`: `d, dmin: f16, scales: [u8; 12], qs: [u8; 128]`; 8
/// sub-blocks of 32, `y = d*sc * q - dmin*m`.
fn q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let (d, dmin, scales) = k_header(b);
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, &scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, &scales);
        let (d1, m1) = (d * sc1, dmin * m1);
        let (d2, m2) = (d * sc2, dmin * m2);
        for l in 0..32 {
            let q = b[16 + 32 * chunk + l];
            y[64 * chunk + l] = d1 * f32::from(q & 0x0F) - m1;
            y[64 * chunk + 32 + l] = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// `block_q5_K`: `d, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8;
/// 128]`; like Q4_K with a fifth bit per element from `qh`.
fn q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let (d, dmin, scales) = k_header(b);
    for chunk in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * chunk, &scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, &scales);
        let (d1, m1) = (d * sc1, dmin * m1);
        let (d2, m2) = (d * sc2, dmin * m2);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for l in 0..32 {
            let ql = b[48 + 32 * chunk + l];
            let qh = b[16 + l];
            let h1 = if qh & u1 != 0 { 16 } else { 0 };
            let h2 = if qh & u2 != 0 { 16 } else { 0 };
            y[64 * chunk + l] = d1 * f32::from((ql & 0x0F) + h1) - m1;
            y[64 * chunk + 32 + l] = d2 * f32::from((ql >> 4) + h2) - m2;
        }
    }
}

/// `block_q6_K`: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`;
/// 16 sub-blocks of 16, `y = d * scale * (q - 32)`.
fn q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let d = f16_le([b[208], b[209]]);
    for half in 0..2 {
        let (ql, qh, sc, out) = (64 * half, 128 + 32 * half, 192 + 8 * half, 128 * half);
        for l in 0..32 {
            let is = l / 16;
            let h = b[qh + l];
            let lo = b[ql + l];
            let hi = b[ql + l + 32];
            let q1 = i16::from((lo & 0x0F) | ((h & 3) << 4)) - 32;
            let q2 = i16::from((hi & 0x0F) | (((h >> 2) & 3) << 4)) - 32;
            let q3 = i16::from((lo >> 4) | (((h >> 4) & 3) << 4)) - 32;
            let q4 = i16::from((hi >> 4) | (((h >> 6) & 3) << 4)) - 32;
            let s = |k: usize| d * f32::from(b[sc + is + k] as i8);
            y[out + l] = s(0) * f32::from(q1);
            y[out + l + 32] = s(2) * f32::from(q2);
            y[out + l + 64] = s(4) * f32::from(q3);
            y[out + l + 96] = s(6) * f32::from(q4);
        }
    }
}
