//! The ggml tensor element types a GGUF file can declare, with their block
//! geometry, so tensor sizes can be validated for every type even when we
//! cannot dequantize it.

/// A ggml tensor element type, numbered as in `enum ggml_type` of `ggml.h`.
///
/// Every id ggml currently assigns is listed (ids that ggml retired, such as
/// 4, 5 and 31..=33, are not), so a file holding a type we cannot decode
/// still opens and only [`crate::gguf::dequantize`] refuses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// 32 weights: f16 scale, 4-bit values offset by 8.
    Q4_0,
    /// 32 weights: f16 scale and minimum, 4-bit values.
    Q4_1,
    /// 32 weights: f16 scale, 5-bit values offset by 16.
    Q5_0,
    /// 32 weights: f16 scale and minimum, 5-bit values.
    Q5_1,
    /// 32 weights: f16 scale, 8-bit signed values.
    Q8_0,
    /// 32 weights: f32 scale and sum, 8-bit values (activation format).
    Q8_1,
    /// 256-weight super-block, 2-bit.
    Q2_K,
    /// 256-weight super-block, 3-bit.
    Q3_K,
    /// 256-weight super-block, 4-bit with 6-bit sub-block scales and minimums.
    Q4_K,
    /// 256-weight super-block, 5-bit with 6-bit sub-block scales and minimums.
    Q5_K,
    /// 256-weight super-block, 6-bit with 8-bit sub-block scales.
    Q6_K,
    /// 256-weight super-block, 8-bit (activation format).
    Q8_K,
    /// Importance-matrix 2-bit, grid coded.
    IQ2_XXS,
    /// Importance-matrix 2-bit, grid coded with scales.
    IQ2_XS,
    /// Importance-matrix 3-bit, grid coded.
    IQ3_XXS,
    /// Importance-matrix 1-bit.
    IQ1_S,
    /// Non-linear 4-bit, 32-weight blocks.
    IQ4_NL,
    /// Importance-matrix 3-bit with scales.
    IQ3_S,
    /// Importance-matrix 2-bit with scales.
    IQ2_S,
    /// Non-linear 4-bit, 256-weight super-blocks.
    IQ4_XS,
    /// 8-bit signed integer.
    I8,
    /// 16-bit signed integer.
    I16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit IEEE float.
    F64,
    /// Importance-matrix 1-bit, mixed.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// Ternary, 1.69 bits per weight.
    TQ1_0,
    /// Ternary, 2 bits per weight.
    TQ2_0,
    /// Microscaling FP4 (e2m1 values, e8m0 scale).
    MXFP4,
    /// NVIDIA FP4 (e2m1 values, fp8 scales).
    NVFP4,
    /// 1-bit, 128-weight blocks.
    Q1_0,
}

impl GgmlType {
    /// Maps the on-disk type id to a type; `None` for ids ggml does not
    /// assign, which the reader reports as `UnknownTensorType`.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            40 => NVFP4,
            41 => Q1_0,
            _ => return None,
        })
    }

    /// Whether values are stored in quantized blocks (a scale per block),
    /// not as plain floats or integers.
    pub fn is_block_quantized(self) -> bool {
        use GgmlType::*;
        !matches!(self, F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64)
    }

    /// Elements per block: a tensor's row length (`dims[0]`) must be a
    /// multiple of it, and its byte size is `n_elements / block_size *
    /// type_size`.
    pub fn block_size(self) -> usize {
        self.geometry().0
    }

    /// Bytes per block, as in ggml's `type_traits` table.
    pub fn type_size(self) -> usize {
        self.geometry().1
    }

    /// `(block_size, type_size)`, one table so the two cannot disagree.
    fn geometry(self) -> (usize, usize) {
        use GgmlType::*;
        const QK_K: usize = 256;
        match self {
            F32 => (1, 4),
            F16 => (1, 2),
            Q4_0 => (32, 2 + 16),
            Q4_1 => (32, 2 + 2 + 16),
            Q5_0 => (32, 2 + 4 + 16),
            Q5_1 => (32, 2 + 2 + 4 + 16),
            Q8_0 => (32, 2 + 32),
            Q8_1 => (32, 4 + 4 + 32),
            Q2_K => (QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
            Q3_K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            Q4_K => (QK_K, 2 + 2 + QK_K / 2 + 12),
            Q5_K => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
            Q6_K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            Q8_K => (QK_K, 4 + QK_K + QK_K / 8),
            IQ2_XXS => (QK_K, 2 + QK_K / 4),
            IQ2_XS => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            IQ3_XXS => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            IQ1_S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            IQ4_NL => (32, 2 + 16),
            IQ3_S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            IQ2_S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            IQ4_XS => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            F64 => (1, 8),
            IQ1_M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            BF16 => (1, 2),
            TQ1_0 => (QK_K, 2 + 4 * 13),
            TQ2_0 => (QK_K, 2 + 64),
            MXFP4 => (32, 1 + 16),
            NVFP4 => (64, 4 + 32),
            Q1_0 => (128, 2 + 16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::GgmlType;

    #[test]
    fn ids_round_trip_through_the_table() {
        let known: Vec<u32> = (0..64)
            .filter(|&id| GgmlType::from_id(id).is_some())
            .collect();
        assert_eq!(known.len(), 34);
        assert!(GgmlType::from_id(4).is_none());
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q4_1.block_size(), 32);
    }
}
