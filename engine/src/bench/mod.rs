//! `engine bench serve`: a serving benchmark of any OpenAI-compatible
//! server, in the shape of `vllm bench serve` (same flags, same table,
//! same result JSON keys), so numbers compare across servers.
//!
//! `dataset` makes the prompts, `client` sends one streamed request and
//! times its chunks, `report` computes and prints the result; this module
//! paces the requests: Poisson arrivals at `--request-rate` (or all at
//! once for `inf`), at most `--max-concurrency` in flight.

mod client;
mod dataset;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use client::{Api, Target};
pub use dataset::SampleRequest;
pub use report::Report;

/// `engine bench ...`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Benchmark an OpenAI-compatible server's online serving (vLLM's
    /// `vllm bench serve`).
    Serve(BenchServeArgs),
}

/// Flags of `engine bench serve` (named as vLLM names them).
#[derive(Debug, Clone, Args)]
pub struct BenchServeArgs {
    /// The server, e.g. http://127.0.0.1:8000 (default: --host and --port).
    #[arg(long)]
    pub base_url: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// /v1/completions or /v1/chat/completions.
    #[arg(long, default_value = "/v1/completions")]
    pub endpoint: String,
    /// The model to ask for (default: the server's first in /v1/models).
    #[arg(long)]
    pub model: Option<String>,
    /// random (seeded synthetic prompts) or sharegpt (needs --dataset-path).
    #[arg(long, default_value = "random")]
    pub dataset_name: String,
    /// A ShareGPT-format JSON file (implies --dataset-name sharegpt).
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub num_prompts: usize,
    #[arg(long, default_value_t = 1024)]
    pub random_input_len: usize,
    #[arg(long, default_value_t = 128)]
    pub random_output_len: usize,
    /// Lengths drawn within this fraction of the given ones.
    #[arg(long, default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Output tokens of every ShareGPT request (default: its answer's).
    #[arg(long)]
    pub sharegpt_output_len: Option<usize>,
    /// Requests per second, Poisson arrivals; inf sends all at once.
    #[arg(long, default_value = "inf")]
    pub request_rate: f64,
    /// Most requests in flight at once (default: no limit).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Seeds the prompts and the arrival times.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ask the server to ignore EOS, so every request makes its full
    /// output length.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Write the result as JSON (vLLM's keys).
    #[arg(long)]
    pub save_result: bool,
    /// Folder of the result file (default: the current one).
    #[arg(long)]
    pub result_dir: Option<PathBuf>,
    /// Name of the result file (default: engine-<rate>qps-<model>-<time>.json).
    #[arg(long)]
    pub result_filename: Option<String>,
    /// Bearer key for the server (default: $OPENAI_API_KEY); never printed.
    #[arg(long)]
    pub api_key: Option<String>,
}

/// Runs `engine bench ...`.
pub fn run(command: &BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Serve(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(serve(args))
        }
    }
}

impl BenchServeArgs {
    fn base_url(&self) -> String {
        self.base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", self.host, self.port))
            .trim_end_matches('/')
            .to_owned()
    }

    fn dataset(&self) -> Result<Vec<SampleRequest>> {
        if self.num_prompts == 0 {
            bail!("--num-prompts must be positive");
        }
        match (self.dataset_name.as_str(), &self.dataset_path) {
            (_, Some(path)) => {
                dataset::sharegpt(path, self.num_prompts, self.sharegpt_output_len, self.seed)
            }
            ("random", None) => dataset::random(
                self.num_prompts,
                self.random_input_len,
                self.random_output_len,
                self.random_range_ratio,
                self.seed,
            ),
            ("sharegpt", None) => bail!("--dataset-name sharegpt needs --dataset-path"),
            (other, None) => bail!("unknown --dataset-name `{other}` (random, sharegpt)"),
        }
    }
}

/// The server's first model, from `GET /v1/models`.
async fn first_model(target: &Target, base: &str) -> Result<String> {
    let mut req = target.client.get(format!("{base}/v1/models"));
    if let Some(key) = &target.api_key {
        req = req.bearer_auth(key);
    }
    let list: Value = req
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("GET /v1/models (pass --model to skip it)")?
        .json()
        .await
        .context("GET /v1/models: not JSON")?;
    list.pointer("/data/0/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("GET /v1/models listed no model; pass --model")
}

/// Gaps between arrivals: exponential at `rate` per second (a Poisson
/// process, as vLLM's `burstiness` 1), zero for an infinite rate.
fn arrival_gaps(n: usize, rate: f64, seed: u64) -> Vec<Duration> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            if rate.is_infinite() {
                Duration::ZERO
            } else {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                // A rate near zero waits "forever", never panics.
                Duration::try_from_secs_f64(-u.ln() / rate).unwrap_or(Duration::MAX)
            }
        })
        .collect()
}

async fn serve(args: &BenchServeArgs) -> Result<()> {
    if args.request_rate.is_nan() || args.request_rate <= 0.0 {
        bail!("--request-rate must be positive (or inf)");
    }
    if args.max_concurrency == Some(0) {
        bail!("--max-concurrency must be positive");
    }
    let requests = args.dataset()?;
    let base = args.base_url();
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .context("building the HTTP client")?;
    let mut target = Target {
        client,
        url: format!("{base}{}", args.endpoint),
        api: Api::of_endpoint(&args.endpoint),
        model: String::new(),
        api_key: args
            .api_key
            .clone()
            .or_else(|| std::env::var("OPENAI_API_KEY").ok())
            .filter(|k| !k.is_empty()),
        ignore_eos: args.ignore_eos,
    };
    target.model = match &args.model {
        Some(m) => m.clone(),
        None => first_model(&target, &base).await?,
    };
    let target = Arc::new(target);
    println!(
        "Benchmarking {} at {} with {} prompts, request rate {}, max concurrency {}",
        target.model,
        target.url,
        requests.len(),
        args.request_rate,
        args.max_concurrency
            .map_or_else(|| "none".to_owned(), |c| c.to_string()),
    );
    let limit = args
        .max_concurrency
        .map(|c| Arc::new(tokio::sync::Semaphore::new(c)));
    let gaps = arrival_gaps(requests.len(), args.request_rate, args.seed);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(requests.len());
    for (req, gap) in requests.into_iter().zip(gaps) {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let target = Arc::clone(&target);
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = match &limit {
                Some(s) => s.clone().acquire_owned().await.ok(),
                None => None,
            };
            target.send(&req).await
        }));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("a request task panicked")?);
    }
    let report = Report::new(outcomes, start.elapsed(), args.max_concurrency);
    print!("{}", report.table());
    if let Some(first) = report.first_error() {
        eprintln!("first error: {first}");
    }
    if args.save_result {
        let path = result_path(args, &target.model);
        let mut extra = Map::new();
        extra.insert("date".into(), json!(timestamp()));
        extra.insert("backend".into(), json!("openai"));
        extra.insert("base_url".into(), json!(base));
        extra.insert("endpoint".into(), json!(args.endpoint));
        extra.insert("model_id".into(), json!(target.model));
        extra.insert("num_prompts".into(), json!(args.num_prompts));
        extra.insert(
            "request_rate".into(),
            if args.request_rate.is_infinite() {
                json!("inf")
            } else {
                json!(args.request_rate)
            },
        );
        extra.insert("seed".into(), json!(args.seed));
        let text = serde_json::to_string_pretty(&report.to_json(extra))?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("Result saved to {}", path.display());
    }
    if report.completed == 0 {
        bail!("every request failed");
    }
    Ok(())
}

/// Seconds since the Unix epoch, for the result's `date` and file name.
fn timestamp() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn result_path(args: &BenchServeArgs, model: &str) -> PathBuf {
    let name = args.result_filename.clone().unwrap_or_else(|| {
        let model: String = model
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "engine-{}qps-{model}-{}.json",
            args.request_rate,
            timestamp()
        )
    });
    args.result_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn poisson_gaps_are_seeded_and_average_one_over_the_rate() {
        assert!(arrival_gaps(5, f64::INFINITY, 0)
            .iter()
            .all(|g| g.is_zero()));
        let gaps = arrival_gaps(4000, 20.0, 3);
        assert_eq!(gaps, arrival_gaps(4000, 20.0, 3));
        let mean = gaps.iter().map(Duration::as_secs_f64).sum::<f64>() / gaps.len() as f64;
        assert!((mean - 0.05).abs() < 0.005, "{mean}");
    }
}
