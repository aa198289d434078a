//! The engine's Prometheus metrics, named as vLLM names them so existing
//! dashboards work: `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`,
//! `vllm:time_to_first_token_seconds`, ...; plus the engine's own step
//! phase counters (`engine:step_phase_seconds_total{phase}`), which say
//! where a step's time goes (scripts/step_breakdown.py reads them).

use std::time::Duration;

use prometheus::{
    Counter, CounterVec, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry,
};
use proto::worker::StepTimings;

/// Handles to every engine metric, registered in the server's registry.
#[derive(Clone)]
pub struct EngineMetrics {
    pub num_requests_running: IntGauge,
    pub num_requests_waiting: IntGauge,
    /// Fraction in [0, 1], as vLLM reports it (despite the name).
    pub kv_cache_usage_perc: prometheus::Gauge,
    pub prefix_cache_queries: IntCounter,
    pub prefix_cache_hits: IntCounter,
    pub num_preemptions: IntCounter,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub time_to_first_token: Histogram,
    pub time_per_output_token: Histogram,
    pub e2e_request_latency: Histogram,
    pub request_success: IntCounter,
    /// Seconds spent per step phase, summed over steps (label `phase`:
    /// schedule, transport, prepare, forward, sample, output).
    pub step_phase_seconds: CounterVec,
    /// Steps run (the divisor of `step_phase_seconds`).
    pub steps: IntCounter,
    /// `step_phase_seconds`' series, looked up once: every step adds to
    /// all seven.
    phases: PhaseCounters,
    /// Seconds computing structured outputs' allowed-token bitmasks,
    /// beside the forward pass (not a step phase: only what the sampling
    /// rank waited for is, in `grammar`).
    pub bitmask_seconds: prometheus::Counter,
}

/// The `phase` labels of `engine:step_phase_seconds_total`.
const STEP_PHASES: [&str; 7] = [
    "schedule",
    "grammar",
    "transport",
    "prepare",
    "forward",
    "sample",
    "output",
];

/// One series of `engine:step_phase_seconds_total` per phase.
#[derive(Clone)]
struct PhaseCounters {
    schedule: Counter,
    grammar: Counter,
    transport: Counter,
    prepare: Counter,
    forward: Counter,
    sample: Counter,
    output: Counter,
}

impl PhaseCounters {
    /// Creates every phase's series, so a scrape before the first step
    /// already lists them at 0.
    fn of(vec: &CounterVec) -> Self {
        let phase = |name: &str| vec.with_label_values(&[name]);
        Self {
            schedule: phase(STEP_PHASES[0]),
            grammar: phase(STEP_PHASES[1]),
            transport: phase(STEP_PHASES[2]),
            prepare: phase(STEP_PHASES[3]),
            forward: phase(STEP_PHASES[4]),
            sample: phase(STEP_PHASES[5]),
            output: phase(STEP_PHASES[6]),
        }
    }
}

/// Where one step's time went, as the engine core measured it.
pub struct StepPhases {
    /// Scheduling and building the step request.
    pub schedule: Duration,
    /// Structured outputs: advancing the grammars over the step's
    /// samples, and computing the bitmasks when that was not done beside
    /// the forward pass. What the sampling rank waited for bitmasks
    /// computed beside it is in `worker`; the `grammar` phase counts all.
    pub grammar: Duration,
    /// The executor call, worker time included.
    pub round_trip: Duration,
    /// Rank 0's own account (zero when a worker sends none).
    pub worker: StepTimings,
    /// Turning the result into stream events, metrics and gauges.
    pub output: Duration,
}

fn buckets(v: &[f64]) -> Vec<f64> {
    v.to_vec()
}

impl EngineMetrics {
    /// Creates the metrics (labelled with `model_name`) and registers them.
    pub fn register(registry: &Registry, model_name: &str) -> prometheus::Result<Self> {
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_label("model_name", model_name);
        let hist = |name: &str, help: &str, b: &[f64]| {
            HistogramOpts::new(name, help)
                .const_label("model_name", model_name)
                .buckets(buckets(b))
        };
        let latency = [
            0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0,
        ];
        let step_phase_seconds = CounterVec::new(
            opts(
                "engine:step_phase_seconds_total",
                "Seconds of engine steps by phase: schedule, grammar (structured outputs: \
                 waiting for bitmasks, advancing grammars), transport (the executor round trip less the worker's phases), \
                 prepare, forward, sample, output.",
            ),
            &["phase"],
        )?;
        let m = Self {
            num_requests_running: IntGauge::with_opts(opts(
                "vllm:num_requests_running",
                "Requests in the running batch.",
            ))?,
            num_requests_waiting: IntGauge::with_opts(opts(
                "vllm:num_requests_waiting",
                "Requests waiting to be scheduled.",
            ))?,
            kv_cache_usage_perc: prometheus::Gauge::with_opts(opts(
                "vllm:kv_cache_usage_perc",
                "KV cache usage; 1 means 100 percent.",
            ))?,
            prefix_cache_queries: IntCounter::with_opts(opts(
                "vllm:prefix_cache_queries_total",
                "Prompt tokens looked up in the prefix cache.",
            ))?,
            prefix_cache_hits: IntCounter::with_opts(opts(
                "vllm:prefix_cache_hits_total",
                "Prompt tokens found in the prefix cache.",
            ))?,
            num_preemptions: IntCounter::with_opts(opts(
                "vllm:num_preemptions_total",
                "Preemptions since start.",
            ))?,
            prompt_tokens: IntCounter::with_opts(opts(
                "vllm:prompt_tokens_total",
                "Prefill tokens processed.",
            ))?,
            generation_tokens: IntCounter::with_opts(opts(
                "vllm:generation_tokens_total",
                "Generation tokens produced.",
            ))?,
            time_to_first_token: Histogram::with_opts(hist(
                "vllm:time_to_first_token_seconds",
                "Time to first token.",
                &latency,
            ))?,
            time_per_output_token: Histogram::with_opts(hist(
                "vllm:time_per_output_token_seconds",
                "Time per output token after the first.",
                &latency,
            ))?,
            e2e_request_latency: Histogram::with_opts(hist(
                "vllm:e2e_request_latency_seconds",
                "End-to-end request latency.",
                &latency,
            ))?,
            request_success: IntCounter::with_opts(opts(
                "vllm:request_success_total",
                "Requests finished normally.",
            ))?,
            phases: PhaseCounters::of(&step_phase_seconds),
            step_phase_seconds,
            steps: IntCounter::with_opts(opts("engine:steps_total", "Engine steps run."))?,
            bitmask_seconds: prometheus::Counter::with_opts(opts(
                "engine:grammar_bitmask_seconds_total",
                "Seconds computing structured outputs' allowed-token bitmasks, on a thread \
                 beside the forward pass; the grammar step phase has what sampling waited \
                 for them.",
            ))?,
        };
        registry.register(Box::new(m.num_requests_running.clone()))?;
        registry.register(Box::new(m.num_requests_waiting.clone()))?;
        registry.register(Box::new(m.kv_cache_usage_perc.clone()))?;
        registry.register(Box::new(m.prefix_cache_queries.clone()))?;
        registry.register(Box::new(m.prefix_cache_hits.clone()))?;
        registry.register(Box::new(m.num_preemptions.clone()))?;
        registry.register(Box::new(m.prompt_tokens.clone()))?;
        registry.register(Box::new(m.generation_tokens.clone()))?;
        registry.register(Box::new(m.time_to_first_token.clone()))?;
        registry.register(Box::new(m.time_per_output_token.clone()))?;
        registry.register(Box::new(m.e2e_request_latency.clone()))?;
        registry.register(Box::new(m.request_success.clone()))?;
        registry.register(Box::new(m.step_phase_seconds.clone()))?;
        registry.register(Box::new(m.steps.clone()))?;
        registry.register(Box::new(m.bitmask_seconds.clone()))?;
        Ok(m)
    }

    /// Adds one step's phases to the counters. The worker's microseconds
    /// come off the wire, so they are clamped to the round trip they are
    /// part of before the transport time is derived from them.
    pub fn observe_step(&self, step: StepPhases) {
        let round_trip = step.round_trip.as_secs_f64();
        let mut left = round_trip;
        let mut worker = |us: u64| {
            let secs = (us as f64 / 1e6).min(left);
            left -= secs;
            secs
        };
        let prepare = worker(step.worker.prepare_us);
        let forward = worker(step.worker.forward_us);
        let bitmask_wait = worker(step.worker.bitmask_wait_us);
        let sample = worker(step.worker.sample_us);
        let c = &self.phases;
        c.schedule.inc_by(step.schedule.as_secs_f64());
        c.grammar.inc_by(step.grammar.as_secs_f64() + bitmask_wait);
        c.prepare.inc_by(prepare);
        c.forward.inc_by(forward);
        c.sample.inc_by(sample);
        c.transport.inc_by(left);
        c.output.inc_by(step.output.as_secs_f64());
        self.steps.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(m: &EngineMetrics, name: &str) -> f64 {
        m.step_phase_seconds.with_label_values(&[name]).get()
    }

    #[test]
    fn every_phase_is_listed_before_the_first_step() {
        let registry = Registry::new();
        EngineMetrics::register(&registry, "m").unwrap();
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        for phase in STEP_PHASES {
            assert!(
                text.contains(&format!("phase=\"{phase}\"")),
                "{phase} missing:\n{text}"
            );
        }
    }

    #[test]
    fn a_step_splits_its_round_trip_into_worker_phases_and_transport() {
        let m = EngineMetrics::register(&Registry::new(), "m").unwrap();
        m.observe_step(StepPhases {
            schedule: Duration::from_micros(100),
            grammar: Duration::from_micros(50),
            round_trip: Duration::from_micros(10_000),
            worker: StepTimings {
                prepare_us: 1_000,
                forward_us: 6_000,
                bitmask_wait_us: 200,
                sample_us: 500,
            },
            output: Duration::from_micros(300),
        });
        assert_eq!(m.steps.get(), 1);
        for (name, secs) in [
            ("schedule", 1e-4),
            ("grammar", 2.5e-4),
            ("prepare", 1e-3),
            ("forward", 6e-3),
            ("sample", 5e-4),
            ("transport", 2.3e-3),
            ("output", 3e-4),
        ] {
            assert!(
                (phase(&m, name) - secs).abs() < 1e-9,
                "{name}: {}",
                phase(&m, name)
            );
        }
    }

    #[test]
    fn a_worker_claiming_more_than_the_round_trip_is_clamped() {
        let m = EngineMetrics::register(&Registry::new(), "m").unwrap();
        m.observe_step(StepPhases {
            schedule: Duration::ZERO,
            grammar: Duration::ZERO,
            round_trip: Duration::from_millis(2),
            worker: StepTimings {
                prepare_us: 1_000,
                forward_us: u64::MAX,
                bitmask_wait_us: u64::MAX,
                sample_us: u64::MAX,
            },
            output: Duration::ZERO,
        });
        assert!((phase(&m, "prepare") - 1e-3).abs() < 1e-9);
        assert!((phase(&m, "forward") - 1e-3).abs() < 1e-9);
        assert_eq!(phase(&m, "grammar"), 0.0);
        assert_eq!(phase(&m, "sample"), 0.0);
        assert_eq!(phase(&m, "transport"), 0.0);
    }
}
