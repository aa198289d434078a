//! LiteLLM's Redis environment variables: `REDIS_URL`, `REDIS_HOST`,
//! `REDIS_PORT`, `REDIS_PASSWORD`.
//!
//! LiteLLM reads them wherever it opens Redis and the config leaves a
//! piece out (`litellm/_redis.py`, `_redis_kwargs_from_environment`), so
//! a common config says only `cache_params: {type: redis}` (or just
//! `cache: true`, whose default type on the proxy is Redis) and keeps the
//! address and password in the environment. We apply the same fallbacks
//! once, at load, so the rest of the gateway reads plain settings:
//!
//! - `litellm_settings.cache_params`: with `type: redis`, each of host,
//!   port, password comes from the variable when the file leaves it out,
//!   and `REDIS_URL` is used when the file names neither a URL nor a host.
//!   With no `type` and `cache: true`, the cache is Redis when `REDIS_HOST`
//!   or `REDIS_URL` is set (LiteLLM's proxy default), else in memory.
//! - `router_settings`: when it names any of `redis_host`, `redis_port`,
//!   `redis_password`, `redis_url`, the pieces it leaves out come from the
//!   variables the same way.
//! - Rate limits: without Redis in `router_settings`, they share the
//!   cache's Redis when the cache is in Redis (LiteLLM's proxy uses the
//!   cache's Redis client for its usage counters); see
//!   [`super::GatewayConfig::limits_redis_url`].
//!
//! Lookups go through the loader's environment (the file's
//! `environment_variables`, then the process), as LiteLLM exports
//! `environment_variables` before it reads these.

use super::settings::{CacheParams, CacheType, LitellmSettings, RouterSettings};
use super::ConfigError;

/// The variables, as LiteLLM names them.
pub const REDIS_URL: &str = "REDIS_URL";
/// See [`REDIS_URL`].
pub const REDIS_HOST: &str = "REDIS_HOST";
/// See [`REDIS_URL`].
pub const REDIS_PORT: &str = "REDIS_PORT";
/// See [`REDIS_URL`].
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";

/// The Redis settings found in the environment.
#[derive(Debug, Default)]
struct FromEnv {
    url: Option<String>,
    host: Option<String>,
    /// As written; checked only where it is used, so a stray variable
    /// does not break a config that uses no Redis.
    port: Option<String>,
    password: Option<String>,
}

impl FromEnv {
    fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            url: get(REDIS_URL),
            host: get(REDIS_HOST),
            port: get(REDIS_PORT),
            password: get(REDIS_PASSWORD),
        }
    }

    /// Whether the environment names a Redis server at all.
    fn names_a_server(&self) -> bool {
        self.url.is_some() || self.host.is_some()
    }

    /// Fills what the file left out: `url`, `host`, `port`, `password`.
    fn fill(
        &self,
        url: &mut Option<String>,
        host: &mut Option<String>,
        port: &mut Option<u16>,
        password: &mut Option<String>,
    ) -> Result<(), ConfigError> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !set(url) && !set(host) {
            if self.url.is_some() {
                url.clone_from(&self.url);
            } else {
                host.clone_from(&self.host);
            }
        }
        if port.is_none() {
            if let Some(p) = &self.port {
                *port = Some(p.trim().parse::<u16>().map_err(|_| ConfigError::Invalid {
                    path: format!("environment variable {REDIS_PORT}"),
                    message: format!("`{p}` is not a port number"),
                })?);
            }
        }
        if !set(password) {
            password.clone_from(&self.password);
        }
        Ok(())
    }
}

/// Applies the fallbacks described in the module documentation.
pub fn apply(
    router: &mut RouterSettings,
    litellm: &mut LitellmSettings,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let env = FromEnv::read(lookup);
    if litellm.cache == Some(true) {
        let params = litellm
            .cache_params
            .get_or_insert_with(CacheParams::default);
        if params.kind.is_none() {
            params.kind = Some(if env.names_a_server() {
                CacheType::Redis
            } else {
                CacheType::Local
            });
        }
        if params.kind == Some(CacheType::Redis) {
            env.fill(
                &mut params.redis_url,
                &mut params.host,
                &mut params.port,
                &mut params.password,
            )?;
        }
    }
    let names_redis = router.redis_url.is_some()
        || router.redis_host.is_some()
        || router.redis_port.is_some()
        || router.redis_password.is_some();
    if names_redis {
        env.fill(
            &mut router.redis_url,
            &mut router.redis_host,
            &mut router.redis_port,
            &mut router.redis_password,
        )?;
    }
    Ok(())
}
