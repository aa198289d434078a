//! GGUF files as llama.cpp writes them: tensors renamed to HF's names,
//! dequantized to f32 (or, for 4-bit formats, re-expressed as an
//! [`Int4Weight`]), and, for the `llama` architecture, the q/k rows
//! un-permuted.
//!
//! llama.cpp's converter reorders the rows of a Llama model's
//! `q_proj`/`k_proj` so that its rotary kernel can rotate adjacent pairs;
//! HF rotates the two halves of each head. We undo the reorder (as
//! transformers' GGUF loader does), so one rotary implementation serves
//! both formats. Its `qwen3` models keep HF's row order (llama.cpp rotates
//! them in NeoX style), so they load as they are.

use std::path::{Path, PathBuf};

use model_files::gguf::{maps_to_int4, GgufFile, TensorInfo, INT4_GROUP_SIZE};
use model_files::{Architecture, ModelConfig};
use tch::Tensor;

use super::{Int4Weight, WeightError, WeightSource};

/// A GGUF file holding a Llama- or Qwen3-architecture model.
pub struct GgufSource {
    file: GgufFile,
    num_heads: i64,
    num_kv_heads: i64,
    /// Whether llama.cpp permuted the q/k rows (its `llama` models).
    permuted_qk: bool,
}

impl GgufSource {
    /// Opens and validates `path` (header, metadata, tensor infos).
    pub fn open(path: &Path, config: &ModelConfig) -> Result<Self, WeightError> {
        let file = GgufFile::open(path)?;
        Ok(Self::from_file(file, config))
    }

    /// Wraps an already opened file.
    pub fn from_file(file: GgufFile, config: &ModelConfig) -> Self {
        Self {
            file,
            num_heads: config.num_attention_heads as i64,
            num_kv_heads: config.num_kv_heads() as i64,
            permuted_qk: config.architecture() == Architecture::Llama,
        }
    }
}

/// HF's name for a llama.cpp tensor name, and back: the table both ways.
fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, tail) = rest.split_once('.')?;
    let part = match tail {
        "input_layernorm.weight" => "attn_norm.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "self_attn.q_norm.weight" => "attn_q_norm.weight",
        "self_attn.k_norm.weight" => "attn_k_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{layer}.{part}"))
}

/// Inverse of llama.cpp's `permute(w, n_head)`: rows grouped per head as
/// (head, dim/2, 2) back to (head, 2, dim/2).
fn unpermute(w: &Tensor, n_head: i64) -> Tensor {
    let size = w.size();
    let (rows, cols) = (size[0], size.get(1).copied().unwrap_or(1));
    w.reshape([n_head, rows / n_head / 2, 2, cols])
        .transpose(1, 2)
        .reshape([rows, cols])
}

impl WeightSource for GgufSource {
    fn file(&self) -> PathBuf {
        self.file.path().to_path_buf()
    }

    fn load(&self, name: &str, _shape: &[i64]) -> Result<Tensor, WeightError> {
        let (gguf, info) = self.info(name)?;
        let values = self.file.dequantize(&gguf)?;
        let shape = info.torch_shape();
        let tensor = Tensor::f_from_slice(&values)
            .and_then(|t| t.f_reshape(&shape))
            .map_err(|source| self.torch_error(name, source))?;
        self.unpermute_qk(name, &gguf, &shape, |n| unpermute(&tensor, n))
            .map(|t| t.unwrap_or(tensor))
    }

    fn load_int4(&self, name: &str) -> Result<Option<Int4Weight>, WeightError> {
        let (gguf, info) = self.info(name)?;
        let shape = info.torch_shape();
        if !maps_to_int4(info.ggml_type) || shape.len() != 2 {
            return Ok(None);
        }
        let groups = self.file.int4_groups(&gguf)?;
        let (rows, cols) = (shape[0], shape[1]);
        let group_shape = [rows, cols / INT4_GROUP_SIZE as i64];
        let torch = |source| self.torch_error(name, source);
        let weight = Int4Weight {
            values: Tensor::f_from_slice(&groups.values)
                .and_then(|t| t.f_reshape(&shape))
                .map_err(torch)?,
            scales: Tensor::f_from_slice(&groups.scales)
                .and_then(|t| t.f_reshape(group_shape))
                .map_err(torch)?,
            zeros: Tensor::f_from_slice(&groups.zeros)
                .and_then(|t| t.f_reshape(group_shape))
                .map_err(torch)?,
        };
        let unpermuted = self.unpermute_qk(name, &gguf, &shape, |n| {
            weight.map_rows(|t| unpermute(t, n))
        })?;
        Ok(Some(unpermuted.unwrap_or(weight)))
    }

    fn stored_quantized(&self, name: &str) -> bool {
        self.info(name)
            .is_ok_and(|(_, info)| info.ggml_type.is_block_quantized())
    }
}

impl GgufSource {
    /// llama.cpp's name for `name` and its tensor info.
    fn info(&self, name: &str) -> Result<(String, &TensorInfo), WeightError> {
        let missing = || WeightError::Missing {
            file: self.file.path().to_path_buf(),
            tensor: name.to_string(),
        };
        let gguf = gguf_name(name).ok_or_else(missing)?;
        let info = self.file.tensor(&gguf).map_err(|_| missing())?;
        Ok((gguf, info))
    }

    fn torch_error(&self, name: &str, source: tch::TchError) -> WeightError {
        WeightError::Torch {
            file: self.file(),
            tensor: name.to_string(),
            source,
        }
    }

    /// `Some(undo(heads))` for a q or k weight llama.cpp permuted (rows of
    /// `shape` grouped per head), `None` for any other tensor.
    fn unpermute_qk<T>(
        &self,
        name: &str,
        gguf: &str,
        shape: &[i64],
        undo: impl FnOnce(i64) -> T,
    ) -> Result<Option<T>, WeightError> {
        let heads = if !self.permuted_qk {
            None
        } else if gguf.ends_with("attn_q.weight") {
            Some(self.num_heads)
        } else if gguf.ends_with("attn_k.weight") {
            Some(self.num_kv_heads)
        } else {
            None
        };
        match heads {
            Some(n) if shape.len() == 2 && n > 0 && shape[0] % (2 * n) == 0 => Ok(Some(undo(n))),
            Some(_) => Err(WeightError::Shape {
                file: self.file(),
                tensor: name.to_string(),
                expected: vec![],
                got: shape.to_vec(),
            }),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_layer_names() {
        assert_eq!(
            gguf_name("model.layers.12.self_attn.k_proj.weight").as_deref(),
            Some("blk.12.attn_k.weight")
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(gguf_name("model.layers.0.unknown.weight"), None);
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(n_head, 2, rows/n_head/2, cols).swapaxes(1, 2)
        let (n_head, rows, cols) = (3i64, 12i64, 2i64);
        let w =
            Tensor::arange(rows * cols, (tch::Kind::Float, tch::Device::Cpu)).reshape([rows, cols]);
        let permuted = w
            .reshape([n_head, 2, rows / n_head / 2, cols])
            .transpose(1, 2)
            .reshape([rows, cols]);
        let back = unpermute(&permuted, n_head);
        assert!(back.equal(&w));
    }
}
