//! `engine generate --tp N` (N > 1): the prompt through N worker
//! processes, by the same path `engine serve --tp N` takes (executor,
//! scheduler, engine core, incremental detokenizer), since ranks need
//! their own processes and a communicator, which only the executor owns.
//! Prints the text as it comes and the same timings as the one-rank path.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use scheduler::{
    KvCacheConfig, SamplingParams, Scheduler, SchedulerConfig, SchedulingPolicy, StopParams,
};
use workers::parallel::CommunicatorKind;

use crate::core::{spawn_engine_core, EngineMetrics};
use crate::executor::{kv_cache_groups, start_executor, ExecutorBackend, ExecutorConfig};
use crate::generate::GenerateArgs;
use crate::local::{generate, GenerationParams};
use crate::tokenizer::Tokenizer;

/// KV cache of one prompt on CPU: far more than one sequence needs.
const KV_CACHE_BYTES: u64 = 256 << 20;

/// `engine serve`'s default step deadline (`--step-timeout`): a hung worker
/// ends the command instead of blocking it forever.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `prompt_ids` through `args.model_args.tensor_parallel_size` worker processes.
pub fn run(args: &GenerateArgs, tokenizer: Arc<Tokenizer>, prompt_ids: Vec<u32>) -> Result<()> {
    let load_start = Instant::now();
    let numerics = args.model_args.numerics().map_err(anyhow::Error::msg)?;
    let budget = prompt_ids.len().max(2048);
    let executor = start_executor(&ExecutorConfig {
        model: args.model_args.model.clone(),
        load_format: args.model_args.load_format.clone(),
        dtype: args.model_args.dtype.clone(),
        seed: args.seed.unwrap_or(0),
        device: args.model_args.device.clone(),
        tensor_parallel_size: args.model_args.tensor_parallel_size,
        tp_communicator: CommunicatorKind::Auto,
        attention_backend: numerics.attention_backend,
        hf_overrides: args.model_args.hf_overrides.clone(),
        enable_expert_parallel: args.model_args.enable_expert_parallel,
        disable_hybrid_kv_cache: args.model_args.disable_hybrid_kv_cache_manager,
        quantization: numerics.quantization.as_str().into(),
        block_size: args.model_args.block_size,
        gpu_memory_utilization: 0.9,
        cpu_kv_cache_bytes: KV_CACHE_BYTES,
        max_num_batched_tokens: budget,
        worker_binary: None,
        distributed_executor_backend: ExecutorBackend::Multiproc,
        step_timeout: STEP_TIMEOUT,
        overlap_bitmasks: None,
    })
    .context("starting the workers")?;
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
            block_size: args.model_args.block_size,
            enable_prefix_caching: false,
        },
        &groups,
    )?;
    let metrics = EngineMetrics::register(&prometheus::Registry::new(), &args.model_args.model)?;
    // One request: nothing waits behind it.
    let core = spawn_engine_core(scheduler, executor, metrics, 1)?;
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
        let mut first_token_secs = None;
        let mut output: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut stdout = std::io::stdout();
        while let Some(delta) = deltas.next().await {
            let delta = delta?;
            if first_token_secs.is_none() && !delta.token_ids.is_empty() {
                first_token_secs = Some(start.elapsed().as_secs_f64());
            }
            output.extend(&delta.token_ids);
            if !args.json {
                print!("{}", delta.text);
                stdout.flush().ok();
            }
            text.push_str(&delta.text);
        }
        anyhow::Ok((
            output,
            text,
            first_token_secs.unwrap_or(0.0),
            start.elapsed(),
        ))
    });
    core.shutdown();
    let (output, text, first_token_secs, total) = result?;
    let decode_tokens = output.len().saturating_sub(1);
    let decode_secs = total.as_secs_f64() - first_token_secs;
    let decode_tps = if decode_secs > 0.0 {
        decode_tokens as f64 / decode_secs
    } else {
        0.0
    };
    if args.json {
        let record = serde_json::json!({
            "model": args.model_args.model,
            "tensor_parallel_size": args.model_args.tensor_parallel_size,
            "prompt_ids": prompt_ids,
            "output_ids": output,
            "text": text,
            "load_secs": load_secs,
            "ttft_secs": first_token_secs,
            "decode_tokens": decode_tokens,
            "decode_secs": decode_secs,
            "decode_tokens_per_sec": decode_tps,
        });
        println!("{record}");
    } else {
        println!();
        eprintln!(
            "prompt {} tokens, generated {} tokens over {} ranks; prefill {:.1} ms, decode {:.1} tokens/s (load {:.2} s)",
            prompt_ids.len(),
            output.len(),
            args.model_args.tensor_parallel_size,
            first_token_secs * 1e3,
            decode_tps,
            load_secs
        );
    }
    Ok(())
}
