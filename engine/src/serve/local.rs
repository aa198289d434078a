//! The local engine behind `engine serve`: its flags, the startup checks,
//! and the wiring of the executor (worker processes), the scheduler, the
//! engine core thread and the local provider (tokenizer, chat template,
//! detokenizer). Flags are named as vLLM names them where they mean the
//! same.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use model_files::ModelSource;
use scheduler::{AttentionWindow, KvCacheConfig, Scheduler, SchedulerConfig, SchedulingPolicy};
use workers::loader::parse_device;
use workers::parallel::CommunicatorKind;

use super::{FailureSignal, ServeArgs};
use crate::chat_template::ChatTemplate;
use crate::core::{spawn_engine_core, EngineCoreHandle, EngineMetrics, StatsLogger};
use crate::executor::{kv_cache_groups, start_executor, ExecutorConfig};
use crate::generation_config::{GenerationConfigSource, SamplingDefaults};
use crate::local::{LocalEngine, ToolSettings};
use crate::model_args::ModelArgs;
use crate::reasoning::ReasoningParser;
use crate::tokenizer::Tokenizer;
use crate::tool_calls::ToolCallParser;

/// The flags of `engine serve` that only the local engine reads.
#[derive(Debug, Clone, Args)]
pub struct LocalArgs {
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// Names clients use for the model (default: `--model`).
    #[arg(long, num_args = 1..)]
    pub served_model_name: Vec<String>,
    /// The ranks' communicator: auto (NCCL on CUDA with several ranks in a
    /// build with the `nccl` feature, else TCP), tcp (the CPU one), or
    /// nccl (even at --tp 1, so every collective runs through NCCL).
    #[arg(long, default_value = "auto")]
    pub tp_communicator: CommunicatorKind,
    /// Context length (default: the model's).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Most sequences waiting for a place in the running batch (each choice
    /// of each prompt is one); past it new requests get 429 with
    /// `Retry-After` instead of queueing without bound (TGI's
    /// `--max-concurrent-requests`, less the running ones).
    #[arg(long, default_value_t = 1024)]
    pub max_waiting: usize,
    /// Seconds a step may take before the worker group is declared hung
    /// (then every request in flight fails and `/health` answers 503).
    /// Each step's deadline is this plus ten times the measured time per
    /// token of recent steps for each token it schedules, so it grows with
    /// the model and the batch (worker processes only, not `uni`).
    #[arg(long, default_value_t = 60.0)]
    pub step_timeout: f64,
    /// Token budget of one step (default: 2048, or max_model_len if larger
    /// without chunked prefill).
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Fraction of GPU memory for weights, activations and KV cache.
    #[arg(long, default_value_t = 0.9)]
    pub gpu_memory_utilization: f32,
    /// KV cache size on CPU, in GiB (vLLM's VLLM_CPU_KVCACHE_SPACE).
    #[arg(long, default_value_t = 1.0)]
    pub kv_cache_memory_gb: f64,
    /// Reuse KV blocks of shared prompt prefixes (on by default).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_prefix_caching: bool,
    /// Turn prefix caching off.
    #[arg(long)]
    pub no_enable_prefix_caching: bool,
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_chunked_prefill: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// fcfs or priority.
    #[arg(long, default_value = "fcfs")]
    pub scheduling_policy: String,
    /// mp (worker processes, the default) or uni (in this process).
    #[arg(long, default_value = "mp")]
    pub distributed_executor_backend: String,
    /// Sampling defaults for fields a request leaves out: auto (the
    /// model's generation_config.json; SmolLM2's model card settings for
    /// `smollm2`), vllm (none: OpenAI's defaults), or a folder holding a
    /// generation_config.json.
    #[arg(long, default_value = "auto")]
    pub generation_config: GenerationConfigSource,
    /// A JSON object set over those defaults, e.g.
    /// '{"temperature": 0.5, "max_tokens": 256}'.
    #[arg(long)]
    pub override_generation_config: Option<String>,
    /// No periodic stats line (throughput, running/waiting, KV cache).
    #[arg(long)]
    pub disable_log_stats: bool,
    /// Seconds between stats lines while there is work.
    #[arg(long, default_value_t = 5.0)]
    pub log_stats_interval: f64,
    /// A chat template used instead of the model's: a file, or the
    /// template itself (as vLLM's flag). Tool calling needs one that
    /// renders `tools` (`examples/tool_chat_template_hermes.jinja`).
    #[arg(long)]
    pub chat_template: Option<String>,
    /// How the model writes tool calls, for `tool_choice: "auto"`.
    #[arg(long, value_enum)]
    pub tool_call_parser: Option<ToolCallParser>,
    /// Lets the model decide when to call a tool (`tool_choice: "auto"`,
    /// the default when a request has tools); needs --tool-call-parser.
    #[arg(long)]
    pub enable_auto_tool_choice: bool,
    /// Splits a thinking model's `<think>...</think>` into
    /// `reasoning_content`: deepseek_r1 (output starts thinking) or qwen3
    /// (only output that opens with `<think>`).
    #[arg(long, value_enum)]
    pub reasoning_parser: Option<ReasoningParser>,
}

/// Starts the engine for `--model`, served under `--served-model-name`
/// (default: the model); returns it and the name a request uses.
pub(super) fn start_for_model(
    args: &ServeArgs,
    registry: &prometheus::Registry,
) -> Result<(LocalServing, String)> {
    let local = &args.local;
    let served_names = if local.served_model_name.is_empty() {
        vec![local.model_args.model.clone()]
    } else {
        local.served_model_name.clone()
    };
    let example_model = served_names[0].clone();
    let serving = start_local_engine(local, &local.model_args.model, served_names, registry)?;
    Ok((serving, example_model))
}

/// Starts the engine a gateway config asks for (its `local/<model>`
/// entries), or none when every entry is remote.
pub(super) fn start_for_config(
    args: &ServeArgs,
    config: &frontend::config::GatewayConfig,
    registry: &prometheus::Registry,
) -> Result<Option<LocalServing>> {
    let local = &args.local;
    match local_model(config, &local.model_args.model)? {
        Some(model) => Ok(Some(start_local_engine(
            local,
            &model,
            vec![model.clone()],
            registry,
        )?)),
        None => Ok(None),
    }
}

/// Tokens one step may schedule: `--max-num-batched-tokens`, else 2048,
/// or a whole prompt of `max_model_len` when chunked prefill is off.
fn step_token_budget(args: &LocalArgs, max_model_len: usize) -> usize {
    args.max_num_batched_tokens
        .unwrap_or(if args.enable_chunked_prefill {
            2048
        } else {
            max_model_len.max(2048)
        })
}

/// `--step-timeout` as a duration; refuses one no clock can hold.
fn step_timeout(args: &LocalArgs) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(args.step_timeout)
        .ok()
        .filter(|d| !d.is_zero() && *d <= MAX_STEP_TIMEOUT)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--step-timeout must be a positive number of seconds up to {}, got {}",
                MAX_STEP_TIMEOUT.as_secs(),
                args.step_timeout
            )
        })
}

/// Longest `--step-timeout`: a day.
const MAX_STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Refuses a tokenizer that can produce ids the model has no row for: every
/// request whose prompt or output held one would fail the worker's step.
/// A model vocabulary larger than the tokenizer's (padded embeddings) is
/// fine.
fn check_vocabularies(tokenizer_vocab: usize, model_vocab: usize) -> Result<()> {
    if tokenizer_vocab > model_vocab {
        bail!(
            "the tokenizer has {tokenizer_vocab} tokens but the model's vocabulary has \
             {model_vocab}: ids from {model_vocab} up would fail every step; serve the model \
             with the tokenizer it was trained with"
        );
    }
    Ok(())
}

/// Refuses a KV cache that cannot hold one sequence of `max_model_len`
/// tokens (as vLLM does at startup): such a server would accept requests
/// it could never finish. `blocks_needed(len)` is the most blocks a
/// sequence of `len` tokens holds at once (over all KV cache groups). The
/// message names the flags that fix it, and the longest length that fits.
fn check_kv_cache_fits(
    num_blocks: usize,
    block_size: usize,
    max_model_len: usize,
    blocks_needed: impl Fn(usize) -> usize,
) -> Result<()> {
    if blocks_needed(max_model_len) <= num_blocks {
        return Ok(());
    }
    // blocks_needed grows with the length: the longest that fits.
    let (mut fits, mut too_long) = (0, max_model_len);
    while too_long - fits > 1 {
        let mid = fits + (too_long - fits) / 2;
        if blocks_needed(mid) <= num_blocks {
            fits = mid;
        } else {
            too_long = mid;
        }
    }
    let capacity = num_blocks.saturating_mul(block_size);
    bail!(
        "the KV cache holds {capacity} tokens ({num_blocks} blocks of {block_size}), fewer than \
         one sequence of max_model_len {max_model_len} needs: lower --max-model-len to at most \
         {fits}, or give the cache more memory (--kv-cache-memory-gb on CPU, \
         --gpu-memory-utilization on GPU)"
    );
}

/// Refuses, before anything starts, a communicator the device or this
/// build cannot run (`--tp-communicator nccl` on a CPU, or without the
/// `nccl` feature), naming the flag.
fn check_communicator(args: &LocalArgs) -> Result<()> {
    let device =
        parse_device(&args.model_args.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    args.tp_communicator
        .check(device)
        .map_err(|reason| anyhow::anyhow!("--tp-communicator {}: {reason}", args.tp_communicator))
}

/// The model the local engine must load for `config`: the `<model>` of
/// its `local/<model>` entries (`engine` means `--model`), or `None` when
/// every entry is remote. One engine serves one model, so entries naming
/// two different local models are an error.
fn local_model(
    config: &frontend::config::GatewayConfig,
    default_model: &str,
) -> Result<Option<String>> {
    let mut wanted: Option<String> = None;
    for entry in &config.model_list {
        let model = &entry.litellm_params.model;
        if !frontend::config::is_local_model(model) {
            continue;
        }
        let name = match model.strip_prefix("local/") {
            Some(m) if !m.is_empty() => m.to_owned(),
            _ => default_model.to_owned(),
        };
        match &wanted {
            Some(w) if *w != name => bail!(
                "model_list names two local models (`{w}` and `{name}`); one engine serves one model"
            ),
            _ => wanted = Some(name),
        }
    }
    Ok(wanted)
}

/// A running local engine: the provider the HTTP layer calls and the
/// core's handle (health, shutdown).
pub(super) struct LocalServing {
    provider: Arc<dyn frontend::Provider>,
    core: EngineCoreHandle,
    /// The periodic stats line; stops with the server.
    _stats: Option<StatsLogger>,
}

impl LocalServing {
    /// The provider that serves the model.
    pub(super) fn provider(&self) -> Arc<dyn frontend::Provider> {
        Arc::clone(&self.provider)
    }

    /// Resolves when the engine fails.
    pub(super) fn failure_signal(&self) -> FailureSignal {
        let core = self.core.clone();
        Box::pin(async move { core.failed().await })
    }

    /// Asks the engine core to stop.
    pub(super) fn shutdown(&self) {
        self.core.shutdown();
    }

    /// Whether the engine is still healthy (an error once a worker died).
    pub(super) fn health(&self) -> Result<(), crate::core::CoreError> {
        self.core.health()
    }
}

/// Starts the workers, the scheduler and the engine core for `model`
/// (the serve flags give everything else), served under `served_names`,
/// its metrics in `registry`.
fn start_local_engine(
    args: &LocalArgs,
    model: &str,
    served_names: Vec<String>,
    registry: &prometheus::Registry,
) -> Result<LocalServing> {
    check_communicator(args)?;
    let started = std::time::Instant::now();
    let source = ModelSource::resolve(model)?;
    let tokenizer = Arc::new(Tokenizer::from_model_source(&source)?);
    let template = match &args.chat_template {
        Some(given) => Some(ChatTemplate::from_flag(given, &tokenizer)?),
        None => ChatTemplate::from_model_source(&source, &tokenizer)?,
    };
    if args.enable_auto_tool_choice && args.tool_call_parser.is_none() {
        bail!("--enable-auto-tool-choice needs --tool-call-parser (hermes, llama3_json, llama4_pythonic, mistral, qwen3_coder)");
    }
    let defaults = SamplingDefaults::load(
        &source,
        &args.generation_config,
        args.override_generation_config.as_deref(),
    )?;
    if let Some(d) = defaults.describe() {
        eprintln!(
            "engine: default sampling parameters from --generation-config {}: {d} (a request's own fields win)",
            match &args.generation_config {
                GenerationConfigSource::Auto => "auto".to_owned(),
                GenerationConfigSource::Vllm => "vllm".to_owned(),
                GenerationConfigSource::Folder(p) => p.display().to_string(),
            }
        );
    }
    if std::time::Duration::try_from_secs_f64(args.log_stats_interval).map_or(true, |d| d.is_zero())
    {
        bail!("--log-stats-interval must be a positive number of seconds");
    }
    let policy = match args.scheduling_policy.as_str() {
        "fcfs" => SchedulingPolicy::Fcfs,
        "priority" => SchedulingPolicy::Priority,
        other => bail!("unknown --scheduling-policy `{other}` (fcfs, priority)"),
    };
    if args.model_args.block_size == 0 || args.model_args.block_size > 1024 {
        bail!("--block-size must be in 1..=1024");
    }
    workers::loader::parse_hf_overrides(&args.model_args.hf_overrides)
        .map_err(anyhow::Error::msg)?;
    let numerics = args.model_args.numerics().map_err(anyhow::Error::msg)?;

    eprintln!(
        "engine: starting {} worker(s) for {}",
        args.model_args.tensor_parallel_size, source.name
    );
    let executor = start_executor(&ExecutorConfig {
        model: model.to_owned(),
        load_format: args.model_args.load_format.clone(),
        dtype: args.model_args.dtype.clone(),
        seed: args.seed,
        device: args.model_args.device.clone(),
        tensor_parallel_size: args.model_args.tensor_parallel_size,
        tp_communicator: args.tp_communicator,
        attention_backend: numerics.attention_backend,
        hf_overrides: args.model_args.hf_overrides.clone(),
        enable_expert_parallel: args.model_args.enable_expert_parallel,
        disable_hybrid_kv_cache: args.model_args.disable_hybrid_kv_cache_manager,
        quantization: numerics.quantization.as_str().into(),
        block_size: args.model_args.block_size,
        gpu_memory_utilization: args.gpu_memory_utilization,
        cpu_kv_cache_bytes: (args.kv_cache_memory_gb * (1u64 << 30) as f64) as u64,
        // The largest step the scheduler may run, for activation profiling;
        // before the model is loaded its length is unknown, and the worker
        // caps this at the model's positions.
        max_num_batched_tokens: step_token_budget(
            args,
            args.max_model_len.unwrap_or(u32::MAX as usize),
        ),
        worker_binary: None,
        step_timeout: step_timeout(args)?,
        overlap_bitmasks: None,
        distributed_executor_backend: args
            .distributed_executor_backend
            .parse()
            .map_err(anyhow::Error::msg)?,
    })
    .context("starting the workers")?;
    check_vocabularies(
        tokenizer.vocab_size(),
        executor.model_info().vocab_size as usize,
    )?;
    let model_len = executor.model_info().max_position_embeddings as usize;
    let max_model_len = match args.max_model_len {
        Some(n) if n > model_len => {
            bail!("--max-model-len {n} exceeds the model's {model_len} positions")
        }
        Some(n) => n,
        None => model_len,
    };
    let max_num_batched_tokens = step_token_budget(args, max_model_len);
    let num_blocks = executor.num_kv_blocks();
    eprintln!(
        "engine: {num_blocks} KV blocks of {} tokens ({} tokens), max_model_len {max_model_len}",
        args.model_args.block_size,
        num_blocks * args.model_args.block_size
    );
    let groups = kv_cache_groups(executor.model_info())?;
    let prefix_caching = args.enable_prefix_caching && !args.no_enable_prefix_caching;
    if groups != [AttentionWindow::Full] {
        eprintln!("engine: KV cache groups (hybrid): {groups:?}");
        if prefix_caching {
            eprintln!(
                "engine: prefix caching is off with a hybrid KV cache (windowed layers drop \
                 blocks); --disable-hybrid-kv-cache-manager keeps every block and caches prefixes"
            );
        }
    }
    let scheduler = Scheduler::with_kv_groups(
        SchedulerConfig {
            max_num_seqs: args.max_num_seqs,
            max_num_batched_tokens,
            max_model_len,
            enable_chunked_prefill: args.enable_chunked_prefill,
            long_prefill_token_threshold: None,
            policy,
        },
        KvCacheConfig {
            num_blocks,
            block_size: args.model_args.block_size,
            enable_prefix_caching: prefix_caching,
        },
        &groups,
    )?;
    check_kv_cache_fits(
        num_blocks,
        args.model_args.block_size,
        max_model_len,
        |len| {
            scheduler
                .kv_cache()
                .max_blocks_held(len, max_num_batched_tokens)
        },
    )?;
    let metrics = EngineMetrics::register(registry, &served_names[0])?;
    let stats = if args.disable_log_stats {
        None
    } else {
        Some(StatsLogger::spawn(
            metrics.clone(),
            std::time::Duration::from_secs_f64(args.log_stats_interval),
        )?)
    };
    let max_in_flight = args.max_num_seqs.saturating_add(args.max_waiting);
    let core = spawn_engine_core(scheduler, executor, metrics, max_in_flight)?;
    let provider = Arc::new(
        LocalEngine::new(
            served_names,
            tokenizer,
            template,
            core.clone(),
            max_model_len,
            policy == SchedulingPolicy::Priority,
        )
        .with_sampling_defaults(defaults)
        .with_tool_settings(ToolSettings {
            parser: args.tool_call_parser,
            auto_tool_choice: args.enable_auto_tool_choice,
        })
        .with_reasoning_parser(args.reasoning_parser),
    );
    eprintln!(
        "engine: engine ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(LocalServing {
        provider,
        core,
        _stats: stats,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn args(flags: &[&str]) -> LocalArgs {
        Cli::try_parse_from(std::iter::once("serve").chain(flags.iter().copied()))
            .unwrap()
            .serve
            .local
    }

    #[test]
    fn a_kv_cache_smaller_than_one_sequence_is_refused_naming_the_flags() {
        let one_group = |len: usize| len.div_ceil(16);
        check_kv_cache_fits(128, 16, 2048, one_group).unwrap();
        let err = check_kv_cache_fits(36, 16, 2048, one_group)
            .unwrap_err()
            .to_string();
        for needle in [
            "576 tokens",
            "max_model_len 2048",
            "--max-model-len",
            "--kv-cache-memory-gb",
            "--gpu-memory-utilization",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn a_tokenizer_larger_than_the_model_vocabulary_is_refused() {
        check_vocabularies(49152, 49152).unwrap();
        check_vocabularies(32000, 32064).unwrap();
        let err = check_vocabularies(49153, 49152).unwrap_err().to_string();
        assert!(
            err.contains("49153 tokens") && err.contains("49152"),
            "{err}"
        );
    }

    #[test]
    fn step_timeout_and_max_waiting_flags() {
        let a = args(&[]);
        assert_eq!(
            step_timeout(&a).unwrap(),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(a.max_waiting, 1024);
        let a = args(&["--step-timeout", "2.5", "--max-waiting", "0"]);
        assert_eq!(
            step_timeout(&a).unwrap(),
            std::time::Duration::from_millis(2500)
        );
        assert_eq!(a.max_waiting, 0);
        for bad in ["0", "1e20", "inf", "NaN"] {
            let err = step_timeout(&args(&["--step-timeout", bad])).unwrap_err();
            assert!(err.to_string().contains("--step-timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn generation_config_flags_parse() {
        assert_eq!(args(&[]).generation_config, GenerationConfigSource::Auto);
        let a = args(&[
            "--generation-config",
            "vllm",
            "--override-generation-config",
            r#"{"temperature": 0}"#,
            "--disable-log-stats",
        ]);
        assert_eq!(a.generation_config, GenerationConfigSource::Vllm);
        assert!(a.disable_log_stats);
    }

    #[test]
    fn the_communicator_defaults_to_auto() {
        let a = args(&[]);
        assert_eq!(a.tp_communicator, CommunicatorKind::Auto);
        check_communicator(&a).unwrap();
        check_communicator(&args(&["--tp-communicator", "tcp", "--tp", "3"])).unwrap();
    }

    #[test]
    fn nccl_on_cpu_is_refused_naming_the_flag() {
        let err = check_communicator(&args(&["--tp-communicator", "nccl"]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--tp-communicator nccl:"), "{err}");
        assert!(err.contains("CUDA devices only"), "{err}");
    }

    #[test]
    fn nccl_on_cuda_needs_the_feature() {
        let got = check_communicator(&args(&["--tp-communicator", "nccl", "--device", "cuda"]));
        if cfg!(feature = "nccl") {
            got.unwrap();
        } else {
            let err = got.unwrap_err().to_string();
            assert!(err.contains("--features nccl"), "{err}");
        }
    }

    #[test]
    fn an_unknown_communicator_is_a_usage_error() {
        let err = Cli::try_parse_from(["serve", "--tp-communicator", "mpi"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("auto, tcp, nccl"), "{err}");
    }
}
