//! The executors on the tiny Llama fixture: a `worker` process driven over
//! gRPC gives the same tokens as the in-process runner, and a worker that
//! dies fails the executor quickly and for good.
//!
//! Needs the worker binary in the same target folder:
//! `cargo build -p workers --bin worker` first (scripts/test.sh does).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use engine::executor::{
    BitmaskJob, Executor, ExecutorBackend, ExecutorConfig, ExecutorError, MultiprocExecutor,
};
use proto::worker::{
    CachedRequest, NewRequest, RequestBitmask, SamplingParams, ScheduledTokens, StepBitmasks,
    StepRequest,
};

fn tiny_llama() -> String {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/generated/tiny_llama"
    ));
    assert!(
        dir.join("config.json").is_file(),
        "fixture {} is missing: run `.venv/bin/python scripts/fixtures/llama_parity.py`",
        dir.display()
    );
    dir.display().to_string()
}

/// `target/<profile>/worker`, next to this test's `deps/` folder.
fn worker_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("worker");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build -p workers --bin worker` (same profile and target dir) first",
        bin.display()
    );
    bin
}

fn config(backend: ExecutorBackend) -> ExecutorConfig {
    ExecutorConfig {
        model: tiny_llama(),
        dtype: "float32".into(),
        block_size: 4,
        cpu_kv_cache_bytes: 1 << 20,
        max_num_batched_tokens: 64,
        worker_binary: Some(worker_binary()),
        distributed_executor_backend: backend,
        ..Default::default()
    }
}

const PROMPTS: [&[u32]; 2] = [&[1, 17, 42, 99, 3, 250, 7], &[1, 5, 6, 7, 8]];

/// Two greedy requests: prefill together, then `steps` decode steps of
/// deltas; returns each request's output tokens.
fn generate(exec: &mut dyn Executor, steps: usize) -> Vec<Vec<u32>> {
    let mut step = prefill_step();
    let mut outputs = vec![Vec::new(); PROMPTS.len()];
    let mut computed: Vec<usize> = PROMPTS.iter().map(|p| p.len()).collect();
    for s in 0..=steps {
        step.step_id = s as u64;
        let result = exec.execute(step, None).unwrap();
        assert_eq!(result.step_id, s as u64);
        step = StepRequest::default();
        for (i, out) in result.outputs.iter().enumerate() {
            assert_eq!(out.req_id, format!("r{i}"));
            assert_eq!(out.sampled_token_ids.len(), 1);
            outputs[i].extend(&out.sampled_token_ids);
            step.cached_requests.push(CachedRequest {
                req_id: out.req_id.clone(),
                new_token_ids: out.sampled_token_ids.clone(),
                num_computed_tokens: computed[i] as u32,
                ..Default::default()
            });
            step.scheduled.push(ScheduledTokens {
                req_id: out.req_id.clone(),
                num_tokens: 1,
            });
            computed[i] += 1;
        }
    }
    outputs
}

/// Whether process `pid` has exited (gone, or a zombie awaiting its
/// parent's wait), read from `/proc/<pid>/stat`. Only "no such file" counts
/// as gone: any other error reading `/proc` fails the test rather than
/// passing it unchecked.
fn worker_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.contains(") Z"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => panic!("cannot read /proc/{pid}/stat to check the worker exited: {e}"),
    }
}

#[test]
fn multiproc_matches_uniproc_and_shuts_down() {
    let mut uni =
        engine::executor::UniprocExecutor::start(&config(ExecutorBackend::Uniproc)).unwrap();
    let expected = generate(&mut uni, 6);
    // 1 MiB over 2 layers * 4 kv heads * 16 dims * 4 tokens * 2 * 4 bytes.
    assert_eq!(uni.num_kv_blocks(), (1 << 20) / 4096);

    let mut mp = MultiprocExecutor::start(&config(ExecutorBackend::Multiproc)).unwrap();
    assert_eq!(mp.model_info().vocab_size, 256);
    assert_eq!(mp.num_kv_blocks(), uni.num_kv_blocks());
    mp.check_health().unwrap();
    assert_eq!(generate(&mut mp, 6), expected);

    let pid = mp.worker_pids()[0];
    assert!(!worker_is_gone(pid), "the check must see a live worker");
    mp.shutdown();
    assert!(worker_is_gone(pid), "the worker outlived shutdown");
    assert!(matches!(
        mp.execute(StepRequest::default(), None),
        Err(ExecutorError::ShutDown)
    ));
}

/// The prefill step of [`PROMPTS`] (greedy), as step 1.
fn prefill_step() -> StepRequest {
    let greedy = SamplingParams {
        temperature: 0.0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        ..Default::default()
    };
    let mut step = StepRequest {
        step_id: 1,
        ..Default::default()
    };
    for (i, p) in PROMPTS.iter().enumerate() {
        let id = format!("r{i}");
        step.new_requests.push(NewRequest {
            req_id: id.clone(),
            prompt_token_ids: p.to_vec(),
            sampling: Some(greedy),
            block_tables: one_table((0..8).map(|b| i as u32 * 8 + b).collect()),
            num_computed_tokens: 0,
        });
        step.scheduled.push(ScheduledTokens {
            req_id: id,
            num_tokens: p.len() as u32,
        });
    }
    step
}

/// A bitmask over the 256-token vocabulary allowing `tokens` only.
fn only(tokens: &[u32]) -> Vec<u32> {
    let mut words = vec![0u32; 8];
    for &t in tokens {
        words[t as usize / 32] |= 1 << (t % 32);
    }
    words
}

/// A bitmask job that takes `delay` (as a grammar might) and allows `r0`
/// `mask`, leaving `r1` free.
#[allow(clippy::disallowed_methods)] // the job runs on a plain thread
fn job(delay: Duration, mask: Vec<u32>) -> BitmaskJob<'static> {
    Box::new(move || {
        std::thread::sleep(delay);
        StepBitmasks {
            step_id: 1,
            masks: vec![RequestBitmask {
                req_id: "r0".into(),
                allowed_token_bitmask: mask,
            }],
        }
    })
}

/// Each executor runs a bitmask job beside the step: the sampling waits
/// for it, its mask constrains its request only, and a mask that allows
/// nothing fails that request alone.
#[test]
fn bitmasks_computed_beside_the_step_constrain_its_sampling() {
    // Overlapped, as on a GPU (on CPU the default computes them first).
    let config = |backend| ExecutorConfig {
        overlap_bitmasks: Some(true),
        ..config(backend)
    };
    let mut uni =
        engine::executor::UniprocExecutor::start(&config(ExecutorBackend::Uniproc)).unwrap();
    let free = uni.execute(prefill_step(), None).unwrap();
    let free: Vec<u32> = free
        .outputs
        .iter()
        .map(|o| o.sampled_token_ids[0])
        .collect();
    let forced = (free[0] + 1) % 256;
    let mut mp = MultiprocExecutor::start(&config(ExecutorBackend::Multiproc)).unwrap();
    let executors: [&mut dyn Executor; 2] = [&mut uni, &mut mp];
    for exec in executors {
        // The same requests afresh: drop what the runner holds of them.
        let afresh = |exec: &mut dyn Executor, bitmasks| {
            let forget = StepRequest {
                step_id: 0,
                finished_req_ids: vec!["r0".into(), "r1".into()],
                ..Default::default()
            };
            exec.execute(forget, None).unwrap();
            exec.execute(prefill_step(), Some(bitmasks)).unwrap()
        };
        let result = afresh(exec, job(Duration::from_millis(150), only(&[forced])));
        let sampled: Vec<u32> = result
            .outputs
            .iter()
            .map(|o| o.sampled_token_ids[0])
            .collect();
        assert_eq!(sampled, [forced, free[1]], "the mask binds r0 only");
        let waited = result.timings.unwrap().bitmask_wait_us;
        assert!(waited > 0, "sampling did not wait for the bitmasks");

        let result = afresh(exec, job(Duration::ZERO, vec![0; 8]));
        assert_eq!(result.failed.len(), 1, "{:?}", result.failed);
        assert_eq!(result.failed[0].req_id, "r0");
        assert!(
            result.failed[0].reason.contains("bitmask"),
            "{:?}",
            result.failed
        );
        assert_eq!(result.outputs.len(), 1);
        assert_eq!(result.outputs[0].sampled_token_ids, [free[1]]);
    }
    mp.shutdown();
}

#[test]
fn a_dead_worker_fails_fast_and_for_good() {
    let mut mp = MultiprocExecutor::start(&config(ExecutorBackend::Multiproc)).unwrap();
    generate(&mut mp, 1);
    let pid = mp.worker_pids()[0];
    // SIGKILL, as an OOM killer would.
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let start = Instant::now();
    let err = mp.execute(StepRequest::default(), None).unwrap_err();
    assert!(
        matches!(err, ExecutorError::WorkerDied { rank: 0, .. }),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // Every later call errors at once.
    let start = Instant::now();
    assert!(matches!(
        mp.execute(StepRequest::default(), None),
        Err(ExecutorError::WorkerDied { .. })
    ));
    assert!(matches!(
        mp.check_health(),
        Err(ExecutorError::WorkerDied { .. })
    ));
    assert!(start.elapsed() < Duration::from_millis(500));
    mp.shutdown();
}

#[test]
fn a_stopped_worker_fails_the_step_at_its_deadline_and_is_killed() {
    let mut cfg = config(ExecutorBackend::Multiproc);
    cfg.step_timeout = Duration::from_secs(2);
    let mut mp = MultiprocExecutor::start(&cfg).unwrap();
    generate(&mut mp, 2);
    let pid = mp.worker_pids()[0];
    // SIGSTOP: the process lives and its socket stays open, but it never
    // answers, as a stuck kernel or an NCCL wait would look.
    let status = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // A signal is delivered asynchronously: wait until the kernel shows the
    // process stopped, or a worker still running could answer the step.
    let stopped_by = Instant::now() + Duration::from_secs(5);
    while !process_is_stopped(pid) {
        assert!(Instant::now() < stopped_by, "worker {pid} did not stop");
        std::thread::yield_now();
    }

    let start = Instant::now();
    let err = mp.execute(StepRequest::default(), None).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(err, ExecutorError::WorkerDied { rank: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--step-timeout"), "{err}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // The hung group was killed (SIGKILL ends a stopped process too).
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z"))
                .unwrap_or(true),
        "the stopped worker was not killed"
    );
    assert!(matches!(
        mp.check_health(),
        Err(ExecutorError::WorkerDied { .. })
    ));
    mp.shutdown();
}

#[test]
fn start_executor_reports_a_bad_model() {
    let mut cfg = config(ExecutorBackend::Multiproc);
    cfg.model = "/nonexistent/model".into();
    let err = engine::executor::start_executor(&cfg).err().unwrap();
    assert!(
        matches!(
            err,
            ExecutorError::Setup {
                rank: 0,
                call: "LoadModel",
                ..
            }
        ),
        "{err}"
    );
    cfg.worker_binary = Some("/nonexistent/worker".into());
    assert!(matches!(
        engine::executor::start_executor(&cfg).err().unwrap(),
        ExecutorError::WorkerBinaryNotFound { .. }
    ));
}

/// Whether `/proc/<pid>/stat` shows the process stopped (`T`) or traced
/// (`t`).
fn process_is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(") ")?.1.to_owned();
            after_name.chars().next()
        })
        .is_some_and(|state| state == 'T' || state == 't')
}

/// `ids` as the block tables of a one-group KV cache.
fn one_table(ids: Vec<u32>) -> Vec<proto::worker::BlockTable> {
    vec![proto::worker::BlockTable { block_ids: ids }]
}
