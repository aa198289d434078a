//! The gateway's control plane: who may call what, what it cost, and what
//! happened. LiteLLM's proxy features, in one place the routes call:
//!
//! - [`ControlPlane::authenticate`]: the master key or a virtual key
//!   (stored hashed, [`secret`]) becomes a [`Caller`];
//! - [`ControlPlane::admit`]: model access ([`access`]), budgets (stored
//!   spend plus the unflushed [`ledger`]), rpm/tpm limits
//!   ([`crate::ratelimit`]);
//! - [`ControlPlane::settle`]: the cost from the price table
//!   ([`crate::pricing`]), a spend log queued for the batch writer
//!   ([`spend_writer`]), tpm from actual usage, metrics ([`metrics`]).
//!
//! Response caching ([`caching`]) and guardrails (`guarding`) are applied
//! by the routes through methods of the plane, between admission and the
//! provider call. Without a
//! `general_settings.master_key` the gateway is open: every caller is
//! [`Caller::Anonymous`] and the admin API refuses, as LiteLLM without one.

pub mod access;
mod build;
pub mod caching;
pub mod error;
pub mod gate;
mod guarding;
pub mod ledger;
pub mod metrics;
pub mod secret;
pub mod spend_writer;

pub use build::SetupError;
pub use error::ControlError;

use crate::cache::ResponseCache;
use crate::guardrails::Guardrails;
use crate::pricing::ModelPrice;
use crate::ratelimit::{Limits, RateLimitError, RateLimiter, Subject};
use crate::store::{KeyRecord, SpendLog, SpendStatus, Store, TeamRecord, UserRecord};
use access::ModelCatalog;
use chrono::{DateTime, Utc};
use ledger::SpendLedger;
use metrics::ControlMetrics;
use moka::sync::Cache;
use spend_writer::{PendingLog, SpendWriter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The time source of expiry and budget checks; tests substitute one they
/// move by hand.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// How long a key, team or user record is reused before it is read from
/// the store again. Changes made through this gateway invalidate at once;
/// another replica's changes (a deleted key, spend) show within this time.
const RECORD_TTL: Duration = Duration::from_secs(5);

/// USD below which spend and budget count as equal.
const BUDGET_EPSILON: f64 = 1e-12;

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

/// An admitted request: what `settle` needs to charge it.
pub struct Admission {
    request_id: String,
    model: String,
    caller_label: String,
    token_hash: Option<String>,
    key_alias: Option<String>,
    team_id: Option<String>,
    user_id: Option<String>,
    /// Ledger owners charged (`key:..`, `team:..`, `user:..`).
    owners: Vec<String>,
    /// Rate-limit subjects that count tokens.
    tpm_subjects: Vec<Subject>,
    started: Instant,
    start_time: DateTime<Utc>,
}

impl Admission {
    /// The gateway's id of this request (the spend log's key).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The model name the client asked for.
    pub fn model(&self) -> &str {
        &self.model
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
    master_token: Option<String>,
    store: Arc<dyn Store>,
    catalog: ModelCatalog,
    prices: ModelPrices,
    keys: Cache<String, Option<Arc<KeyRecord>>>,
    teams: Cache<String, Option<Arc<TeamRecord>>>,
    users: Cache<String, Option<Arc<UserRecord>>>,
    ledger: Arc<SpendLedger>,
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
        let token = secret::token_of(secret);
        if token == *master {
            return Ok(Caller::Master);
        }
        let Some(key) = self.key_record(&token).await? else {
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
            Some(id) => self.team_record(id).await?,
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

    /// Checks that `caller` may call `model` now: model lists, budgets,
    /// rate limits. On success the request is counted against rpm.
    pub async fn admit(&self, caller: &Caller, model: &str) -> Result<Admission, ControlError> {
        let mut admission = Admission {
            request_id: format!("chatcmpl-gw-{}", uuid::Uuid::new_v4().simple()),
            model: model.to_owned(),
            caller_label: caller.label(),
            token_hash: None,
            key_alias: None,
            team_id: None,
            user_id: None,
            owners: Vec::new(),
            tpm_subjects: Vec::new(),
            started: Instant::now(),
            start_time: self.now(),
        };
        let Caller::Key(ctx) = caller else {
            return Ok(admission);
        };
        let now = admission.start_time;
        let key = &ctx.key;
        let mut owners: Vec<Owner<'_>> = vec![Owner {
            id: format!("key:{}", key.token_hash),
            label: format!("key {}", caller.label()),
            models: &key.models,
            max_budget: key.max_budget,
            spend: key.spend,
            reset_at: key.budget_reset_at,
            limits: Limits {
                rpm: key.rpm_limit,
                tpm: key.tpm_limit,
            },
        }];
        if let Some(team) = &ctx.team {
            owners.push(Owner {
                id: format!("team:{}", team.team_id),
                label: format!(
                    "team {}",
                    team.team_alias.as_deref().unwrap_or(&team.team_id)
                ),
                models: &team.models,
                max_budget: team.max_budget,
                spend: team.spend,
                reset_at: team.budget_reset_at,
                limits: Limits {
                    rpm: team.rpm_limit,
                    tpm: team.tpm_limit,
                },
            });
        }
        if let Some(user) = &ctx.user {
            owners.push(Owner {
                id: format!("user:{}", user.user_id),
                label: format!("user {}", user.user_id),
                models: &user.models,
                max_budget: user.max_budget,
                spend: user.spend,
                reset_at: user.budget_reset_at,
                limits: Limits {
                    rpm: user.rpm_limit,
                    tpm: user.tpm_limit,
                },
            });
        }
        for owner in &owners {
            if !self.catalog.allows(owner.models, model) {
                self.metrics
                    .rejections
                    .with_label_values(&["model_access"])
                    .inc();
                return Err(ControlError::ModelNotAllowed {
                    model: model.to_owned(),
                    allowed: owner.models.join(", "),
                });
            }
        }
        for owner in &owners {
            let Some(max_budget) = owner.max_budget else {
                continue;
            };
            // A budget whose reset time has come counts from zero even
            // before the sweep writes the reset.
            let stored = if owner.reset_at.is_some_and(|at| at <= now) {
                0.0
            } else {
                owner.spend
            };
            let spend = stored + self.ledger.pending(&owner.id);
            // Sums of float costs land a hair under an exact budget
            // (10 x 0.001 = 0.00999...98); a picodollar is no money.
            if spend + BUDGET_EPSILON >= max_budget {
                self.metrics.rejections.with_label_values(&["budget"]).inc();
                return Err(ControlError::BudgetExceeded {
                    owner: owner.label.clone(),
                    spend,
                    max_budget,
                });
            }
        }
        let subjects: Vec<Subject> = owners
            .iter()
            .filter(|o| !o.limits.is_unlimited())
            .map(|o| Subject::new(o.id.clone(), o.limits))
            .collect();
        if !subjects.is_empty() {
            match self.limiter.admit(&subjects).await {
                Ok(()) => {}
                Err(RateLimitError::Limited(limited)) => {
                    self.metrics
                        .rejections
                        .with_label_values(&["rate_limit"])
                        .inc();
                    let owner = owners
                        .iter()
                        .find(|o| o.id == limited.subject)
                        .map_or_else(|| limited.subject.clone(), |o| o.label.clone());
                    return Err(ControlError::RateLimited {
                        owner,
                        limit: limited.limit.as_str(),
                        value: limited.max,
                        retry_after: limited.retry_after,
                    });
                }
                Err(RateLimitError::Backend(message)) => {
                    return Err(ControlError::Backend {
                        message: format!("rate limits unavailable: {message}"),
                    })
                }
            }
        }
        admission.tpm_subjects = subjects
            .into_iter()
            .filter(|s| s.limits.tpm.is_some())
            .collect();
        admission.owners = owners.iter().map(|o| o.id.clone()).collect();
        admission.token_hash = Some(key.token_hash.clone());
        admission.key_alias = key.key_alias.clone();
        admission.team_id = key.team_id.clone();
        admission.user_id = key.user_id.clone();
        Ok(admission)
    }

    /// Charges a finished request: its cost (returned, in USD), a spend
    /// log for the batch writer, tpm counters, metrics. Synchronous (a
    /// queue push), so it can run from a stream's `Drop`.
    pub fn settle(&self, admission: Admission, outcome: Outcome) -> f64 {
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
        self.ledger.add(&admission.owners, cost);
        let log = SpendLog {
            request_id: admission.request_id,
            token_hash: admission.token_hash,
            key_alias: admission.key_alias,
            team_id: admission.team_id,
            user_id: admission.user_id,
            model: admission.model,
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
        self.writer.push(PendingLog {
            log,
            owners: admission.owners,
        });
        cost
    }

    /// Writes queued spend logs now (shutdown; tests).
    pub async fn flush_spend(&self) {
        self.writer.flush().await;
    }

    /// Forgets cached records after the admin API changed them.
    pub fn invalidate_key(&self, token: &str) {
        self.keys.invalidate(token);
    }

    /// See [`Self::invalidate_key`].
    pub fn invalidate_team(&self, team_id: &str) {
        self.teams.invalidate(team_id);
    }

    /// See [`Self::invalidate_key`].
    pub fn invalidate_user(&self, user_id: &str) {
        self.users.invalidate(user_id);
    }

    /// Resets budgets whose period ended, and forgets the cached records
    /// and unflushed spend they had. Run by a timer; public for tests with
    /// a hand-moved clock.
    pub async fn reset_due_budgets(&self) -> Result<u64, ControlError> {
        let reset = self
            .store
            .reset_due_budgets(self.now())
            .await
            .map_err(store_error)?;
        if reset > 0 {
            self.keys.invalidate_all();
            self.teams.invalidate_all();
            self.users.invalidate_all();
        }
        Ok(reset)
    }

    async fn key_record(&self, token: &str) -> Result<Option<Arc<KeyRecord>>, ControlError> {
        if let Some(hit) = self.keys.get(token) {
            return Ok(hit);
        }
        let loaded = self
            .store
            .key(token)
            .await
            .map_err(store_error)?
            .map(Arc::new);
        self.keys.insert(token.to_owned(), loaded.clone());
        Ok(loaded)
    }

    async fn team_record(&self, team_id: &str) -> Result<Option<Arc<TeamRecord>>, ControlError> {
        if let Some(hit) = self.teams.get(team_id) {
            return Ok(hit);
        }
        let loaded = self
            .store
            .team(team_id)
            .await
            .map_err(store_error)?
            .map(Arc::new);
        self.teams.insert(team_id.to_owned(), loaded.clone());
        Ok(loaded)
    }

    async fn user_record(&self, user_id: &str) -> Result<Option<Arc<UserRecord>>, ControlError> {
        if let Some(hit) = self.users.get(user_id) {
            return Ok(hit);
        }
        let loaded = self
            .store
            .user(user_id)
            .await
            .map_err(store_error)?
            .map(Arc::new);
        self.users.insert(user_id.to_owned(), loaded.clone());
        Ok(loaded)
    }
}

/// One of the records a request is checked and charged against.
struct Owner<'a> {
    id: String,
    label: String,
    models: &'a [String],
    max_budget: Option<f64>,
    spend: f64,
    reset_at: Option<DateTime<Utc>>,
    limits: Limits,
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
