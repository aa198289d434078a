//! The gateway's control plane: who may call what, what it cost, and what
//! happened. LiteLLM's proxy features, in one place the routes call:
//!
//! - [`ControlPlane::authenticate`]: the master key or a virtual key
//!   (stored hashed, [`secret`]) becomes a [`Caller`];
//! - [`ControlPlane::admit_with`] ([`admission`]): model access ([`access`]), budgets
//!   (stored spend plus the unflushed and reserved spend of the
//!   [`ledger`]: the request's estimated cost, [`demand`], is reserved in
//!   the same step), rpm/tpm limits ([`crate::ratelimit`], rpm per
//!   sequence);
//! - [`ControlPlane::settle`]: the cost from the price table
//!   ([`crate::pricing`]) in place of the reservation, a spend log queued
//!   for the batch writer ([`spend_writer`], through the [`journal`]), tpm
//!   from actual usage, metrics ([`metrics`]). Streams are settled by
//!   [`gate::meter`], for what they delivered even when cut.
//!
//! Response caching ([`response_cache`]) and guardrails
//! (`request_guardrails`) are applied by the routes through methods of the
//! plane, between admission and the provider call. Without a
//! `general_settings.master_key` the gateway is open: every caller is
//! [`Caller::Anonymous`] and the admin API refuses, as LiteLLM without one.

pub mod access;
pub mod admission;
pub mod demand;
pub mod error;
mod from_config;
pub mod gate;
pub mod journal;
pub mod ledger;
pub mod metrics;
pub mod records;
mod request_guardrails;
pub mod response_cache;
pub mod secret;
pub mod spend_writer;

pub use admission::Admission;
pub use error::ControlError;
pub use from_config::SetupError;

use crate::cache::ResponseCache;
use crate::guardrails::Guardrails;
use crate::pricing::ModelPrice;
use crate::ratelimit::RateLimiter;
use crate::store::{KeyRecord, SpendLog, SpendStatus, Store, TeamRecord, UserRecord};
use access::ModelCatalog;
use chrono::{DateTime, Utc};
use ledger::SpendLedger;
use metrics::ControlMetrics;
use records::Records;
use spend_writer::{PendingLog, SpendWriter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The time source of expiry and budget checks; tests substitute one they
/// move by hand.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// How long a record lookup (auth of a key not in the cache) may wait for
/// the store before it fails with a 503: a database that is down must not
/// hold requests for sqlx's 30 s default.
pub const STORE_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// `max_tokens` a budget reservation assumes for a request that sets none
/// (`general_settings.budget_reserve_max_tokens`).
pub const DEFAULT_RESERVE_MAX_TOKENS: u64 = 4096;

/// Who is calling, once authenticated.
#[derive(Clone)]
pub enum Caller {
    /// No master key is configured: the gateway is open.
    Anonymous,
    /// The master key: everything, the admin API included.
    Master,
    /// A virtual key, with its team and user when it has them.
    Key(Arc<KeyContext>),
}

/// A virtual key and the records its limits come from.
pub struct KeyContext {
    /// The key.
    pub key: Arc<KeyRecord>,
    /// Its team.
    pub team: Option<Arc<TeamRecord>>,
    /// Its user.
    pub user: Option<Arc<UserRecord>>,
}

impl Caller {
    /// The `key_alias` label of metrics and logs: the alias, else the
    /// display name (`sk-...abcd`), never the secret.
    pub fn label(&self) -> String {
        match self {
            Self::Anonymous => "anonymous".to_owned(),
            Self::Master => "master".to_owned(),
            Self::Key(k) => k
                .key
                .key_alias
                .clone()
                .unwrap_or_else(|| k.key.key_name.clone()),
        }
    }
}

/// What a finished request used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Whether the answer came from the response cache (costs nothing).
    pub cache_hit: bool,
    /// Whether the provider answered.
    pub success: bool,
}

/// The price of each model name (the first deployment's, or the config's
/// `input_cost_per_token`/`output_cost_per_token`; local models 0).
#[derive(Debug, Clone, Default)]
pub struct ModelPrices {
    by_model: HashMap<String, (String, Option<ModelPrice>)>,
}

impl ModelPrices {
    /// `(provider model string, price)` of `model`.
    fn get<'a>(&'a self, model: &'a str) -> (&'a str, Option<&'a ModelPrice>) {
        match self.by_model.get(model) {
            Some((provider_model, price)) => (provider_model.as_str(), price.as_ref()),
            None => (model, None),
        }
    }
}

/// The response cache and its default time-to-live.
pub struct CacheSettings {
    /// Where entries live.
    pub backend: Arc<dyn ResponseCache>,
    /// Time-to-live unless the request sets `cache.ttl`.
    pub default_ttl: Duration,
}

/// Keys, budgets, limits, spend, cache and guardrails of one gateway.
pub struct ControlPlane {
    master_token: Option<secret::MasterKey>,
    store: Arc<dyn Store>,
    catalog: ModelCatalog,
    prices: ModelPrices,
    records: Arc<Records>,
    ledger: Arc<SpendLedger>,
    default_max_tokens: u64,
    writer: SpendWriter,
    limiter: Arc<dyn RateLimiter>,
    cache: Option<CacheSettings>,
    guardrails: Guardrails,
    model_guardrails: HashMap<String, Vec<String>>,
    metrics: ControlMetrics,
    clock: Clock,
}

impl ControlPlane {
    /// The store (the admin API reads and writes it directly).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The response cache, when configured.
    pub fn cache(&self) -> Option<&CacheSettings> {
        self.cache.as_ref()
    }

    /// The metrics (the routes count cache hits).
    pub fn metrics(&self) -> &ControlMetrics {
        &self.metrics
    }

    /// The configured guardrails.
    pub fn guardrails(&self) -> &Guardrails {
        &self.guardrails
    }

    /// The guardrails set on `model`'s deployments
    /// (`litellm_params.guardrails`).
    fn model_guardrails(&self, model: &str) -> &[String] {
        self.model_guardrails
            .get(model)
            .map_or(&[][..], Vec::as_slice)
    }

    /// Now, by this plane's clock.
    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Whether keys are required (a master key is configured).
    pub fn requires_keys(&self) -> bool {
        self.master_token.is_some()
    }

    /// The caller presenting `secret` (from `Authorization: Bearer`,
    /// `x-api-key` or `x-litellm-api-key`).
    pub async fn authenticate(&self, secret: Option<&str>) -> Result<Caller, ControlError> {
        let Some(master) = &self.master_token else {
            return Ok(Caller::Anonymous);
        };
        let Some(secret) = secret.map(str::trim).filter(|s| !s.is_empty()) else {
            self.metrics
                .auth_failures
                .with_label_values(&["missing"])
                .inc();
            return Err(ControlError::MissingKey);
        };
        if master.matches(secret) {
            return Ok(Caller::Master);
        }
        // Always hashed: a stored token is a lookup handle, not a key.
        let token = secret::token_of(secret);
        let found = if secret::looks_like_secret(secret) {
            self.key_record(&token).await?
        } else {
            None
        };
        let Some(key) = found else {
            self.metrics
                .auth_failures
                .with_label_values(&["invalid"])
                .inc();
            return Err(ControlError::InvalidKey);
        };
        if key.blocked {
            self.metrics
                .auth_failures
                .with_label_values(&["blocked"])
                .inc();
            return Err(ControlError::InvalidKey);
        }
        if let Some(expires) = key.expires {
            if expires <= self.now() {
                self.metrics
                    .auth_failures
                    .with_label_values(&["expired"])
                    .inc();
                return Err(ControlError::KeyExpired {
                    expired_at: expires.to_rfc3339(),
                });
            }
        }
        let team = match &key.team_id {
            // A key whose team is gone is refused, never widened to no
            // model list, budget or limits.
            Some(id) => match self.team_record(id).await? {
                Some(team) => Some(team),
                None => {
                    self.metrics
                        .auth_failures
                        .with_label_values(&["team_missing"])
                        .inc();
                    tracing::warn!(team_id = %id, key = %key.key_name, "refused a key whose team no longer exists");
                    return Err(ControlError::InvalidKey);
                }
            },
            None => None,
        };
        let user = match &key.user_id {
            Some(id) => self.user_record(id).await?,
            None => None,
        };
        Ok(Caller::Key(Arc::new(KeyContext { key, team, user })))
    }

    /// Refuses anything but the master key (the admin API).
    pub fn require_master(&self, caller: &Caller, path: &str) -> Result<(), ControlError> {
        match caller {
            Caller::Master => Ok(()),
            _ => Err(ControlError::AdminOnly {
                path: path.to_owned(),
            }),
        }
    }

    /// Charges a finished request: its cost (returned, in USD) in place of
    /// its reservation, a spend log for the batch writer, tpm counters,
    /// metrics. Synchronous (a queue push), so it can run from a stream's
    /// `Drop`.
    pub fn settle(&self, mut admission: Admission, outcome: Outcome) -> f64 {
        let (provider_model, price) = self.prices.get(&admission.model);
        let provider_model = provider_model.to_owned();
        let cost = if outcome.cache_hit {
            0.0
        } else {
            price.map_or(0.0, |p| {
                p.cost(outcome.prompt_tokens, outcome.completion_tokens)
            })
        };
        let model = admission.model.as_str();
        let label = admission.caller_label.as_str();
        let status = if outcome.success {
            "success"
        } else {
            "failure"
        };
        self.metrics
            .requests
            .with_label_values(&[model, label, status])
            .inc();
        self.metrics
            .latency
            .with_label_values(&[model])
            .observe(admission.started.elapsed().as_secs_f64());
        self.metrics
            .tokens
            .with_label_values(&[model, label, "prompt"])
            .inc_by(outcome.prompt_tokens);
        self.metrics
            .tokens
            .with_label_values(&[model, label, "completion"])
            .inc_by(outcome.completion_tokens);
        if cost > 0.0 {
            let team = admission.team_id.as_deref().unwrap_or("");
            self.metrics
                .spend
                .with_label_values(&[model, label, team])
                .inc_by(cost);
        }
        let tokens = outcome.prompt_tokens + outcome.completion_tokens;
        if !admission.tpm_subjects.is_empty() && tokens > 0 {
            let limiter = Arc::clone(&self.limiter);
            let subjects = admission.tpm_subjects.clone();
            tokio::spawn(async move {
                if let Err(e) = limiter.record_tokens(&subjects, tokens).await {
                    tracing::warn!(error = %e, "could not count tokens against tpm limits");
                }
            });
        }
        let owners = std::mem::take(&mut admission.owners);
        self.ledger.settle(&owners, admission.reserved, cost);
        admission.reserved = 0.0;
        let log = SpendLog {
            request_id: std::mem::take(&mut admission.request_id),
            token_hash: admission.token_hash.take(),
            key_alias: admission.key_alias.take(),
            team_id: admission.team_id.take(),
            user_id: admission.user_id.take(),
            model: std::mem::take(&mut admission.model),
            provider_model,
            prompt_tokens: outcome.prompt_tokens,
            completion_tokens: outcome.completion_tokens,
            cost,
            start_time: admission.start_time,
            end_time: self.now(),
            cache_hit: outcome.cache_hit,
            status: if outcome.success {
                SpendStatus::Success
            } else {
                SpendStatus::Failure
            },
        };
        self.writer.push(PendingLog { log, owners });
        cost
    }

    /// Writes queued spend logs now (shutdown; tests).
    pub async fn flush_spend(&self) {
        self.writer.flush().await;
    }

    /// Forgets cached records after the admin API changed them.
    pub fn invalidate_key(&self, token: &str) {
        self.records.invalidate([(records::RecordKind::Key, token)]);
    }

    /// See [`Self::invalidate_key`].
    pub fn invalidate_team(&self, team_id: &str) {
        self.records
            .invalidate([(records::RecordKind::Team, team_id)]);
    }

    /// See [`Self::invalidate_key`].
    pub fn invalidate_user(&self, user_id: &str) {
        self.records
            .invalidate([(records::RecordKind::User, user_id)]);
    }

    /// Resets budgets whose period ended (keeping the spend already
    /// recorded in the new period) and forgets the cached records. Run by
    /// a timer; public for tests with a hand-moved clock.
    pub async fn reset_due_budgets(&self) -> Result<u64, ControlError> {
        let reset = self
            .store
            .reset_due_budgets(self.now())
            .await
            .map_err(store_error)?;
        if reset > 0 {
            self.records.invalidate_all();
        }
        Ok(reset)
    }

    async fn key_record(&self, token: &str) -> Result<Option<Arc<KeyRecord>>, ControlError> {
        self.records
            .key(token, || bounded(self.store.key(token)))
            .await
            .map_err(store_error)
    }

    async fn team_record(&self, team_id: &str) -> Result<Option<Arc<TeamRecord>>, ControlError> {
        self.records
            .team(team_id, || bounded(self.store.team(team_id)))
            .await
            .map_err(store_error)
    }

    async fn user_record(&self, user_id: &str) -> Result<Option<Arc<UserRecord>>, ControlError> {
        self.records
            .user(user_id, || bounded(self.store.user(user_id)))
            .await
            .map_err(store_error)
    }
}

/// `lookup` within [`STORE_LOOKUP_TIMEOUT`].
async fn bounded<T>(
    lookup: impl std::future::Future<Output = Result<T, crate::store::StoreError>>,
) -> Result<T, crate::store::StoreError> {
    tokio::time::timeout(STORE_LOOKUP_TIMEOUT, lookup)
        .await
        .unwrap_or_else(|_| {
            Err(crate::store::StoreError::Database(format!(
                "the store did not answer within {} s",
                STORE_LOOKUP_TIMEOUT.as_secs()
            )))
        })
}

/// The control-plane error of a store failure.
pub fn store_error(e: crate::store::StoreError) -> ControlError {
    use crate::store::StoreError;
    match e {
        StoreError::NotFound { what, id } => ControlError::NotFound { what, id },
        StoreError::Conflict { what, id } => ControlError::Conflict {
            message: format!("{what} `{id}` already exists"),
        },
        StoreError::InvalidInput(message) => ControlError::InvalidRequest {
            message,
            param: None,
        },
        StoreError::Database(message) => ControlError::Backend { message },
    }
}
