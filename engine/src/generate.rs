//! `engine generate`: one prompt, in this process, with timing.
//!
//! Prefills the prompt in one forward pass, then decodes a token per step
//! over a paged KV cache, exactly as a served request would run, and prints
//! the text as it comes and the decode speed. `--json` prints a machine
//! readable record instead (used by the benchmark script). With `--tp N`
//! (N > 1) it runs N worker processes instead ([`crate::generate_tp`]).

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use model_files::ModelSource;
use workers::batch::{BatchLimits, ForwardBatch, SequenceChunk};
use workers::layers::moe::ExpertPlacement;
use workers::loader::{self, LoadOptions};
use workers::paged_kv::PagedKvCache;
use workers::parallel::TpGroup;
use workers::progress::LoadProgress;
use workers::sampler::{SamplingParams, SequenceSampler};

use crate::chat_template::ChatTemplate;
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

/// Runs `engine generate`.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let device = loader::parse_device(&args.model_args.device).map_err(anyhow::Error::msg)?;
    let numerics = args.model_args.numerics().map_err(anyhow::Error::msg)?;
    let options = LoadOptions {
        format: args
            .model_args
            .load_format
            .parse()
            .map_err(anyhow::Error::msg)?,
        device,
        kind: loader::parse_dtype(&args.model_args.dtype, device).map_err(anyhow::Error::msg)?,
        seed: args.seed.unwrap_or(0),
        attention_backend: numerics.attention_backend,
        hf_overrides: loader::parse_hf_overrides(&args.model_args.hf_overrides)
            .map_err(anyhow::Error::msg)?,
        quantization: numerics.quantization,
        expert_placement: if args.model_args.enable_expert_parallel {
            ExpertPlacement::WholeExperts
        } else {
            ExpertPlacement::SplitIntermediate
        },
    };
    if args.model_args.block_size == 0 {
        bail!("--block-size must be positive");
    }
    let source = ModelSource::resolve(&args.model_args.model)?;
    let tokenizer = Tokenizer::from_model_source(&source)?;
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
    match args.model_args.tensor_parallel_size {
        0 => bail!("--tp must be at least 1"),
        1 => {}
        _ => return crate::generate_tp::run(args, std::sync::Arc::new(tokenizer), prompt_ids),
    }

    let load_start = Instant::now();
    let progress = LoadProgress::new(&source.name, !args.json);
    let model = loader::load_model(&source, &options, &TpGroup::single(), |done, total| {
        progress.update(done, total)
    })?;
    progress.finish();
    let load_secs = load_start.elapsed().as_secs_f64();

    let config = model.config();
    let total_len = prompt_ids.len() + args.max_tokens;
    if total_len > config.max_position_embeddings {
        bail!(
            "prompt ({}) + max_tokens ({}) exceeds the model's {} positions",
            prompt_ids.len(),
            args.max_tokens,
            config.max_position_embeddings
        );
    }
    let num_blocks = total_len.div_ceil(args.model_args.block_size);
    // One sequence holding every block: one KV cache group suffices.
    let spec = model.kv_cache_spec(num_blocks, args.model_args.block_size, false);
    let mut cache = PagedKvCache::new(spec, options.kind, device)?;
    let limits = BatchLimits {
        vocab_size: config.vocab_size,
        num_blocks,
        block_size: args.model_args.block_size,
        max_positions: config.max_position_embeddings,
        num_groups: 1,
    };
    let block_tables: Vec<Vec<u32>> = vec![(0..num_blocks as u32).collect()];
    let params = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        ..SamplingParams::greedy()
    };
    let mut sampler = SequenceSampler::new(params, args.seed);
    let eos = tokenizer.eos_token_ids().to_vec();

    // Warm up as a server does at startup (CUDA context, cuBLAS handles,
    // first-use kernel loads stay out of the timings): one token through
    // the model, its KV slot overwritten by the prefill below.
    let warm_up = SequenceChunk {
        token_ids: prompt_ids[..1].to_vec(),
        num_computed: 0,
        block_tables: block_tables.clone(),
        want_logits: true,
    };
    let _ = model.forward(
        &ForwardBatch::build(&[warm_up], limits, device)?,
        &mut cache,
    )?;

    let mut output: Vec<u32> = Vec::with_capacity(args.max_tokens);
    let mut printed = 0usize;
    let mut next_input = prompt_ids.clone();
    let mut computed = 0usize;
    let start = Instant::now();
    let mut first_token_secs = 0.0;
    let (mut forward_secs, mut sample_secs) = (0.0, 0.0);
    let mut stdout = std::io::stdout();
    while output.len() < args.max_tokens {
        let chunk = SequenceChunk {
            token_ids: std::mem::take(&mut next_input),
            num_computed: computed,
            block_tables: block_tables.clone(),
            want_logits: true,
        };
        computed += chunk.token_ids.len();
        let step_start = Instant::now();
        let batch = ForwardBatch::build(&[chunk], limits, device)?;
        let logits = model.forward(&batch, &mut cache)?;
        let issued = Instant::now();
        let token = sampler.sample(&logits.get(0))?;
        if !output.is_empty() {
            // On a GPU, `forward` returns once its kernels are queued and the
            // sampler waits for them: the split says whether decode is bound
            // by launching kernels or by running them.
            forward_secs += (issued - step_start).as_secs_f64();
            sample_secs += issued.elapsed().as_secs_f64();
        }
        if output.is_empty() {
            first_token_secs = start.elapsed().as_secs_f64();
        }
        output.push(token);
        if !args.json {
            let text = tokenizer.decode(&output, true)?;
            // Hold back a trailing replacement char: a multi-byte character
            // may still be incomplete.
            if !text.ends_with('\u{FFFD}') && text.len() > printed {
                print!("{}", &text[printed..]);
                stdout.flush().ok();
                printed = text.len();
            }
        }
        if !args.ignore_eos && eos.contains(&token) {
            break;
        }
        next_input = vec![token];
    }
    let total_secs = start.elapsed().as_secs_f64();
    let decode_tokens = output.len().saturating_sub(1);
    let decode_secs = total_secs - first_token_secs;
    let decode_tps = if decode_secs > 0.0 {
        decode_tokens as f64 / decode_secs
    } else {
        0.0
    };
    let text = tokenizer.decode(&output, true)?;
    if args.json {
        let record = serde_json::json!({
            "model": source.name,
            "prompt_ids": prompt_ids,
            "output_ids": output,
            "text": text,
            "load_secs": load_secs,
            "ttft_secs": first_token_secs,
            "decode_tokens": decode_tokens,
            "decode_secs": decode_secs,
            "decode_tokens_per_sec": decode_tps,
            "decode_forward_secs": forward_secs,
            "decode_sample_secs": sample_secs,
        });
        println!("{record}");
    } else {
        if text.len() > printed {
            print!("{}", &text[printed..]);
        }
        println!();
        eprintln!(
            "prompt {} tokens, generated {} tokens; prefill {:.1} ms, decode {:.1} tokens/s (load {:.2} s)",
            prompt_ids.len(),
            output.len(),
            first_token_secs * 1e3,
            decode_tps,
            load_secs
        );
    }
    Ok(())
}
