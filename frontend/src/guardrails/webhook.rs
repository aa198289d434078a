//! A user's guardrail service, called as LiteLLM's "Generic Guardrail API"
//! calls it, so a service written for LiteLLM works unchanged.
//!
//! `POST {api_base}/beta/litellm_basic_guardrail_api` with
//! `x-api-key: {api_key}` when one is set, and the body
//! `{"texts": [...], "input_type": "request", "request_data": {},
//! "additional_provider_specific_params": {...}}`. The answer:
//! - `{"action": "NONE"}` lets the request through (`action` missing is
//!   `NONE`, as in LiteLLM);
//! - `{"action": "BLOCKED", "blocked_reason": "..."}` refuses it with a 400
//!   carrying the reason (LiteLLM's "Content violates policy" when none);
//! - `{"action": "GUARDRAIL_INTERVENED", "texts": [...]}` replaces the
//!   texts, one for one (LiteLLM also applies `texts` that come with
//!   `NONE`, and so do we).
//!
//! Failing closed is the default, as in LiteLLM: an error status, a
//! timeout, an unreadable body, an unknown `action` (LiteLLM would pass
//! it; a guard should not) or a `texts` list of the wrong length refuse the
//! request with [`GuardrailError::Unavailable`] (500, as LiteLLM's proxy
//! answers). `unreachable_fallback: fail_open` passes requests when the
//! service is unreachable (connect error, timeout, 502/503/504);
//! `fail_on_error: false` passes them on any error. Only a valid answer
//! can block or rewrite.

use super::error::GuardrailError;
use super::texts::TextsMut;
use crate::config::params::DEFAULT_TIMEOUT;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// The path LiteLLM appends to `api_base`.
pub const WEBHOOK_PATH: &str = "/beta/litellm_basic_guardrail_api";

/// A configured webhook guardrail.
#[derive(Debug, Clone)]
pub struct WebhookGuard {
    url: String,
    api_key: Option<String>,
    timeout: Duration,
    fail_open_unreachable: bool,
    fail_on_error: bool,
    extra_params: Map<String, Value>,
}

/// The body sent, field for field LiteLLM's `GenericGuardrailAPIRequest`
/// (the fields we have; the others are left out).
#[derive(Debug, Serialize)]
struct WebhookRequest<'a> {
    texts: Vec<&'a str>,
    input_type: &'static str,
    request_data: Map<String, Value>,
    additional_provider_specific_params: &'a Map<String, Value>,
}

/// The answer, as LiteLLM's `GenericGuardrailAPIResponse.from_dict` reads it.
#[derive(Debug, Deserialize)]
struct WebhookResponse {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    blocked_reason: Option<String>,
    #[serde(default)]
    texts: Option<Vec<String>>,
}

/// A failure to get a verdict, and whether it counts as "unreachable" for
/// `unreachable_fallback`.
struct Failure {
    message: String,
    unreachable: bool,
}

impl WebhookGuard {
    /// A guard calling `api_base` (the path is appended unless present).
    /// `timeout` unset waits as long as a provider call does
    /// ([`DEFAULT_TIMEOUT`], LiteLLM's default request timeout).
    pub fn new(
        api_base: &str,
        api_key: Option<String>,
        timeout: Option<Duration>,
        fail_open_unreachable: bool,
        fail_on_error: bool,
        extra_params: Map<String, Value>,
    ) -> Self {
        let base = api_base.trim_end_matches('/');
        let url = if base.ends_with(WEBHOOK_PATH) {
            base.to_owned()
        } else {
            format!("{base}{WEBHOOK_PATH}")
        };
        Self {
            url,
            api_key,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            fail_open_unreachable,
            fail_on_error,
            extra_params,
        }
    }

    /// The URL called.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks the webhook about `texts` and applies its verdict.
    pub(super) async fn check(
        &self,
        client: &reqwest::Client,
        guardrail: &str,
        texts: &mut TextsMut<'_>,
    ) -> Result<(), GuardrailError> {
        let answer = match self.call(client, texts).await {
            Ok(answer) => answer,
            Err(failure) => return self.on_failure(guardrail, failure),
        };
        match answer.action.as_deref().unwrap_or("NONE") {
            "BLOCKED" => Err(GuardrailError::Blocked {
                guardrail: guardrail.to_owned(),
                reason: answer
                    .blocked_reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| "Content violates policy".to_owned()),
            }),
            "NONE" | "GUARDRAIL_INTERVENED" => match answer.texts {
                Some(new) if !new.is_empty() => {
                    if new.len() != texts.len() {
                        return self.on_failure(
                            guardrail,
                            Failure {
                                message: format!(
                                    "the webhook returned {} texts for {}",
                                    new.len(),
                                    texts.len()
                                ),
                                unreachable: false,
                            },
                        );
                    }
                    for (slot, text) in texts.iter_mut().zip(new) {
                        *slot = text;
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
            other => self.on_failure(
                guardrail,
                Failure {
                    message: format!("the webhook answered an unknown action `{other}`"),
                    unreachable: false,
                },
            ),
        }
    }

    async fn call(
        &self,
        client: &reqwest::Client,
        texts: &TextsMut<'_>,
    ) -> Result<WebhookResponse, Failure> {
        let body = WebhookRequest {
            texts: texts.iter().collect(),
            input_type: "request",
            request_data: Map::new(),
            additional_provider_specific_params: &self.extra_params,
        };
        let mut req = client.post(&self.url).timeout(self.timeout).json(&body);
        if let Some(key) = &self.api_key {
            req = req.header("x-api-key", key);
        }
        let resp = req.send().await.map_err(|e| Failure {
            message: self.transport_message("cannot reach the webhook", e),
            unreachable: true,
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failure {
                message: format!("the webhook answered HTTP {}", status.as_u16()),
                unreachable: matches!(status.as_u16(), 502..=504),
            });
        }
        resp.json::<WebhookResponse>().await.map_err(|e| Failure {
            unreachable: e.is_timeout(),
            message: self.transport_message("unreadable answer", e),
        })
    }

    /// Says what failed, without the URL (it may carry credentials).
    fn transport_message(&self, what: &str, e: reqwest::Error) -> String {
        if e.is_timeout() {
            format!("no answer within {:?}", self.timeout)
        } else {
            format!("{what}: {}", e.without_url())
        }
    }

    fn on_failure(&self, guardrail: &str, failure: Failure) -> Result<(), GuardrailError> {
        let pass = (failure.unreachable && self.fail_open_unreachable) || !self.fail_on_error;
        if pass {
            tracing::error!(
                guardrail,
                error = %failure.message,
                "guardrail webhook failed; letting the request through (fail open)"
            );
            return Ok(());
        }
        tracing::warn!(guardrail, error = %failure.message, "guardrail webhook failed; refusing the request");
        Err(GuardrailError::Unavailable {
            guardrail: guardrail.to_owned(),
            message: failure.message,
        })
    }
}
