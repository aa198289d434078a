//! The flags that say which model to load and how, shared by `engine
//! serve` and `engine generate` (named as vLLM names them), so both read
//! them one way.

use clap::Args;
use workers::attention::BackendChoice;
use workers::loader::QuantizationChoice;

/// Which model, on which device, split how.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// `smollm2`, `llama4` (Scout's shapes; with `--load-format dummy`),
    /// an HF model folder, an HF repo id in the local HF cache, or a
    /// `.gguf` file.
    #[arg(long, default_value = "smollm2")]
    pub model: String,
    /// Worker processes in the tensor-parallel group.
    #[arg(
        long = "tensor-parallel-size",
        short = 't',
        visible_alias = "tp",
        default_value_t = 1
    )]
    pub tensor_parallel_size: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// auto (f32 on CPU, bf16 on CUDA), float32, bfloat16, float16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// How linear weights are held (vLLM's flag): none (dequantized to
    /// --dtype), auto (a quantized GGUF on the CPU stays quantized, packed
    /// int4 for its 4-bit tensors; else none), gguf (the same, or an error),
    /// or int8 (quantized at load, one scale per output row; CPU only).
    /// `--batch-invariant` turns auto into none.
    #[arg(long, default_value = "auto")]
    pub quantization: String,
    /// auto, safetensors, gguf or dummy (random weights at the config's
    /// shapes).
    #[arg(long, default_value = "auto")]
    pub load_format: String,
    /// Attention backend of the workers: auto (the fastest one this build
    /// has for the device; torch under --batch-invariant), torch (the
    /// torch-ops reference, one sequence at a time) or torch-batched (a
    /// step's decode tokens in one call; not bitwise batch-invariant).
    #[arg(long, default_value = "auto")]
    pub attention_backend: BackendChoice,
    /// Make a request's output independent of what else runs beside it
    /// (its batch, a preemption that recomputes its prefix), as vLLM's
    /// batch-invariant mode: f32 weights and the per-sequence attention
    /// reference. The default's bf16 activations (quantized products) and
    /// batched attention can flip a greedy token where the top two logits
    /// nearly tie.
    #[arg(long)]
    pub batch_invariant: bool,
    /// A JSON object merged into the checkpoint's config, as vLLM's
    /// `--hf-overrides` (e.g. '{"num_hidden_layers": 2}'; Llama 4's text
    /// settings go under `text_config`).
    #[arg(long, default_value = "")]
    pub hf_overrides: String,
    /// Mixture-of-experts models: each rank holds whole experts (an even
    /// share) instead of a slice of every expert (vLLM's flag).
    #[arg(long)]
    pub enable_expert_parallel: bool,
    /// KV cache block size in tokens.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
    /// Keep every layer's KV for every position, even for sliding-window
    /// and chunked layers (vLLM's flag). By default those layers form
    /// their own KV cache groups and give back the blocks their window no
    /// longer sees.
    #[arg(long)]
    pub disable_hybrid_kv_cache_manager: bool,
}

/// How the workers compute: the attention backend and weight form, once
/// `--batch-invariant` has had its say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numerics {
    pub attention_backend: BackendChoice,
    pub quantization: QuantizationChoice,
}

impl ModelArgs {
    /// `--attention-backend` and `--quantization`, with `auto` pinned to
    /// the batch-invariant choice under `--batch-invariant`, and an error
    /// where an explicit choice contradicts it.
    pub fn numerics(&self) -> Result<Numerics, String> {
        let quantization: QuantizationChoice = self.quantization.parse()?;
        if !self.batch_invariant {
            return Ok(Numerics {
                attention_backend: self.attention_backend,
                quantization,
            });
        }
        let quantization = match quantization {
            QuantizationChoice::Auto | QuantizationChoice::None => QuantizationChoice::None,
            QuantizationChoice::Gguf | QuantizationChoice::Int8 => {
                return Err(format!(
                    "--batch-invariant needs --quantization none (auto picks it): quantized \
                     products round activations to bf16, not --quantization {}",
                    self.quantization
                ))
            }
        };
        let attention_backend = match self.attention_backend {
            BackendChoice::Auto | BackendChoice::Torch => BackendChoice::Torch,
            BackendChoice::TorchBatched => {
                return Err(
                    "--batch-invariant needs --attention-backend torch (auto picks it), \
                            not torch-batched"
                        .into(),
                )
            }
        };
        Ok(Numerics {
            attention_backend,
            quantization,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        model: ModelArgs,
    }

    fn numerics(args: &[&str]) -> Result<Numerics, String> {
        Cli::try_parse_from(std::iter::once("engine").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?
            .model
            .numerics()
    }

    #[test]
    fn auto_stays_auto_without_batch_invariance() {
        assert_eq!(
            numerics(&[]),
            Ok(Numerics {
                attention_backend: BackendChoice::Auto,
                quantization: QuantizationChoice::Auto
            })
        );
    }

    #[test]
    fn batch_invariant_pins_f32_weights_and_the_reference_attention() {
        let want = Ok(Numerics {
            attention_backend: BackendChoice::Torch,
            quantization: QuantizationChoice::None,
        });
        assert_eq!(numerics(&["--batch-invariant"]), want);
        assert_eq!(
            numerics(&[
                "--batch-invariant",
                "--quantization",
                "none",
                "--attention-backend",
                "torch"
            ]),
            want
        );
    }

    #[test]
    fn batch_invariant_refuses_choices_that_break_it() {
        for args in [
            &["--batch-invariant", "--quantization", "gguf"][..],
            &["--batch-invariant", "--quantization", "int8"],
            &["--batch-invariant", "--attention-backend", "torch-batched"],
        ] {
            let err = numerics(args).unwrap_err();
            assert!(err.contains("--batch-invariant needs"), "{args:?}: {err}");
        }
        assert!(numerics(&["--quantization", "q5"])
            .unwrap_err()
            .contains("unknown quantization"));
    }
}
