//! Times the fused-MoE operation (`layers::moe`: router, top-k routing,
//! grouped experts) on random weights, for `scripts/bench_moe.py`, which
//! runs transformers' Mixtral MoE block on the same shapes and threads.
//! Prints one JSON line per token count: median and mean milliseconds per
//! call over `--iters` calls after `--warmup`.

use std::time::Instant;

use clap::Parser;
use tch::{Device, Kind, Tensor};
use workers::layers::moe::{fused_moe, route, ScaleAt};

#[derive(Parser)]
struct Args {
    /// Token counts to time (a decode batch or a prefill chunk each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,128,512")]
    tokens: Vec<i64>,
    #[arg(long, default_value_t = 1024)]
    hidden: i64,
    /// Each expert's intermediate size.
    #[arg(long, default_value_t = 3584)]
    inter: i64,
    #[arg(long, default_value_t = 8)]
    experts: i64,
    #[arg(long, default_value_t = 2)]
    top_k: usize,
    #[arg(long, default_value_t = 20)]
    iters: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// torch intra-op threads (0: torch's default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let _guard = tch::no_grad_guard();
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let (h, i, e) = (args.hidden, args.inter, args.experts);
    let router = Tensor::f_randn([e, h], opts)?;
    let w13 = Tensor::f_randn([e, 2 * i, h], opts)?.f_mul_scalar(0.02)?;
    let w2 = Tensor::f_randn([e, h, i], opts)?.f_mul_scalar(0.02)?;
    for &t in &args.tokens {
        let x = Tensor::f_randn([t, h], opts)?;
        let call = || -> anyhow::Result<Tensor> {
            let logits = x.f_linear::<&Tensor>(&router, None)?;
            let (weights, ids) = route(&logits, args.top_k, true, Kind::Float)?;
            Ok(fused_moe(
                &x,
                &weights,
                &ids,
                &w13,
                &w2,
                0,
                ScaleAt::Output,
            )?)
        };
        for _ in 0..args.warmup {
            let _ = call()?;
        }
        let mut ms = Vec::with_capacity(args.iters);
        for _ in 0..args.iters {
            let start = Instant::now();
            let _ = call()?;
            ms.push(start.elapsed().as_secs_f64() * 1e3);
        }
        let mean = ms.iter().sum::<f64>() / ms.len().max(1) as f64;
        ms.sort_by(f64::total_cmp);
        let median = ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN);
        println!(
            "{}",
            serde_json::json!({"tokens": t, "median_ms": median, "mean_ms": mean,
                               "threads": tch::get_num_threads()})
        );
    }
    Ok(())
}
