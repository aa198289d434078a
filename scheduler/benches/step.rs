//! One engine step of the scheduler (`schedule()` + `update_from_output()`)
//! in steady-state decode with 256 and 1,024 running requests over a
//! 16,384-block KV cache (block size 16, prefix caching on).
//!
//! Only the two scheduler calls are timed: the model runner's output is
//! built once per running set (its order matches the schedule), and the
//! state is rebuilt, untimed, before requests outgrow the cache, so every
//! timed step is a plain decode step (about one request in 16 fills a block
//! and gets a new one, as in real decoding).
//!
//! Besides criterion's report, it times steps itself, prints a table and
//! writes `bench/results/scheduler_step.json` (with criterion's own mean
//! when it finds it under the target directory).

// A benchmark harness, not library code: failing loudly is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use scheduler::{
    KvCacheConfig, ModelRunnerOutput, Request, RequestId, Scheduler, SchedulerConfig,
    SchedulerOutput, SchedulingPolicy,
};

const NUM_BLOCKS: usize = 16_384;
const BLOCK_SIZE: usize = 16;
const PROMPT_LEN: usize = 16;
/// Steps before the state is rebuilt: 1,024 requests x (16 + 200) tokens
/// = 14 blocks each, inside the 16 blocks each may have.
const STEPS_PER_STATE: usize = 200;

struct State {
    sched: Scheduler,
    mro: ModelRunnerOutput,
    steps_left: usize,
}

fn build(n: usize) -> State {
    let config = SchedulerConfig {
        max_num_seqs: n,
        max_num_batched_tokens: 8192,
        max_model_len: 4096,
        enable_chunked_prefill: true,
        long_prefill_token_threshold: None,
        policy: SchedulingPolicy::Fcfs,
    };
    let kv = KvCacheConfig {
        num_blocks: NUM_BLOCKS,
        block_size: BLOCK_SIZE,
        enable_prefix_caching: true,
    };
    let mut sched = Scheduler::new(config, kv).unwrap();
    for i in 0..n {
        let prompt: Vec<u32> = (0..PROMPT_LEN as u32)
            .map(|t| (i as u32) * 1000 + t)
            .collect();
        let req = Request::builder(format!("req-{i:05}"), prompt)
            .max_tokens(3000)
            .ignore_eos(true)
            .build();
        sched.add_request(req).unwrap();
    }
    // Prefill everyone (untimed), then one decode step to learn the order.
    let mut out = sched.schedule().unwrap();
    loop {
        let mro = fake_output(&out);
        sched.update_from_output(&out, &mro);
        out = sched.schedule().unwrap();
        if out.scheduled_new_reqs.is_empty()
            && out.num_scheduled_tokens.iter().all(|(_, n)| *n == 1)
        {
            break;
        }
    }
    assert_eq!(out.num_scheduled_reqs(), n, "all requests decode");
    let mro = fake_output(&out);
    sched.update_from_output(&out, &mro);
    State {
        sched,
        mro,
        steps_left: STEPS_PER_STATE,
    }
}

fn fake_output(out: &SchedulerOutput) -> ModelRunnerOutput {
    let req_ids: Vec<RequestId> = out
        .num_scheduled_tokens
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    let sampled_token_ids = req_ids.iter().map(|_| vec![7u32]).collect();
    ModelRunnerOutput {
        req_ids,
        sampled_token_ids,
    }
}

/// Runs one timed step, rebuilding the state first (untimed) when due.
fn timed_step(state: &mut State, n: usize) -> Duration {
    if state.steps_left == 0 {
        *state = build(n);
    }
    state.steps_left -= 1;
    let t = Instant::now();
    let out = state.sched.schedule().unwrap();
    let res = state.sched.update_from_output(&out, &state.mro);
    let elapsed = t.elapsed();
    black_box((out, res));
    elapsed
}

fn bench_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler_step");
    for n in [256usize, 1024] {
        let mut state = build(n);
        group.bench_function(BenchmarkId::new("running", n), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| timed_step(&mut state, n)).sum());
        });
    }
    group.finish();
}

/// Where criterion keeps its data: the workspace's (git-ignored) `target/`,
/// whatever the working directory or `CARGO_TARGET_DIR` (cargo runs benches
/// from the crate folder, where a relative path would land in the sources).
fn criterion_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion")
}

/// Criterion's mean for one size, read from its `estimates.json` (a plain
/// string scan: the bench needs one number, not a JSON dependency).
fn criterion_mean_us(n: usize) -> Option<f64> {
    let path = criterion_dir().join(format!("scheduler_step/running/{n}/new/estimates.json"));
    let text = std::fs::read_to_string(path).ok()?;
    let mean = &text[text.find("\"mean\"")?..];
    let key = "\"point_estimate\":";
    let rest = mean[mean.find(key)? + key.len()..].trim_start();
    let end =
        rest.find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))?;
    rest[..end].parse::<f64>().ok().map(|ns| ns / 1000.0)
}

fn json_num(x: Option<f64>) -> String {
    x.map_or("null".to_string(), |v| format!("{v:.3}"))
}

/// Times 2,000 steps per size, prints a table and writes the JSON report.
fn report() {
    let goals = [(256usize, 100.0f64), (1024, 500.0)];
    let mut rows = Vec::new();
    println!(
        "\n{:>8} {:>10} {:>10} {:>10} {:>14} {:>9}",
        "running", "mean_us", "p50_us", "p99_us", "criterion_us", "goal_us"
    );
    for (n, goal) in goals {
        let mut state = build(n);
        for _ in 0..50 {
            timed_step(&mut state, n);
        }
        let mut t: Vec<f64> = (0..2000)
            .map(|_| timed_step(&mut state, n).as_secs_f64() * 1e6)
            .collect();
        t.sort_by(f64::total_cmp);
        let mean = t.iter().sum::<f64>() / t.len() as f64;
        let (p50, p99) = (t[t.len() / 2], t[t.len() * 99 / 100]);
        let crit = criterion_mean_us(n);
        println!(
            "{n:>8} {mean:>10.1} {p50:>10.1} {p99:>10.1} {:>14} {goal:>9.0}",
            crit.map_or("-".to_string(), |c| format!("{c:.1}"))
        );
        rows.push(format!(
            concat!(
                "    {{\"running_requests\": {}, \"num_blocks\": {}, \"block_size\": {}, ",
                "\"mean_us\": {:.3}, \"p50_us\": {:.3}, \"p99_us\": {:.3}, ",
                "\"criterion_mean_us\": {}, \"goal_us\": {}, \"meets_goal\": {}}}"
            ),
            n,
            NUM_BLOCKS,
            BLOCK_SIZE,
            mean,
            p50,
            p99,
            json_num(crit),
            goal,
            crit.unwrap_or(mean) <= goal
        ));
    }
    let doc = format!(
        concat!(
            "{{\n  \"benchmark\": \"scheduler_step\",\n",
            "  \"what\": \"one schedule() + update_from_output() in steady-state decode, 1 token per running request\",\n",
            "  \"results\": [\n{}\n  ]\n}}\n"
        ),
        rows.join(",\n")
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../bench/results/scheduler_step.json");
    match std::fs::write(&path, doc) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}

fn main() {
    let mut c = Criterion::default()
        .output_directory(&criterion_dir())
        .configure_from_args();
    bench_step(&mut c);
    c.final_summary();
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        report();
    }
}
