//! The numbers of a serving benchmark and vLLM's table of them: request
//! and token throughput, and TTFT, TPOT (time per output token after the
//! first), ITL (inter-token latency) and E2E latency with their mean,
//! median, p90 and p99, in milliseconds. The JSON written by
//! `--save-result` uses `vllm bench serve`'s keys, so scripts that read
//! those files read these.

use std::time::Duration;

use serde_json::{json, Map, Value};

use super::client::RequestOutcome;

/// Mean, median, p90, p99 (and std) of one latency, in ms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub mean: f64,
    pub median: f64,
    pub std: f64,
    pub p90: f64,
    pub p99: f64,
}

impl Summary {
    /// Of `values` (ms); all zeros when empty.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            median: percentile(&v, 50.0),
            std: var.sqrt(),
            p90: percentile(&v, 90.0),
            p99: percentile(&v, 99.0),
        }
    }
}

/// Linear-interpolated percentile of sorted `v` (numpy's default).
fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - lo as f64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The whole result.
#[derive(Debug, Clone)]
pub struct Report {
    pub completed: usize,
    pub failed: usize,
    pub duration: Duration,
    pub max_concurrency: Option<usize>,
    pub total_input: usize,
    pub total_output: usize,
    pub ttft: Summary,
    pub tpot: Summary,
    pub itl: Summary,
    pub e2el: Summary,
    outcomes: Vec<RequestOutcome>,
}

impl Report {
    /// Summarizes `outcomes` of a run that took `duration`.
    pub fn new(
        outcomes: Vec<RequestOutcome>,
        duration: Duration,
        max_concurrency: Option<usize>,
    ) -> Self {
        let ok: Vec<&RequestOutcome> = outcomes.iter().filter(|o| o.success).collect();
        let ttfts: Vec<f64> = ok.iter().map(|o| ms(o.ttft)).collect();
        let tpots: Vec<f64> = ok
            .iter()
            .filter(|o| o.output_tokens > 1)
            .map(|o| (ms(o.latency) - ms(o.ttft)) / (o.output_tokens - 1) as f64)
            .collect();
        let itls: Vec<f64> = ok
            .iter()
            .flat_map(|o| o.itl.iter().map(|d| ms(*d)))
            .collect();
        let e2els: Vec<f64> = ok.iter().map(|o| ms(o.latency)).collect();
        Self {
            completed: ok.len(),
            failed: outcomes.len() - ok.len(),
            duration,
            max_concurrency,
            total_input: ok.iter().map(|o| o.prompt_len).sum(),
            total_output: ok.iter().map(|o| o.output_tokens).sum(),
            ttft: Summary::of(&ttfts),
            tpot: Summary::of(&tpots),
            itl: Summary::of(&itls),
            e2el: Summary::of(&e2els),
            outcomes,
        }
    }

    /// The first failed request's error, to say why requests failed.
    pub fn first_error(&self) -> Option<&str> {
        self.outcomes
            .iter()
            .find(|o| !o.success)
            .map(|o| o.error.as_str())
    }

    fn secs(&self) -> f64 {
        self.duration.as_secs_f64().max(1e-9)
    }

    /// vLLM's result table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |name: &str, value: String| t.push_str(&format!("{name:<40}{value:<10}\n"));
        let header = |title: &str| format!("{title:-^50}\n");
        let mut out = format!("{:=^50}\n", " Serving Benchmark Result ");
        row("Successful requests:", self.completed.to_string());
        row("Failed requests:", self.failed.to_string());
        if let Some(c) = self.max_concurrency {
            row("Maximum request concurrency:", c.to_string());
        }
        row("Benchmark duration (s):", format!("{:.2}", self.secs()));
        row("Total input tokens:", self.total_input.to_string());
        row("Total generated tokens:", self.total_output.to_string());
        row(
            "Request throughput (req/s):",
            format!("{:.2}", self.completed as f64 / self.secs()),
        );
        row(
            "Output token throughput (tok/s):",
            format!("{:.2}", self.total_output as f64 / self.secs()),
        );
        row(
            "Total Token throughput (tok/s):",
            format!(
                "{:.2}",
                (self.total_input + self.total_output) as f64 / self.secs()
            ),
        );
        out.push_str(&t);
        for (title, short, s) in [
            ("Time to First Token", "TTFT", self.ttft),
            ("Time per Output Token (excl. 1st token)", "TPOT", self.tpot),
            ("Inter-token Latency", "ITL", self.itl),
        ] {
            out.push_str(&header(title));
            for (stat, v) in [
                ("Mean", s.mean),
                ("Median", s.median),
                ("P90", s.p90),
                ("P99", s.p99),
            ] {
                out.push_str(&format!(
                    "{:<40}{:<10.2}\n",
                    format!("{stat} {short} (ms):"),
                    v
                ));
            }
        }
        out.push_str(&"=".repeat(50));
        out.push('\n');
        out
    }

    /// The `--save-result` JSON (vLLM's keys), with `extra` (date,
    /// backend, model, ...) merged in.
    pub fn to_json(&self, extra: Map<String, Value>) -> Value {
        let mut v = json!({
            "duration": self.secs(),
            "completed": self.completed,
            "failed": self.failed,
            "max_concurrency": self.max_concurrency,
            "total_input_tokens": self.total_input,
            "total_output_tokens": self.total_output,
            "request_throughput": self.completed as f64 / self.secs(),
            "output_throughput": self.total_output as f64 / self.secs(),
            "total_token_throughput": (self.total_input + self.total_output) as f64 / self.secs(),
            "input_lens": self.outcomes.iter().map(|o| o.prompt_len).collect::<Vec<_>>(),
            "output_lens": self.outcomes.iter().map(|o| o.output_tokens).collect::<Vec<_>>(),
            "ttfts": self.outcomes.iter().map(|o| o.ttft.as_secs_f64()).collect::<Vec<_>>(),
            "itls": self.outcomes.iter().map(|o| o.itl.iter().map(Duration::as_secs_f64).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "generated_texts": self.outcomes.iter().map(|o| o.generated_text.clone()).collect::<Vec<_>>(),
            "errors": self.outcomes.iter().map(|o| o.error.clone()).collect::<Vec<_>>(),
        });
        for (name, s) in [
            ("ttft", self.ttft),
            ("tpot", self.tpot),
            ("itl", self.itl),
            ("e2el", self.e2el),
        ] {
            v[format!("mean_{name}_ms")] = json!(s.mean);
            v[format!("median_{name}_ms")] = json!(s.median);
            v[format!("std_{name}_ms")] = json!(s.std);
            v[format!("p90_{name}_ms")] = json!(s.p90);
            v[format!("p99_{name}_ms")] = json!(s.p99);
        }
        if let Value::Object(map) = &mut v {
            map.extend(extra);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn percentiles_interpolate_as_numpy() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.mean, 2.5);
        assert_eq!(s.median, 2.5);
        assert!((s.p90 - 3.7).abs() < 1e-9, "{}", s.p90);
        assert!((s.p99 - 3.97).abs() < 1e-9, "{}", s.p99);
        assert_eq!(Summary::of(&[]), Summary::default());
    }

    #[test]
    fn the_report_counts_successes_and_prints_vllms_table() {
        let ok = RequestOutcome {
            success: true,
            ttft: Duration::from_millis(100),
            itl: vec![Duration::from_millis(10); 4],
            latency: Duration::from_millis(140),
            prompt_len: 20,
            output_tokens: 5,
            generated_text: "hello".into(),
            error: String::new(),
        };
        let failed = RequestOutcome {
            error: "HTTP 500".into(),
            ..RequestOutcome::default()
        };
        let r = Report::new(
            vec![ok.clone(), ok, failed],
            Duration::from_secs(2),
            Some(2),
        );
        assert_eq!((r.completed, r.failed, r.total_output), (2, 1, 10));
        assert_eq!(r.tpot.mean, 10.0);
        let table = r.table();
        for needle in [
            "Successful requests:                    2",
            "Request throughput (req/s):             1.00",
            "Output token throughput (tok/s):        5.00",
            "Mean TTFT (ms):                         100.00",
            "P99 ITL (ms):                           10.00",
            "Median TPOT (ms):",
        ] {
            assert!(table.contains(needle), "{needle}\n{table}");
        }
        let json = r.to_json(Map::new());
        assert_eq!(json["completed"], 2);
        assert_eq!(json["mean_ttft_ms"], 100.0);
        assert_eq!(json["errors"][2], "HTTP 500");
    }
}
