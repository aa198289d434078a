//! One benchmark request against an OpenAI-compatible server: streamed,
//! with the arrival time of every content chunk (TTFT, inter-token
//! latencies) and the server's usage (`stream_options.include_usage`).

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use super::dataset::SampleRequest;

/// The API shape of the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/completions`: `prompt`, chunks carry `choices[].text`.
    Completions,
    /// `/v1/chat/completions`: `messages`, chunks carry `delta.content`.
    Chat,
}

impl Api {
    /// The shape an endpoint path speaks.
    pub fn of_endpoint(endpoint: &str) -> Self {
        if endpoint.trim_end_matches('/').ends_with("chat/completions") {
            Self::Chat
        } else {
            Self::Completions
        }
    }
}

/// What one request measured.
#[derive(Debug, Clone, Default)]
pub struct RequestOutcome {
    pub success: bool,
    /// Time to the first content chunk.
    pub ttft: Duration,
    /// Gaps between content chunks after the first.
    pub itl: Vec<Duration>,
    /// Time to the end of the stream.
    pub latency: Duration,
    /// Prompt tokens (the server's usage, else the estimate).
    pub prompt_len: usize,
    /// Output tokens (the server's usage, else content chunks).
    pub output_tokens: usize,
    pub generated_text: String,
    pub error: String,
}

/// Everything requests share.
pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub api: Api,
    pub model: String,
    pub api_key: Option<String>,
    pub ignore_eos: bool,
}

impl Target {
    fn body(&self, req: &SampleRequest) -> Value {
        let mut body = json!({
            "model": self.model,
            "max_tokens": req.output_len,
            "temperature": 0.0,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        match self.api {
            Api::Completions => body["prompt"] = json!(req.prompt),
            Api::Chat => body["messages"] = json!([{"role": "user", "content": req.prompt}]),
        }
        if self.ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        body
    }

    /// Sends `req` and measures it; failures are outcomes, not errors.
    pub async fn send(&self, req: &SampleRequest) -> RequestOutcome {
        let mut out = RequestOutcome {
            prompt_len: req.prompt_len,
            ..RequestOutcome::default()
        };
        let start = Instant::now();
        if let Err(e) = self.stream(req, start, &mut out).await {
            out.success = false;
            out.error = e;
        }
        out.latency = start.elapsed();
        out
    }

    async fn stream(
        &self,
        req: &SampleRequest,
        start: Instant,
        out: &mut RequestOutcome,
    ) -> Result<(), String> {
        let mut http = self.client.post(&self.url).json(&self.body(req));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key);
        }
        let resp = http.send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!(
                "HTTP {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        let mut body = resp.bytes_stream();
        let mut buffer: Vec<u8> = Vec::new();
        let mut last: Option<Instant> = None;
        let mut chunks = 0usize;
        let mut usage_tokens: Option<usize> = None;
        let mut done = false;
        while let Some(bytes) = body.next().await {
            let bytes = bytes.map_err(|e| e.to_string())?;
            buffer.extend_from_slice(&bytes);
            while let Some(end) = find_event_end(&buffer) {
                let event: Vec<u8> = buffer.drain(..end).collect();
                let now = Instant::now();
                for line in String::from_utf8_lossy(&event).lines() {
                    let Some(data) = line.strip_prefix("data:").map(str::trim) else {
                        continue;
                    };
                    if data == "[DONE]" {
                        done = true;
                        continue;
                    }
                    let value: Value =
                        serde_json::from_str(data).map_err(|e| format!("bad chunk {data}: {e}"))?;
                    if let Some(err) = value.get("error") {
                        return Err(format!("stream error: {err}"));
                    }
                    if let Some(n) = value
                        .pointer("/usage/completion_tokens")
                        .and_then(Value::as_u64)
                    {
                        usage_tokens = Some(n as usize);
                        if let Some(p) = value
                            .pointer("/usage/prompt_tokens")
                            .and_then(Value::as_u64)
                        {
                            out.prompt_len = p as usize;
                        }
                    }
                    let text = match self.api {
                        Api::Completions => value.pointer("/choices/0/text"),
                        Api::Chat => value.pointer("/choices/0/delta/content"),
                    }
                    .and_then(Value::as_str)
                    .unwrap_or("");
                    if text.is_empty() {
                        continue;
                    }
                    match last {
                        None => out.ttft = now - start,
                        Some(prev) => out.itl.push(now - prev),
                    }
                    last = Some(now);
                    chunks += 1;
                    out.generated_text.push_str(text);
                }
            }
        }
        if !done {
            return Err("the stream ended without [DONE]".into());
        }
        out.output_tokens = usage_tokens.unwrap_or(chunks);
        out.success = true;
        Ok(())
    }
}

/// The end (exclusive, separator included) of the first complete SSE
/// event in `buf` (events end with a blank line, `\n\n` or `\r\n\r\n`).
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn endpoints_pick_the_api() {
        assert_eq!(Api::of_endpoint("/v1/completions"), Api::Completions);
        assert_eq!(Api::of_endpoint("/v1/chat/completions"), Api::Chat);
        assert_eq!(Api::of_endpoint("/v1/chat/completions/"), Api::Chat);
    }

    #[test]
    fn sse_events_split_on_blank_lines() {
        assert_eq!(find_event_end(b"data: 1\n\ndata: 2"), Some(9));
        assert_eq!(find_event_end(b"data: 1\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: 1\n"), None);
    }
}
