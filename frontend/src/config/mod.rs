//! LiteLLM's `config.yaml`, loaded as is: `model_list`, `router_settings`,
//! `litellm_settings`, `general_settings`, `environment_variables`.
//!
//! The text is read as YAML 1.1, as LiteLLM's PyYAML reads it ([`yaml11`]:
//! `20_000` is a number, `yes` a boolean). Loading is then three passes
//! over the parsed tree: `os.environ/NAME`
//! references are resolved ([`mod@env`]), each section is typed with the
//! failing key's path in errors (`model_list[2].litellm_params.model`), and
//! keys we do not know become warnings (returned in
//! [`GatewayConfig::warnings`] and logged), never errors, so a LiteLLM file
//! with options we lack still serves. Precedence between sections is
//! merged once into [`RouterPolicy`].
//!
//! This module only reads files; building deployments is the router's
//! ([`crate::router::Router::from_config`]).

pub mod env;
pub mod params;
pub mod policy;
pub mod redis_env;
pub mod settings;
pub mod yaml11;

pub use policy::RouterPolicy;
pub use settings::{
    CacheParams, CacheType, GeneralSettings, LitellmSettings, RetryPolicy, RouterSettings,
    RoutingStrategy, RoutingStrategyArgs,
};

use params::DeploymentParams;
use std::time::Duration;

/// The longest duration a config value may set (a year): longer ones are
/// clamped, so that no `Instant + Duration` downstream can overflow and a
/// `timeout: 1e20` means "very long", never a panic at startup.
pub const MAX_CONFIG_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Seconds from a config file as a duration: `None` unless finite and not
/// negative, clamped to [`MAX_CONFIG_DURATION`].
pub fn config_duration(secs: f64) -> Option<Duration> {
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MAX_CONFIG_DURATION.as_secs_f64())))
}
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A `litellm_params.model` served by the local engine instead of a remote
/// provider: `local/<anything>` or exactly `engine`.
pub fn is_local_model(model: &str) -> bool {
    model == "engine" || model.starts_with("local/")
}

/// Why a config could not be loaded; every variant names where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// The text is not YAML.
    #[error("config is not valid YAML: {message}")]
    Yaml {
        /// The parser's message, with line and column.
        message: String,
    },
    /// An `os.environ/NAME` reference names an unset variable.
    #[error("{path}: environment variable `{name}` is not set (referenced as os.environ/{name})")]
    MissingEnv {
        /// Where the reference is.
        path: String,
        /// The variable.
        name: String,
    },
    /// A key has the wrong type or a required key is missing.
    #[error("{path}: {message}")]
    Invalid {
        /// The key's path (`model_list[2].litellm_params.model`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A deployment could not be built (unknown provider, no local engine).
    #[error("model_list[{index}] (model_name `{model_name}`): {message}")]
    Deployment {
        /// Position in `model_list`.
        index: usize,
        /// Its model_name.
        model_name: String,
        /// Why.
        message: String,
    },
    /// The router's metrics could not be registered (already registered).
    #[error("cannot register router metrics: {message}")]
    Metrics {
        /// prometheus' message.
        message: String,
    },
}

/// `model_info` of an entry: LiteLLM's metadata; `id` names the deployment
/// in metrics and logs, the rest is kept for later issues (pricing, UI).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ModelInfo {
    /// Stable deployment id.
    #[serde(default)]
    pub id: Option<String>,
    /// Every other key, kept as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One `model_list` entry: a deployment serving `model_name`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ModelEntry {
    /// The name clients ask for; several entries may share it (a model
    /// group the router balances over).
    pub model_name: String,
    /// Where and how to call it.
    pub litellm_params: DeploymentParams,
    /// Metadata.
    #[serde(default)]
    pub model_info: ModelInfo,
}

/// The top level as typed; `policy` is computed from it.
#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    model_list: Vec<ModelEntry>,
    #[serde(default)]
    router_settings: RouterSettings,
    #[serde(default)]
    litellm_settings: LitellmSettings,
    #[serde(default)]
    general_settings: GeneralSettings,
    #[serde(default)]
    guardrails: Vec<Value>,
    /// Read before typing (they resolve `os.environ/`); typed here only
    /// so the key is not reported as unknown.
    #[serde(default)]
    #[allow(dead_code)]
    environment_variables: BTreeMap<String, Value>,
}

/// A loaded LiteLLM config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayConfig {
    /// The deployments, in file order (models() keeps this order).
    pub model_list: Vec<ModelEntry>,
    /// `router_settings` as written.
    pub router_settings: RouterSettings,
    /// `litellm_settings` as written.
    pub litellm_settings: LitellmSettings,
    /// `general_settings` as written.
    pub general_settings: GeneralSettings,
    /// The top-level `guardrails` list as written; the control plane types
    /// and checks it (`crate::guardrails`).
    pub guardrails: Vec<Value>,
    /// `environment_variables` (also used to resolve `os.environ/`).
    pub environment_variables: BTreeMap<String, String>,
    /// The router's effective settings.
    pub policy: RouterPolicy,
    /// Unknown keys and other things worth a look; already logged.
    pub warnings: Vec<String>,
}

/// `litellm_params` keys LiteLLM defines that the adapters may read from
/// `DeploymentParams::extra`; any other extra key gets a warning.
const KNOWN_PARAM_EXTRAS: &[&str] = &[
    "custom_llm_provider",
    "organization",
    "max_parallel_requests",
    "region_name",
    "aws_profile_name",
    "aws_role_name",
    "aws_session_name",
    "vertex_credentials",
    "base_model",
    "api_type",
    "azure_ad_token",
    "tenant_id",
    "client_id",
    "client_secret",
    "extra_headers",
    "headers",
    "tags",
    "use_in_pass_through",
    "merge_reasoning_content_in_choices",
    "mock_response",
    "keep_alive",
    "num_ctx",
    "guardrails",
];

impl GatewayConfig {
    /// Loads `path`, resolving `os.environ/` from the file's
    /// `environment_variables` and then the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::from_yaml(&text, &|name| std::env::var(name).ok())
    }

    /// Parses `text`; `env` answers variables not in the file's
    /// `environment_variables` (tests pass a map, [`Self::load`] the
    /// process environment). Warnings are logged with `tracing::warn`.
    pub fn from_yaml(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut root = yaml11::parse(text).map_err(|message| ConfigError::Yaml { message })?;
        if root.is_null() {
            root = Value::Object(Map::new());
        }
        if !root.is_object() {
            return Err(ConfigError::Invalid {
                path: "(top level)".to_owned(),
                message: "expected a mapping with model_list, router_settings, ...".to_owned(),
            });
        }
        // environment_variables first: they may themselves reference the
        // process environment, and everything else may reference them.
        let mut file_env = BTreeMap::new();
        if let Some(vars) = root.get_mut("environment_variables") {
            env::resolve(vars, "environment_variables", env)?;
            if let Value::Object(map) = vars {
                for (k, v) in map {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    file_env.insert(k.clone(), v);
                }
            }
        }
        let lookup = |name: &str| file_env.get(name).cloned().or_else(|| env(name));
        env::resolve(&mut root, "", &lookup)?;

        let mut warnings = Vec::new();
        let mut raw: RawConfig = typed(root, &mut warnings)?;
        redis_env::apply(&mut raw.router_settings, &mut raw.litellm_settings, &lookup)?;
        let mut model_list = raw.model_list;
        for (i, entry) in model_list.iter_mut().enumerate() {
            let params = &mut entry.litellm_params;
            if entry.model_name.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    path: format!("model_list[{i}].model_name"),
                    message: "must not be empty".to_owned(),
                });
            }
            if params.model.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    path: format!("model_list[{i}].litellm_params.model"),
                    message: "must not be empty".to_owned(),
                });
            }
            if params.drop_params.is_none() {
                params.drop_params = raw.litellm_settings.drop_params;
            }
            for key in params.extra.keys() {
                if !KNOWN_PARAM_EXTRAS.contains(&key.as_str()) {
                    warnings.push(format!(
                        "model_list[{i}].litellm_params.{key}: unknown key, passed to the \
                         provider adapter as is"
                    ));
                }
            }
        }
        for w in &warnings {
            tracing::warn!(warning = %w, "config.yaml");
        }
        let policy = RouterPolicy::merge(&raw.router_settings, &raw.litellm_settings);
        Ok(Self {
            model_list,
            router_settings: raw.router_settings,
            litellm_settings: raw.litellm_settings,
            general_settings: raw.general_settings,
            guardrails: raw.guardrails,
            environment_variables: file_env,
            policy,
            warnings,
        })
    }

    /// The Redis that rate limits share between replicas:
    /// `router_settings`' Redis, else the response cache's when it is in
    /// Redis (LiteLLM's proxy counts usage in the cache's Redis), else
    /// none (limits are per process). Returns the URL and the config key
    /// that named it, for errors.
    pub fn limits_redis_url(&self) -> Option<(String, &'static str)> {
        if let Some(url) = self.router_settings.redis_url() {
            return Some((url, "router_settings.redis_host"));
        }
        let cache = self.litellm_settings.cache_params.as_ref()?;
        (self.litellm_settings.cache == Some(true) && cache.kind == Some(CacheType::Redis))
            .then(|| cache.redis_url())
            .flatten()
            .map(|url| (url, "litellm_settings.cache_params"))
    }

    /// Every distinct model_name, in file order.
    pub fn model_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for e in &self.model_list {
            if !names.contains(&e.model_name) {
                names.push(e.model_name.clone());
            }
        }
        names
    }
}

/// Deserializes `value` as `T`, naming the failing key's path in errors
/// and collecting keys `T` does not know into `warnings`.
fn typed<T: DeserializeOwned>(value: Value, warnings: &mut Vec<String>) -> Result<T, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let mut unknown = Vec::new();
    let result = {
        let de = serde_path_to_error::Deserializer::new(value, &mut track);
        serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
    };
    match result {
        Ok(v) => {
            warnings.extend(
                unknown
                    .into_iter()
                    .map(|p| format!("{p}: unknown key, ignored")),
            );
            Ok(v)
        }
        Err(e) => {
            let mut path = track.path().to_string();
            let message = e.to_string();
            // serde reports a missing field at its parent; name the field.
            if let Some(field) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                path = if path.is_empty() || path == "." {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
            }
            Err(ConfigError::Invalid { path, message })
        }
    }
}

#[cfg(test)]
mod tests;
