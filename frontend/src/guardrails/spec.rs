//! LiteLLM's top-level `guardrails:` list in `config.yaml`, typed, and its
//! validation into the checks the engine runs.
//!
//! ```yaml
//! guardrails:
//!   - guardrail_name: pii-mask
//!     litellm_params:
//!       guardrail: presidio
//!       mode: pre_call
//!       default_on: true
//!       pii_entities_config: { EMAIL_ADDRESS: MASK, CREDIT_CARD: BLOCK }
//!   - guardrail_name: no-secrets
//!     litellm_params:
//!       guardrail: banned_keywords
//!       mode: pre_call
//!       banned_keywords_list: [password, api key]
//!   - guardrail_name: my-hook
//!     litellm_params:
//!       guardrail: generic_guardrail_api
//!       mode: pre_call
//!       api_base: http://guard.internal:8080
//!       api_key: os.environ/GUARD_KEY
//!       timeout: 5
//! ```
//!
//! Kinds: `presidio` (PII masking, run in-process: see [`super::pii`]),
//! `banned_keywords` (LiteLLM's banned-keywords hook, its list in
//! `banned_keywords_list`), `litellm_content_filter` (its `blocked_words`,
//! each `BLOCK` or `MASK`) and `generic_guardrail_api` (a webhook, see
//! [`super::webhook`]). Only `mode: pre_call` is implemented; any other
//! mode, or kind, is a startup error naming the guardrail. Keys we do not
//! use become warnings, except those that would weaken a check if ignored
//! (content-filter `patterns`, `categories`, `blocked_words_file`), which
//! are errors.

use super::error::GuardrailConfigError;
use super::keywords::{KeywordAction, KeywordFilter};
use super::pii::{PiiEntity, PiiPatterns};
use super::webhook::WebhookGuard;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One entry of the `guardrails:` list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GuardrailSpec {
    /// The name requests, keys and models select it by.
    pub guardrail_name: String,
    /// What it is and how it is set up.
    pub litellm_params: GuardrailParams,
    /// Free-form description (LiteLLM's UI shows it); not used.
    #[serde(default)]
    pub guardrail_info: Option<Value>,
}

/// `litellm_params` of a guardrail; which keys matter depends on
/// `guardrail`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GuardrailParams {
    /// The kind: `presidio`, `banned_keywords`, `litellm_content_filter`,
    /// `generic_guardrail_api`.
    pub guardrail: String,
    /// When it runs; only `pre_call` is implemented.
    #[serde(default)]
    pub mode: Option<GuardrailMode>,
    /// Runs on every request, not only those that select it.
    #[serde(default)]
    pub default_on: bool,
    /// `presidio`: entity type (`EMAIL_ADDRESS`, ...) to `MASK` or `BLOCK`;
    /// unset masks every entity we detect.
    #[serde(default)]
    pub pii_entities_config: Option<BTreeMap<String, String>>,
    /// `banned_keywords`: the keywords that block a request.
    #[serde(default)]
    pub banned_keywords_list: Option<Vec<String>>,
    /// `litellm_content_filter`: keywords, each to block or mask.
    #[serde(default)]
    pub blocked_words: Option<Vec<BlockedWordSpec>>,
    /// `litellm_content_filter`: what a masked keyword becomes
    /// (LiteLLM's default `[KEYWORD_REDACTED]`).
    #[serde(default)]
    pub keyword_redaction_tag: Option<String>,
    /// `generic_guardrail_api`: the webhook's base URL;
    /// `/beta/litellm_basic_guardrail_api` is appended unless present.
    #[serde(default)]
    pub api_base: Option<String>,
    /// `generic_guardrail_api`: sent as the `x-api-key` header.
    #[serde(default)]
    pub api_key: Option<String>,
    /// `generic_guardrail_api`: seconds to wait for the verdict.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// `generic_guardrail_api`: `fail_closed` (default) refuses the request
    /// when the webhook is unreachable (connect error, timeout, 502, 503,
    /// 504); `fail_open` lets it through.
    #[serde(default)]
    pub unreachable_fallback: Option<String>,
    /// `generic_guardrail_api`: `false` lets the request through on any
    /// webhook error (default `true`: refuse).
    #[serde(default)]
    pub fail_on_error: Option<bool>,
    /// `generic_guardrail_api`: forwarded as is in every call.
    #[serde(default)]
    pub additional_provider_specific_params: Option<Map<String, Value>>,
    /// Every other key (warned about, or refused when ignoring it would
    /// weaken the check).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `mode`: one event or a list of them, as LiteLLM takes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum GuardrailMode {
    /// `mode: pre_call`.
    One(String),
    /// `mode: [pre_call]`.
    Many(Vec<String>),
}

/// One `blocked_words` entry of `litellm_content_filter`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BlockedWordSpec {
    /// The word or phrase.
    pub keyword: String,
    /// `BLOCK` or `MASK`.
    pub action: String,
    /// Why it is sensitive; not used.
    #[serde(default)]
    pub description: Option<String>,
}

/// What one validated guardrail does, with what it needs to run.
#[derive(Debug, Clone)]
pub(super) enum Check {
    /// Masks or blocks PII entities, in [`PiiEntity::ALL`] order.
    Pii {
        entities: Vec<(PiiEntity, PiiAction)>,
        patterns: Arc<PiiPatterns>,
    },
    /// Blocks or masks keywords.
    Keywords(KeywordFilter),
    /// Asks a webhook.
    Webhook {
        guard: WebhookGuard,
        client: reqwest::Client,
    },
}

/// The parts the guardrails of one set share, built on first use: a set
/// without a PII or a webhook guardrail builds neither (compiling the PII
/// patterns and building a TLS client take milliseconds each, which a
/// config loader checked in a loop, as the fuzzer does, should not pay).
#[derive(Debug, Default)]
pub(super) struct SharedParts {
    patterns: Option<Arc<PiiPatterns>>,
    client: Option<reqwest::Client>,
}

impl SharedParts {
    fn patterns(&mut self) -> Result<Arc<PiiPatterns>, regex::Error> {
        if let Some(p) = &self.patterns {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(PiiPatterns::new()?);
        self.patterns = Some(Arc::clone(&p));
        Ok(p)
    }

    fn client(&mut self) -> Result<reqwest::Client, reqwest::Error> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder().tcp_nodelay(true).build()?;
        self.client = Some(c.clone());
        Ok(c)
    }
}

/// What a detected PII entity does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PiiAction {
    Mask,
    Block,
}

/// Keys of Presidio's guardrail that configure the Presidio server we do
/// not call; ignored with a warning.
const PRESIDIO_SERVER_KEYS: &[&str] = &[
    "presidio_analyzer_api_base",
    "presidio_anonymizer_api_base",
    "presidio_language",
    "presidio_score_thresholds",
    "presidio_ad_hoc_recognizers",
    "output_parse_pii",
    "mock_redacted_text",
];

/// Content-filter keys for checks we do not implement: refusing them is
/// safer than running a weaker filter than the operator wrote.
const CONTENT_FILTER_UNSUPPORTED: &[&str] = &["patterns", "categories", "blocked_words_file"];

impl GuardrailSpec {
    /// Validates the entry; returns its check and warnings about ignored
    /// keys.
    pub(super) fn build(
        &self,
        shared: &mut SharedParts,
    ) -> Result<(Check, Vec<String>), GuardrailConfigError> {
        let name = &self.guardrail_name;
        let p = &self.litellm_params;
        let invalid = |message: String| GuardrailConfigError::Invalid {
            name: name.clone(),
            message,
        };
        if name.trim().is_empty() {
            return Err(invalid("guardrail_name is empty".to_owned()));
        }
        self.check_mode()?;
        let mut warnings: Vec<String> = Vec::new();
        let check = match p.guardrail.as_str() {
            "presidio" => {
                for key in p.extra.keys() {
                    if PRESIDIO_SERVER_KEYS.contains(&key.as_str()) {
                        warnings.push(format!(
                            "guardrail `{name}`: `{key}` is ignored (PII detection runs in-process, \
                             no Presidio server is called)"
                        ));
                    }
                }
                Check::Pii {
                    entities: self.pii_entities()?,
                    patterns: shared
                        .patterns()
                        .map_err(|e| invalid(format!("PII patterns do not compile: {e}")))?,
                }
            }
            "banned_keywords" => {
                let words = p
                    .banned_keywords_list
                    .as_ref()
                    .ok_or_else(|| invalid("banned_keywords_list is required".to_owned()))?;
                let filter = KeywordFilter::new(
                    words.iter().map(|w| (w.clone(), KeywordAction::Block)),
                    None,
                )
                .map_err(|e| invalid(format!("banned_keywords_list: {e}")))?;
                Check::Keywords(filter)
            }
            "litellm_content_filter" => {
                if let Some(key) = CONTENT_FILTER_UNSUPPORTED
                    .iter()
                    .find(|k| p.extra.contains_key(**k))
                {
                    return Err(invalid(format!(
                        "`{key}` is not supported; only blocked_words is implemented"
                    )));
                }
                let words = p
                    .blocked_words
                    .as_ref()
                    .ok_or_else(|| invalid("blocked_words is required".to_owned()))?;
                let mut list = Vec::with_capacity(words.len());
                for w in words {
                    let action = match w.action.to_ascii_uppercase().as_str() {
                        "BLOCK" => KeywordAction::Block,
                        "MASK" => KeywordAction::Mask,
                        other => {
                            return Err(invalid(format!(
                                "blocked_words `{}`: action `{other}` is not BLOCK or MASK",
                                w.keyword
                            )))
                        }
                    };
                    list.push((w.keyword.clone(), action));
                }
                let filter = KeywordFilter::new(list, p.keyword_redaction_tag.clone())
                    .map_err(|e| invalid(format!("blocked_words: {e}")))?;
                Check::Keywords(filter)
            }
            "generic_guardrail_api" => Check::Webhook {
                guard: self.webhook()?,
                client: shared
                    .client()
                    .map_err(|e| invalid(format!("cannot build the HTTP client: {e}")))?,
            },
            other => {
                return Err(GuardrailConfigError::UnknownKind {
                    name: name.clone(),
                    kind: other.to_owned(),
                })
            }
        };
        for key in p.extra.keys() {
            let known = PRESIDIO_SERVER_KEYS.contains(&key.as_str());
            if !known {
                warnings.push(format!(
                    "guardrail `{name}`: unknown key `{key}` is ignored"
                ));
            }
        }
        Ok((check, warnings))
    }

    fn check_mode(&self) -> Result<(), GuardrailConfigError> {
        let modes: Vec<&str> = match &self.litellm_params.mode {
            None => {
                return Err(GuardrailConfigError::Invalid {
                    name: self.guardrail_name.clone(),
                    message: "mode is required (pre_call)".to_owned(),
                })
            }
            Some(GuardrailMode::One(m)) => vec![m.as_str()],
            Some(GuardrailMode::Many(v)) => v.iter().map(String::as_str).collect(),
        };
        match modes.iter().find(|m| **m != "pre_call") {
            Some(other) => Err(GuardrailConfigError::UnsupportedMode {
                name: self.guardrail_name.clone(),
                mode: (*other).to_owned(),
            }),
            None if modes.is_empty() => Err(GuardrailConfigError::Invalid {
                name: self.guardrail_name.clone(),
                message: "mode is an empty list".to_owned(),
            }),
            None => Ok(()),
        }
    }

    fn pii_entities(&self) -> Result<Vec<(PiiEntity, PiiAction)>, GuardrailConfigError> {
        let Some(config) = &self.litellm_params.pii_entities_config else {
            return Ok(PiiEntity::ALL
                .into_iter()
                .map(|e| (e, PiiAction::Mask))
                .collect());
        };
        let mut entities = Vec::with_capacity(config.len());
        for (entity, action) in config {
            let invalid = |message: String| GuardrailConfigError::Invalid {
                name: self.guardrail_name.clone(),
                message,
            };
            let e = PiiEntity::from_name(entity).ok_or_else(|| {
                invalid(format!(
                    "pii_entities_config: entity `{entity}` is not detected here (it needs \
                     Presidio's models); supported: EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, \
                     IP_ADDRESS"
                ))
            })?;
            let a = match action.to_ascii_uppercase().as_str() {
                "MASK" => PiiAction::Mask,
                "BLOCK" => PiiAction::Block,
                other => {
                    return Err(invalid(format!(
                        "pii_entities_config.{entity}: action `{other}` is not MASK or BLOCK"
                    )))
                }
            };
            entities.push((e, a));
        }
        if entities.is_empty() {
            return Err(GuardrailConfigError::Invalid {
                name: self.guardrail_name.clone(),
                message: "pii_entities_config is empty".to_owned(),
            });
        }
        entities.sort_by_key(|(e, _)| PiiEntity::ALL.iter().position(|x| x == e));
        Ok(entities)
    }

    fn webhook(&self) -> Result<WebhookGuard, GuardrailConfigError> {
        let p = &self.litellm_params;
        let invalid = |message: String| GuardrailConfigError::Invalid {
            name: self.guardrail_name.clone(),
            message,
        };
        let base = p
            .api_base
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("api_base is required".to_owned()))?;
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(invalid(format!("api_base `{base}` is not an http(s) URL")));
        }
        let timeout = match p.timeout {
            None => None,
            Some(t) if t.is_finite() && t > 0.0 => crate::config::config_duration(t),
            Some(t) => return Err(invalid(format!("timeout {t} is not a positive number"))),
        };
        let fail_open_unreachable = match p.unreachable_fallback.as_deref() {
            None | Some("fail_closed") => false,
            Some("fail_open") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "unreachable_fallback `{other}` is not fail_closed or fail_open"
                )))
            }
        };
        Ok(WebhookGuard::new(
            base,
            p.api_key.clone().filter(|k| !k.is_empty()),
            timeout,
            fail_open_unreachable,
            p.fail_on_error.unwrap_or(true),
            p.additional_provider_specific_params
                .clone()
                .unwrap_or_default(),
        ))
    }
}
