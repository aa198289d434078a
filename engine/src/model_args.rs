//! The flags that say which model to load and how, shared by `engine
//! serve` and `engine generate` (named as vLLM names them), so both read
//! them one way.

use clap::Args;
use workers::attention::BackendChoice;

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
    /// The default stays none until the quantized path keeps a preempted
    /// request's greedy output (its bf16 activations let a recomputed
    /// prefix differ from the decoded one).
    #[arg(long, default_value = "none")]
    pub quantization: String,
    /// auto, safetensors, gguf or dummy (random weights at the config's
    /// shapes).
    #[arg(long, default_value = "auto")]
    pub load_format: String,
    /// Attention backend of the workers: auto (the fastest batch-invariant
    /// one this build has for the device), torch (the torch-ops reference)
    /// or torch-batched (decode tokens in one call; not bitwise
    /// batch-invariant).
    #[arg(long, default_value = "auto")]
    pub attention_backend: BackendChoice,
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
