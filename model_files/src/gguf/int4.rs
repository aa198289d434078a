//! 4-bit GGUF blocks re-expressed in torch's int4 group format, so a
//! quantized checkpoint can stay 4-bit in memory and be multiplied by
//! libtorch's packed-int4 CPU kernel instead of being widened to f32.
//!
//! torch's format: one unsigned 4-bit value `q` per weight and, per group of
//! [`INT4_GROUP_SIZE`] consecutive weights of a row, a `scale` and a `zero`
//! with `w = (q - 8) * scale + zero`. Every 4-bit GGUF format maps onto it
//! without touching `q`:
//!
//! | format | ggml's formula         | scale    | zero                  |
//! |--------|------------------------|----------|-----------------------|
//! | Q4_0   | `(q - 8) * d`          | `d`      | `0`                   |
//! | Q4_1   | `q * d + m`            | `d`      | `m + 8 d`             |
//! | Q4_K   | `q * d*sc - dmin*m`    | `d*sc`   | `8 d*sc - dmin*m`     |
//!
//! Q4_0 is exact; the other two differ from ggml's f32 result only by the
//! rounding of the f32 sum `zero` (a few ulps).

use super::dequant::{check_len, f16_le, scale_min_k4, DequantError};
use super::types::GgmlType;

/// Weights per scale/zero group: every 4-bit GGUF format uses 32 (Q4_K's
/// 256-weight super-blocks hold eight sub-blocks of 32).
pub const INT4_GROUP_SIZE: usize = 32;

/// A tensor's 4-bit values with one scale and zero per group of
/// [`INT4_GROUP_SIZE`], in the file's element order.
#[derive(Debug, Clone, PartialEq)]
pub struct Int4Groups {
    /// One value in `0..16` per weight.
    pub values: Vec<u8>,
    /// One scale per group.
    pub scales: Vec<f32>,
    /// One zero per group.
    pub zeros: Vec<f32>,
}

/// Whether [`int4_groups`] can re-express `ggml_type` exactly in `q`.
pub fn maps_to_int4(ggml_type: GgmlType) -> bool {
    matches!(ggml_type, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q4_K)
}

/// Re-expresses `n_elements` weights of a 4-bit `ggml_type` from `data` as
/// [`Int4Groups`]; other types are [`DequantError::Unsupported`].
pub fn int4_groups(
    ggml_type: GgmlType,
    data: &[u8],
    n_elements: usize,
) -> Result<Int4Groups, DequantError> {
    if !maps_to_int4(ggml_type) {
        return Err(DequantError::Unsupported(ggml_type));
    }
    check_len(ggml_type, data, n_elements)?;
    let groups = n_elements / INT4_GROUP_SIZE;
    let mut out = Int4Groups {
        values: Vec::with_capacity(n_elements),
        scales: Vec::with_capacity(groups),
        zeros: Vec::with_capacity(groups),
    };
    let block = ggml_type.type_size();
    for b in data.chunks_exact(block) {
        match ggml_type {
            GgmlType::Q4_0 => {
                let d = f16_le([b[0], b[1]]);
                push_group(&mut out, &b[2..18], false, d, 0.0);
            }
            GgmlType::Q4_1 => {
                let d = f16_le([b[0], b[1]]);
                let m = f16_le([b[2], b[3]]);
                push_group(&mut out, &b[4..20], false, d, m + 8.0 * d);
            }
            _ => {
                // Q4_K: d, dmin, 12 scale bytes, then 4 chunks of 32 bytes,
                // each chunk's low nibbles one sub-block, its high the next.
                let d = f16_le([b[0], b[1]]);
                let dmin = f16_le([b[2], b[3]]);
                let mut scales = [0u8; 12];
                scales.copy_from_slice(&b[4..16]);
                for chunk in 0..4 {
                    let qs = &b[16 + 32 * chunk..48 + 32 * chunk];
                    for (high, sub) in [(false, 2 * chunk), (true, 2 * chunk + 1)] {
                        let (sc, m) = scale_min_k4(sub, &scales);
                        let scale = d * sc;
                        push_group(&mut out, qs, high, scale, 8.0 * scale - dmin * m);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Appends one group: with `high` false, `qs` holds 16 bytes whose low then
/// high nibbles are the group's 32 values (Q4_0/Q4_1's order); with `high`
/// true or false over 32 bytes, the high or low nibble of each (Q4_K).
fn push_group(out: &mut Int4Groups, qs: &[u8], high: bool, scale: f32, zero: f32) {
    if qs.len() == INT4_GROUP_SIZE {
        let shift = if high { 4 } else { 0 };
        out.values.extend(qs.iter().map(|q| (q >> shift) & 0x0F));
    } else {
        out.values.extend(qs.iter().map(|q| q & 0x0F));
        out.values.extend(qs.iter().map(|q| q >> 4));
    }
    out.scales.push(scale);
    out.zeros.push(zero);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequantize;

    /// Deterministic bytes: every bit pattern shows up, f16 fields are
    /// patched to small finite values so scales stay in range.
    fn blocks(ggml_type: GgmlType, n: usize) -> Vec<u8> {
        let size = ggml_type.type_size();
        let mut data: Vec<u8> = (0..n * size).map(|i| (i * 37 % 251) as u8).collect();
        for b in data.chunks_exact_mut(size) {
            // d (and m / dmin) = small f16 values of both signs.
            b[..4].copy_from_slice(&[0x00, 0x2c, 0x00, 0xac]);
        }
        data
    }

    #[test]
    fn every_4bit_format_reconstructs_ggml_values() {
        for ggml_type in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4_K] {
            let n = 4 * ggml_type.block_size();
            let data = blocks(ggml_type, 4);
            let want = dequantize(ggml_type, &data, n).unwrap();
            let got = int4_groups(ggml_type, &data, n).unwrap();
            assert_eq!(got.values.len(), n);
            assert_eq!(got.scales.len(), n / INT4_GROUP_SIZE);
            for (i, w) in want.iter().enumerate() {
                let g = i / INT4_GROUP_SIZE;
                let q = f32::from(got.values[i]);
                let v = (q - 8.0) * got.scales[g] + got.zeros[g];
                let tol = if ggml_type == GgmlType::Q4_0 {
                    0.0
                } else {
                    1e-6
                };
                assert!(
                    (v - w).abs() <= tol * w.abs().max(1.0),
                    "{ggml_type:?} element {i}: {v} vs ggml {w}"
                );
            }
        }
    }

    #[test]
    fn other_types_and_bad_lengths_are_errors() {
        assert_eq!(
            int4_groups(GgmlType::Q8_0, &[0; 34], 32),
            Err(DequantError::Unsupported(GgmlType::Q8_0))
        );
        assert!(matches!(
            int4_groups(GgmlType::Q4_1, &[0; 19], 32),
            Err(DequantError::BadLength { .. })
        ));
        assert!(matches!(
            int4_groups(GgmlType::Q4_K, &[0; 144], 32),
            Err(DequantError::NotBlockMultiple { .. })
        ));
    }
}
