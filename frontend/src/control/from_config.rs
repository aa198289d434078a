//! Building a [`ControlPlane`] from a LiteLLM config: the store from
//! `general_settings.database_url`, limits in memory or in Redis
//! (`router_settings.redis_host`), the cache from `litellm_settings`,
//! guardrails from the top-level `guardrails` list, prices from the
//! embedded table and the deployments' own prices.

use super::access::ModelCatalog;
use super::ledger::SpendLedger;
use super::metrics::ControlMetrics;
use super::records::{RecordKind, Records};
use super::spend_writer::{OnWritten, SpendWriter, WriterOptions, DEFAULT_HOLD_LIMIT};
use super::{secret, CacheSettings, Clock, ControlPlane, ModelPrices, DEFAULT_RESERVE_MAX_TOKENS};
use crate::cache::{MemoryCache, RedisCache};
use crate::config::{CacheType, GatewayConfig};
use crate::guardrails::{GuardrailSpec, Guardrails};
use crate::pricing::{is_local, ModelPrice, PriceOverride, PriceTable};
use crate::ratelimit::{MemoryLimiter, RateLimiter, RedisLimiter};
use crate::store::{PostgresStore, SqliteStore, Store};
use prometheus::Registry;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why the control plane could not start; each names the config key.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The database could not be opened or migrated.
    #[error("general_settings.database_url: {0}")]
    Database(String),
    /// Redis could not be reached.
    #[error("{key}: {message}")]
    Redis {
        /// The config key naming Redis.
        key: &'static str,
        /// What failed.
        message: String,
    },
    /// A guardrail or price is misconfigured.
    #[error("{key}: {message}")]
    Invalid {
        /// The config key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Metrics registration failed (a second plane on one registry).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Default seconds between spend-log batch writes.
const DEFAULT_BATCH_SECONDS: f64 = 1.0;
/// Default seconds between budget-reset sweeps.
const DEFAULT_RESET_SECONDS: f64 = 10.0;
/// Default response-cache time-to-live (LiteLLM's is 600 s).
const DEFAULT_CACHE_TTL: f64 = 600.0;
/// The spend journal's folder beside the config file, unless
/// `general_settings.spend_journal_dir` names another.
const DEFAULT_JOURNAL_DIR: &str = "spend-journal";

impl ControlPlane {
    /// The control plane of `config`, whose file lives in `config_dir`
    /// (the default SQLite database and the spend journal go there).
    /// Spawns the spend writer (which first replays what a previous run
    /// left in the journal) and the budget-reset sweep on the current
    /// runtime.
    pub async fn from_config(
        config: &GatewayConfig,
        config_dir: &Path,
        registry: &Registry,
        clock: Clock,
    ) -> Result<Arc<Self>, SetupError> {
        let store = open_store(config.general_settings.database_url.as_deref(), config_dir).await?;
        let journal = config_dir.join(
            config
                .general_settings
                .spend_journal_dir
                .as_deref()
                .unwrap_or(DEFAULT_JOURNAL_DIR),
        );
        Self::build(config, store, registry, clock, Some(journal)).await
    }

    /// The control plane of `config` over an already open `store` (tests
    /// pass a PostgreSQL store in a schema of their own). The spend
    /// journal is used only when `general_settings.spend_journal_dir`
    /// names its folder.
    pub async fn with_store(
        config: &GatewayConfig,
        store: Arc<dyn Store>,
        registry: &Registry,
        clock: Clock,
    ) -> Result<Arc<Self>, SetupError> {
        let journal = config
            .general_settings
            .spend_journal_dir
            .as_deref()
            .map(PathBuf::from);
        Self::build(config, store, registry, clock, journal).await
    }

    async fn build(
        config: &GatewayConfig,
        store: Arc<dyn Store>,
        registry: &Registry,
        clock: Clock,
        journal: Option<PathBuf>,
    ) -> Result<Arc<Self>, SetupError> {
        let general = &config.general_settings;
        let limiter: Arc<dyn RateLimiter> = match config.limits_redis_url() {
            Some((url, key)) => Arc::new(RedisLimiter::new(
                redis_connection(&url, key).await?,
                "engine:rl:",
            )),
            None => Arc::new(MemoryLimiter::new()),
        };
        let cache = cache_settings(config).await?;
        let specs: Vec<GuardrailSpec> = config
            .guardrails
            .iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value(v.clone()).map_err(|e| SetupError::Invalid {
                    key: format!("guardrails[{i}]"),
                    message: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let guardrails = Guardrails::from_specs(&specs).map_err(|e| SetupError::Invalid {
            key: "guardrails".to_owned(),
            message: e.to_string(),
        })?;
        let model_guardrails = model_guardrails(config, &guardrails)?;
        let prices = model_prices(config)?;
        let metrics = ControlMetrics::register(registry)?;
        let ledger = Arc::new(SpendLedger::default());
        let records = Arc::new(Records::new());
        let on_written: OnWritten = {
            let records = Arc::clone(&records);
            Arc::new(move |batch| {
                records.invalidate(batch.iter().flat_map(|pending| {
                    let log = &pending.log;
                    [
                        (RecordKind::Key, &log.token_hash),
                        (RecordKind::Team, &log.team_id),
                        (RecordKind::User, &log.user_id),
                    ]
                    .into_iter()
                    .filter_map(|(kind, id)| id.as_deref().map(|id| (kind, id)))
                }));
            })
        };
        let writer = SpendWriter::spawn(
            Arc::clone(&store),
            Arc::clone(&ledger),
            WriterOptions {
                interval: seconds(general.proxy_batch_write_at, DEFAULT_BATCH_SECONDS),
                journal,
                hold_limit: general
                    .max_unwritten_spend_logs
                    .unwrap_or(DEFAULT_HOLD_LIMIT),
            },
            on_written,
            metrics.spend_batches.clone(),
        )
        .await;
        let plane = Arc::new(Self {
            master_token: general
                .master_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .map(secret::MasterKey::new),
            store,
            catalog: ModelCatalog::from_config(config),
            prices,
            records,
            ledger,
            default_max_tokens: general
                .budget_reserve_max_tokens
                .unwrap_or(DEFAULT_RESERVE_MAX_TOKENS),
            writer,
            limiter,
            cache,
            guardrails,
            model_guardrails,
            metrics,
            clock,
        });
        spawn_budget_resets(
            Arc::downgrade(&plane),
            seconds(general.budget_reset_interval, DEFAULT_RESET_SECONDS),
        );
        Ok(plane)
    }
}

/// `secs` as a duration, `default` when unset or not positive.
fn seconds(secs: Option<f64>, default: f64) -> Duration {
    secs.filter(|s| *s > 0.0)
        .and_then(crate::config::config_duration)
        .unwrap_or(Duration::from_secs_f64(default))
}

/// The store `database_url` names: `postgres://`/`postgresql://` or
/// `sqlite://path`; default `gateway.db` in `config_dir`.
async fn open_store(url: Option<&str>, config_dir: &Path) -> Result<Arc<dyn Store>, SetupError> {
    let db = |e: crate::store::StoreError| SetupError::Database(e.to_string());
    match url.map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(u).await.map_err(db)?))
        }
        Some(u) if u.starts_with("sqlite:") => {
            Ok(Arc::new(SqliteStore::connect(u).await.map_err(db)?))
        }
        Some(_) => Err(SetupError::Database(
            "expected postgres://... or sqlite://path".to_owned(),
        )),
        None => {
            let path = config_dir.join("gateway.db");
            let url = format!("sqlite://{}", path.display());
            Ok(Arc::new(SqliteStore::connect(&url).await.map_err(db)?))
        }
    }
}

async fn redis_connection(
    url: &str,
    key: &'static str,
) -> Result<redis::aio::ConnectionManager, SetupError> {
    let fail = |e: redis::RedisError| SetupError::Redis {
        key,
        message: format!("cannot connect to Redis: {e}"),
    };
    let client = redis::Client::open(url).map_err(fail)?;
    redis::aio::ConnectionManager::new(client)
        .await
        .map_err(fail)
}

async fn cache_settings(config: &GatewayConfig) -> Result<Option<CacheSettings>, SetupError> {
    let settings = &config.litellm_settings;
    if settings.cache != Some(true) {
        return Ok(None);
    }
    let params = settings.cache_params.clone().unwrap_or_default();
    let default_ttl = seconds(params.ttl, DEFAULT_CACHE_TTL);
    let backend: Arc<dyn crate::cache::ResponseCache> = match params.kind.unwrap_or_default() {
        // 256 MiB of cached bodies.
        CacheType::Local => Arc::new(MemoryCache::new(256 * 1024 * 1024)),
        CacheType::Redis => {
            let url = params.redis_url().ok_or_else(|| SetupError::Invalid {
                key: "litellm_settings.cache_params".to_owned(),
                message: "type: redis needs host (and port) or redis_url, in the file or in \
                          REDIS_HOST (REDIS_PORT, REDIS_PASSWORD) or REDIS_URL"
                    .to_owned(),
            })?;
            let namespace = params
                .namespace
                .clone()
                .unwrap_or_else(|| "engine:cache:".to_owned());
            Arc::new(RedisCache::new(
                redis_connection(&url, "litellm_settings.cache_params").await?,
                namespace,
            ))
        }
    };
    Ok(Some(CacheSettings {
        backend,
        default_ttl,
    }))
}

/// `litellm_params.guardrails` of each model name, checked against the
/// configured guardrails.
fn model_guardrails(
    config: &GatewayConfig,
    guardrails: &Guardrails,
) -> Result<HashMap<String, Vec<String>>, SetupError> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (i, entry) in config.model_list.iter().enumerate() {
        let Some(list) = entry.litellm_params.extra.get("guardrails") else {
            continue;
        };
        let names: Vec<String> =
            serde_json::from_value(list.clone()).map_err(|e| SetupError::Invalid {
                key: format!("model_list[{i}].litellm_params.guardrails"),
                message: e.to_string(),
            })?;
        for name in &names {
            if !guardrails.names().any(|n| n == name) {
                return Err(SetupError::Invalid {
                    key: format!("model_list[{i}].litellm_params.guardrails"),
                    message: format!(
                        "no guardrail named `{name}` in the top-level guardrails list"
                    ),
                });
            }
        }
        let slot = out.entry(entry.model_name.clone()).or_default();
        for name in names {
            if !slot.contains(&name) {
                slot.push(name);
            }
        }
    }
    Ok(out)
}

/// Each model name's price: the embedded table's entry for its
/// deployment's provider string, with the deployment's own
/// `input_cost_per_token`/`output_cost_per_token`/`base_model` on top;
/// local models cost 0 unless priced. A group of several deployments is
/// priced by its first.
fn model_prices(config: &GatewayConfig) -> Result<ModelPrices, SetupError> {
    let mut table = PriceTable::embedded().map_err(|e| SetupError::Invalid {
        key: "price table".to_owned(),
        message: e.to_string(),
    })?;
    let mut by_model: HashMap<String, (String, Option<ModelPrice>)> = HashMap::new();
    for entry in &config.model_list {
        if by_model.contains_key(&entry.model_name) {
            continue;
        }
        let model = &entry.litellm_params.model;
        let over = PriceOverride::from_model_entry(entry);
        let price = if over.is_empty() {
            if is_local(model) {
                None
            } else {
                table.lookup(model).cloned()
            }
        } else {
            table.apply_override(model, &over);
            table.get(model).cloned()
        };
        if price.is_none() && !is_local(model) {
            tracing::warn!(model = %model, "no price known; its requests are logged at cost 0");
        }
        by_model.insert(entry.model_name.clone(), (model.clone(), price));
    }
    Ok(ModelPrices { by_model })
}

/// Resets due budgets every `every` while the plane lives.
fn spawn_budget_resets(plane: std::sync::Weak<ControlPlane>, every: Duration) {
    tokio::spawn(async move {
        // The first sweep is one interval after start: admission already
        // treats a due budget as reset, so nothing waits on it.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tick.tick().await;
            let Some(plane) = plane.upgrade() else {
                return;
            };
            match plane.reset_due_budgets().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(reset = n, "budgets reset"),
                Err(e) => tracing::warn!(error = %e, "budget reset sweep failed"),
            }
        }
    });
}
