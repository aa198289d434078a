//! `engine generate`: one prompt, with timing, through the same path
//! `engine serve` takes (executor, scheduler, engine core, incremental
//! detokenizer), so its speed is the server's speed. One rank runs the
//! model runner in this process (the uniproc executor); `--tp N` (N > 1)
//! runs N worker processes, since ranks need their own processes and a
//! communicator. Prints the text as it comes and the decode speed, or
//! with `--json` one machine-readable record (read by
//! `scripts/bench_decode.py`).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use futures::StreamExt;
use model_files::ModelSource;
use scheduler::{
    KvCacheConfig, SamplingParams, Scheduler, SchedulerConfig, SchedulingPolicy, StopParams,
};
use workers::parallel::CommunicatorKind;

use crate::chat_template::ChatTemplate;
use crate::core::{spawn_engine_core, EngineMetrics};
use crate::executor::{kv_cache_groups, start_executor, ExecutorBackend, ExecutorConfig};
use crate::local::{generate, GenerationParams};
use crate::model_args::ModelArgs;
use crate::tokenizer::Tokenizer;

/// Flags of `engine generate` (named as vLLM names them where they exist).
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// The user message (or raw text with `--raw`).
    #[arg(long)]
    pub prompt: String,
    /// Feed the prompt as is, without the model's chat template.
    #[arg(long)]
    pub raw: bool,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    #[arg(long, default_value_t = 0)]
    pub top_k: i64,
    /// Seed of the sampler (and of dummy weights).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep going after the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object (ids, text, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// KV cache of one prompt on CPU: far more than one sequence needs.
const KV_CACHE_BYTES: u64 = 256 << 20;

/// `engine serve`'s default step deadline (`--step-timeout`): a hung worker
/// ends the command instead of blocking it forever.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `engine generate`.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let model_args = &args.model_args;
    if model_args.block_size == 0 {
        bail!("--block-size must be positive");
    }
    let tensor_parallel_size = model_args.tensor_parallel_size;
    if tensor_parallel_size == 0 {
        bail!("--tp must be at least 1");
    }
    let numerics = model_args.numerics().map_err(anyhow::Error::msg)?;
    let source = ModelSource::resolve(&model_args.model)?;
    let tokenizer = Arc::new(Tokenizer::from_model_source(&source)?);
    let prompt = if args.raw {
        args.prompt.clone()
    } else {
        let template = ChatTemplate::from_model_source(&source, &tokenizer)?
            .context("the model has no chat template; pass --raw")?;
        let messages = serde_json::json!([{"role": "user", "content": args.prompt}]);
        template.render(&messages, true, None)?
    };
    let prompt_ids = tokenizer.encode(&prompt, args.raw)?;
    if prompt_ids.is_empty() {
        bail!("the prompt encodes to no tokens");
    }

    let load_start = Instant::now();
    // The whole prompt in one forward pass; the executor's memory profile
    // runs a step of this size first, which also warms the device up.
    let budget = prompt_ids.len();
    let executor = start_executor(&ExecutorConfig {
        model: model_args.model.clone(),
        load_format: model_args.load_format.clone(),
        dtype: model_args.dtype.clone(),
        seed: args.seed.unwrap_or(0),
        device: model_args.device.clone(),
        tensor_parallel_size,
        tp_communicator: CommunicatorKind::Auto,
        attention_backend: numerics.attention_backend,
        hf_overrides: model_args.hf_overrides.clone(),
        enable_expert_parallel: model_args.enable_expert_parallel,
        disable_hybrid_kv_cache: model_args.disable_hybrid_kv_cache_manager,
        quantization: numerics.quantization.as_str().into(),
        block_size: model_args.block_size,
        gpu_memory_utilization: 0.9,
        cpu_kv_cache_bytes: KV_CACHE_BYTES,
        max_num_batched_tokens: budget,
        worker_binary: None,
        distributed_executor_backend: if tensor_parallel_size == 1 {
            ExecutorBackend::Uniproc
        } else {
            ExecutorBackend::Multiproc
        },
        step_timeout: STEP_TIMEOUT,
        overlap_bitmasks: None,
    })
    .context("starting the model runner")?;
    let load_secs = load_start.elapsed().as_secs_f64();
    let max_model_len = executor.model_info().max_position_embeddings as usize;
    if prompt_ids.len() + args.max_tokens > max_model_len {
        bail!(
            "prompt ({}) + max_tokens ({}) exceeds the model's {max_model_len} positions",
            prompt_ids.len(),
            args.max_tokens
        );
    }
    let groups = kv_cache_groups(executor.model_info())?;
    let scheduler = Scheduler::with_kv_groups(
        SchedulerConfig {
            max_num_seqs: 1,
            max_num_batched_tokens: budget,
            max_model_len,
            enable_chunked_prefill: true,
            long_prefill_token_threshold: None,
            policy: SchedulingPolicy::Fcfs,
        },
        KvCacheConfig {
            num_blocks: executor.num_kv_blocks(),
            block_size: model_args.block_size,
            enable_prefix_caching: false,
        },
        &groups,
    )?;
    let metrics = EngineMetrics::register(&prometheus::Registry::new(), &model_args.model)?;
    // One request: nothing waits behind it.
    let core = spawn_engine_core(scheduler, executor, metrics.clone(), 1)?;
    let params = GenerationParams {
        request_id: "generate".into(),
        prompt_token_ids: prompt_ids.clone(),
        sampling: SamplingParams {
            temperature: args.temperature as f32,
            top_p: args.top_p as f32,
            top_k: args.top_k.max(0) as u32,
            seed: args.seed,
            ..SamplingParams::default()
        },
        stop: StopParams {
            max_tokens: args.max_tokens,
            min_tokens: 0,
            ignore_eos: args.ignore_eos,
            eos_token_ids: tokenizer.eos_token_ids().to_vec(),
            stop_token_ids: Vec::new(),
        },
        stop_strings: Vec::new(),
        include_stop_str_in_output: false,
        skip_special_tokens: true,
        n: 1,
        priority: 0,
        constraint: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async {
        let mut deltas = generate(&core, Arc::clone(&tokenizer), params)?;
        let start = Instant::now();
        let mut first_token: Option<(f64, WorkerSeconds)> = None;
        let mut output: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut stdout = std::io::stdout();
        while let Some(delta) = deltas.next().await {
            let delta = delta?;
            if first_token.is_none() && !delta.token_ids.is_empty() {
                first_token = Some((start.elapsed().as_secs_f64(), WorkerSeconds::of(&metrics)));
            }
            output.extend(&delta.token_ids);
            if !args.json {
                print!("{}", delta.text);
                stdout.flush().ok();
            }
            text.push_str(&delta.text);
        }
        anyhow::Ok((output, text, first_token, start.elapsed()))
    });
    core.shutdown();
    let (output, text, first_token, total) = result?;
    let (first_token_secs, at_first_token) = first_token.unwrap_or_default();
    // The core counts a step once its result is in, before the step's
    // tokens reach this loop: the difference is the decode steps'.
    let decode = WorkerSeconds::of(&metrics).since(&at_first_token);
    let decode_tokens = output.len().saturating_sub(1);
    let decode_secs = total.as_secs_f64() - first_token_secs;
    let decode_tps = if decode_secs > 0.0 {
        decode_tokens as f64 / decode_secs
    } else {
        0.0
    };
    if args.json {
        let record = serde_json::json!({
            "model": source.name,
            "tensor_parallel_size": tensor_parallel_size,
            "prompt_ids": prompt_ids,
            "output_ids": output,
            "text": text,
            "load_secs": load_secs,
            "ttft_secs": first_token_secs,
            "decode_tokens": decode_tokens,
            "decode_secs": decode_secs,
            "decode_tokens_per_sec": decode_tps,
            "decode_forward_secs": decode.forward,
            "decode_sample_secs": decode.sample,
        });
        println!("{record}");
    } else {
        println!();
        let ranks = if tensor_parallel_size == 1 {
            "rank"
        } else {
            "ranks"
        };
        eprintln!(
            "prompt {} tokens, generated {} tokens over {tensor_parallel_size} {ranks}; prefill {:.1} ms, decode {:.1} tokens/s (load {:.2} s)",
            prompt_ids.len(),
            output.len(),
            first_token_secs * 1e3,
            decode_tps,
            load_secs
        );
    }
    Ok(())
}

/// Rank 0's seconds in the forward pass (inputs prepared and the model
/// run) and in sampling, as the step phase counters have them. On a GPU
/// the forward pass returns once its kernels are queued and sampling
/// waits for them: the split says whether decode is bound by launching
/// kernels or by running them.
#[derive(Debug, Clone, Copy, Default)]
struct WorkerSeconds {
    forward: f64,
    sample: f64,
}

impl WorkerSeconds {
    fn of(metrics: &EngineMetrics) -> Self {
        let phase = |name: &str| metrics.step_phase_seconds.with_label_values(&[name]).get();
        Self {
            forward: phase("prepare") + phase("forward"),
            sample: phase("sample"),
        }
    }

    fn since(&self, earlier: &Self) -> Self {
        Self {
            forward: self.forward - earlier.forward,
            sample: self.sample - earlier.sample,
        }
    }
}
