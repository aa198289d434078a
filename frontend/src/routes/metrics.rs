//! `GET /metrics`: the shared Prometheus registry in text format (the
//! frontend's HTTP metrics and the engine's `vllm:` metrics together).
//!
//! With a control plane, series labelled by caller (`key_alias`, `team`)
//! are shown as they are to the master key only. Anyone else (a scraper
//! without credentials, a virtual key) gets them summed over those
//! labels: `gateway_requests_total{model, status}` instead of one series
//! per key, so the aggregate numbers stay public and who-spends-what does
//! not. The sum is taken on the encoded text, sample by sample, which is
//! exact for counters and histograms (buckets, sums and counts add).

use crate::control::Caller;
use crate::error::ProviderError;
use crate::gateway_error::GatewayError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prometheus::{Encoder, TextEncoder};
use std::collections::HashMap;

/// Labels that say who called: the master key's view only.
const CALLER_LABELS: [&str; 2] = ["key_alias", "team"];

/// `GET /metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
) -> Result<Response, GatewayError> {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    encoder
        .encode(&state.registry().gather(), &mut body)
        .map_err(|e| ProviderError::Internal {
            message: format!("could not encode metrics: {e}"),
        })?;
    let full_view = state.control().is_none() || matches!(caller, Some(Extension(Caller::Master)));
    let body = if full_view {
        body
    } else {
        without_labels(&String::from_utf8_lossy(&body), &CALLER_LABELS).into_bytes()
    };
    Ok(([(CONTENT_TYPE, encoder.format_type().to_owned())], body).into_response())
}

/// Prometheus `text` with the `hidden` labels removed from every sample
/// and the samples that then coincide summed into one.
fn without_labels(text: &str, hidden: &[&str]) -> String {
    let mut lines: Vec<Line<'_>> = Vec::new();
    let mut merged: HashMap<String, usize> = HashMap::new();
    for raw in text.lines() {
        let Some(sample) = Sample::parse(raw).filter(|s| s.has_any(hidden)) else {
            lines.push(Line::Raw(raw));
            continue;
        };
        let series = sample.series_without(hidden);
        match merged.get(&series) {
            Some(&i) => {
                if let Line::Summed(_, total) = &mut lines[i] {
                    *total += sample.value;
                }
            }
            None => {
                merged.insert(series.clone(), lines.len());
                lines.push(Line::Summed(series, sample.value));
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in lines {
        match line {
            Line::Raw(raw) => out.push_str(raw),
            Line::Summed(series, total) => {
                out.push_str(&series);
                out.push(' ');
                out.push_str(&format_value(total));
            }
        }
        out.push('\n');
    }
    out
}

enum Line<'a> {
    Raw(&'a str),
    Summed(String, f64),
}

/// One sample line, `name{a="x",b="y"} value`, its label values kept as
/// written (still escaped).
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, &'a str)>,
    value: f64,
}

impl<'a> Sample<'a> {
    /// `None` for comments, blank lines and anything not understood (kept
    /// as is by the caller).
    fn parse(line: &'a str) -> Option<Self> {
        if line.starts_with('#') || line.trim().is_empty() {
            return None;
        }
        let name_end = line.find(['{', ' '])?;
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            rest = inner;
            loop {
                rest = rest.strip_prefix(',').unwrap_or(rest);
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = rest.find("=\"")?;
                let key = &rest[..eq];
                let value_start = eq + 2;
                let value_len = quoted_len(&rest[value_start..])?;
                labels.push((key, &rest[value_start..value_start + value_len]));
                rest = &rest[value_start + value_len + 1..];
            }
        }
        let value_text = rest.split_whitespace().next()?;
        let value = value_text.parse::<f64>().ok()?;
        Some(Self {
            name,
            labels,
            value,
        })
    }

    fn has_any(&self, hidden: &[&str]) -> bool {
        self.labels.iter().any(|(k, _)| hidden.contains(k))
    }

    /// `name{...}` without the `hidden` labels.
    fn series_without(&self, hidden: &[&str]) -> String {
        let kept: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| !hidden.contains(k))
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        if kept.is_empty() {
            self.name.to_owned()
        } else {
            format!("{}{{{}}}", self.name, kept.join(","))
        }
    }
}

/// Bytes up to the closing quote of an escaped label value.
fn quoted_len(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// A value as Prometheus' text format writes it.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn sums_over_hidden_labels_and_keeps_the_rest() {
        let text = r#"# HELP gateway_requests_total Inference requests
# TYPE gateway_requests_total counter
gateway_requests_total{key_alias="alice",model="m",status="success"} 2
gateway_requests_total{key_alias="bob \"the\" builder",model="m",status="success"} 3
gateway_requests_total{key_alias="bob",model="m",status="failure"} 1
# TYPE gateway_spend_usd_total counter
gateway_spend_usd_total{key_alias="alice",model="m",team="t1"} 0.25
gateway_spend_usd_total{key_alias="bob",model="m",team="t2"} 0.5
# TYPE lat histogram
lat_bucket{model="m",le="0.1"} 4
lat_bucket{model="m",le="+Inf"} 5
lat_sum{model="m"} 0.3
http_requests_total 7
"#;
        let out = without_labels(text, &CALLER_LABELS);
        assert_eq!(
            out,
            r#"# HELP gateway_requests_total Inference requests
# TYPE gateway_requests_total counter
gateway_requests_total{model="m",status="success"} 5
gateway_requests_total{model="m",status="failure"} 1
# TYPE gateway_spend_usd_total counter
gateway_spend_usd_total{model="m"} 0.75
# TYPE lat histogram
lat_bucket{model="m",le="0.1"} 4
lat_bucket{model="m",le="+Inf"} 5
lat_sum{model="m"} 0.3
http_requests_total 7
"#
        );
    }

    #[test]
    fn histograms_over_hidden_labels_add_bucket_by_bucket() {
        let text = "h_bucket{key_alias=\"a\",le=\"1\"} 1\n\
                    h_bucket{key_alias=\"a\",le=\"+Inf\"} 2\n\
                    h_bucket{key_alias=\"b\",le=\"1\"} 3\n\
                    h_bucket{key_alias=\"b\",le=\"+Inf\"} 3\n\
                    h_count{key_alias=\"a\"} 2\nh_count{key_alias=\"b\"} 3\n";
        assert_eq!(
            without_labels(text, &CALLER_LABELS),
            "h_bucket{le=\"1\"} 4\nh_bucket{le=\"+Inf\"} 5\nh_count 5\n"
        );
    }

    #[test]
    fn odd_lines_pass_through() {
        for line in ["", "# EOF", "garbage", "x{key_alias=\"unterminated} 1"] {
            assert_eq!(without_labels(line, &CALLER_LABELS).trim_end(), line);
        }
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(2.0), "2");
    }
}
