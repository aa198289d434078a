//! The router: LiteLLM's `Router` semantics over our [`Provider`] trait.
//!
//! Every `model_list` entry is a [`Deployment`]; entries sharing a
//! model_name form a group. A request for a model_name goes through:
//! pick a deployment ([`strategy`], among the healthy ones of the lowest
//! `order`), call it under its own timeout, and on failure retry
//! ([`retry`]: per-error-kind counts, exponential backoff honouring
//! Retry-After, another deployment when there is one), then the
//! fallbacks of the group in order (context-window and content-policy
//! fallbacks for those errors), all under the request's deadline. Failures
//! count toward a deployment's cooldown (more than `allowed_fails` in a
//! minute when it is set, else LiteLLM's rule of more than half of the
//! minute's requests; at once for 429/401/404 when the group has other
//! deployments); a group whose deployments all cool down fails fast with a
//! 429 naming the model, which its fallbacks may still rescue.
//!
//! Streams are retried only until their first chunk: after it the client
//! has the 200 and the bytes, so an error is passed on as an error item.
//!
//! A `model_name` with `*` (`openai/*`) is a pattern: [`wildcard`]
//! resolves a requested name to its deployments at request time, for
//! direct requests and fallback targets alike. An entry that cannot be
//! built either refuses the config or leaves its model_name answering 503
//! ([`BadEntries`]).
//!
//! `Router` is itself a [`Provider`], so the HTTP routes serve it like any
//! backend. Where we differ from LiteLLM: state is per process (no Redis);
//! a retry that can go to another healthy deployment does not sleep (the
//! Retry-After concerned the failed one, which is excluded), as LiteLLM's
//! `_time_to_sleep_before_retry` also does; fallbacks are one level deep
//! (a fallback's own fallbacks are not followed) and a failed chain
//! returns the original error.

pub mod deployment;
pub mod local;
pub mod metrics;
pub mod outcome;
pub mod retry;
pub mod strategy;
pub mod wildcard;

pub use deployment::{Deployment, DeploymentSpec};
pub use metrics::RouterMetrics;
pub use wildcard::Wildcards;

use crate::config::{is_local_model, ConfigError, GatewayConfig, RouterPolicy};
use crate::error::ProviderError;
use crate::openai::{
    ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, CompletionChunk,
    CompletionRequest, CompletionResponse, DetokenizeRequest, DetokenizeResponse, EmbeddingRequest,
    EmbeddingResponse, ModelCard, TokenizeRequest, TokenizeResponse,
};
use crate::provider::generation::Generation;
use crate::provider::{ChunkStream, Provider};
use deployment::FailureOutcome;
use futures::future::BoxFuture;
use outcome::{Finish, Peeked, Routed};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strategy::{Choice, PickContext};
use tokio::time::Instant;

/// State shared by the router and the streams it hands out.
pub struct Shared {
    policy: RouterPolicy,
    metrics: RouterMetrics,
    /// model_name -> its deployments, in config order.
    groups: HashMap<String, Arc<Vec<Arc<Deployment>>>>,
    /// model_names in config order.
    names: Vec<String>,
    /// model_names none of whose entries could be built; they answer
    /// [`ProviderError::Unservable`] (why was logged at startup).
    unservable: Vec<String>,
    /// Entries whose model_name is a pattern (`*`, `openai/*`).
    wildcards: Wildcards,
}

impl Shared {
    /// The deployments serving `model`: its group, else the group a
    /// wildcard entry resolves it to. Errors: an unservable model_name
    /// (503), a wildcard name whose adapter cannot be built (its error),
    /// an unknown model (404).
    fn group(&self, model: &str) -> Result<Arc<Vec<Arc<Deployment>>>, ProviderError> {
        if let Some(g) = self.groups.get(model) {
            return Ok(Arc::clone(g));
        }
        if self.unservable.iter().any(|n| n == model) {
            return Err(ProviderError::Unservable {
                model: model.to_owned(),
            });
        }
        let metrics = &self.metrics;
        let on_new = |d: &Deployment| {
            metrics
                .in_cooldown
                .with_label_values(&[&d.model_name, &d.id])
                .set(0);
        };
        self.wildcards.resolve(model, &on_new).unwrap_or_else(|| {
            Err(ProviderError::ModelNotFound {
                model: model.to_owned(),
            })
        })
    }

    /// Whether a request for `model` reaches a deployment (or the 503 of
    /// an unservable one) rather than a 404.
    fn serves(&self, model: &str) -> bool {
        self.groups.contains_key(model)
            || self.unservable.iter().any(|n| n == model)
            || self.wildcards.matches(model)
    }

    /// Counts a failed attempt on `d` and cools it down when due.
    fn failed(&self, d: &Deployment, e: &ProviderError) {
        self.metrics
            .upstream_errors
            .with_label_values(&[&d.model_name, &d.id, e.status().as_str()])
            .inc();
        if !retry::counts_as_failure(e) {
            return;
        }
        let group_size = self
            .groups
            .get(&d.model_name)
            .map(|g| g.len())
            .or_else(|| self.wildcards.cached(&d.model_name).map(|g| g.len()))
            .unwrap_or(1);
        // LiteLLM does not cool the only deployment of a group down for one
        // 429: that would black out the whole model_name.
        let immediate = retry::cools_immediately(e) && group_size > 1;
        // A 429 that says when to come back cools for exactly that long.
        let cooldown = retry::retry_after(e)
            .filter(|_| immediate)
            .unwrap_or(self.policy.cooldown_time);
        let outcome = d.record_failure(
            Instant::now(),
            immediate,
            self.policy.allowed_fails,
            group_size == 1,
            cooldown,
        );
        if let FailureOutcome::CooledDown(fails) = outcome {
            let labels = [d.model_name.as_str(), d.id.as_str()];
            self.metrics.cooldowns.with_label_values(&labels).inc();
            self.metrics.in_cooldown.with_label_values(&labels).set(1);
            tracing::warn!(
                model_name = %d.model_name,
                deployment = %d.id,
                failures_last_minute = fails,
                status = e.status().as_u16(),
                cooldown_s = cooldown.as_secs_f64(),
                "deployment cooling down"
            );
        }
    }
}

/// Routes requests over every deployment of a LiteLLM config.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

/// One attempt: call a deployment for the given model_name.
type AttemptFn<'a, T> = dyn Fn(Arc<Deployment>, String) -> BoxFuture<'static, Result<T, ProviderError>>
    + Send
    + Sync
    + 'a;

/// What [`Router::from_config_with`] does with a `model_list` entry that
/// cannot be built (its provider cannot be inferred, a required parameter
/// is missing, it names the local engine and none runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadEntries {
    /// Refuse the whole config, naming the entry (`--strict-config`).
    Refuse,
    /// Log one warning naming the entry and serve the rest; its
    /// model_name answers 503 ([`ProviderError::Unservable`]) unless
    /// another entry of that name builds. LiteLLM, too, starts with such an
    /// entry and fails only the requests that reach it.
    Isolate,
}

impl Router {
    /// [`Router::from_config_with`] refusing any entry that cannot be
    /// built.
    pub fn from_config(
        config: &GatewayConfig,
        local: Option<Arc<dyn Provider>>,
        client: reqwest::Client,
        registry: &prometheus::Registry,
    ) -> Result<Self, ConfigError> {
        Self::from_config_with(config, local, client, registry, BadEntries::Refuse)
    }

    /// Builds every deployment of `config` (remote ones through
    /// [`crate::providers::build`], `local/...` ones on `local`, wildcard
    /// ones per requested name, see [`wildcard`]) and registers the
    /// router's metrics in `registry`; `bad` says what an entry that
    /// cannot be built does.
    pub fn from_config_with(
        config: &GatewayConfig,
        local: Option<Arc<dyn Provider>>,
        client: reqwest::Client,
        registry: &prometheus::Registry,
        bad: BadEntries,
    ) -> Result<Self, ConfigError> {
        let images =
            crate::fetch::SafeFetcher::new(config.general_settings.image_url_fetch.as_ref())
                .map(Arc::new)
                .map_err(|e| ConfigError::Invalid {
                    path: "general_settings.image_url_fetch".to_owned(),
                    message: e.to_string(),
                })?;
        let build: Arc<wildcard::BuildFn> = Arc::new(
            move |name: &str, params: &crate::config::params::DeploymentParams| {
                crate::providers::build_with_images(name, params, &client, &images)
            },
        );
        let mut specs = Vec::with_capacity(config.model_list.len());
        let mut patterns = Vec::new();
        let mut unservable = Vec::new();
        for (index, entry) in config.model_list.iter().enumerate() {
            let fail = |message: String| ConfigError::Deployment {
                index,
                model_name: entry.model_name.clone(),
                message,
            };
            let id = entry
                .model_info
                .id
                .clone()
                .unwrap_or_else(|| format!("{}-{index}", entry.model_name));
            let params = &entry.litellm_params;
            let built: Result<Option<Arc<dyn Provider>>, ConfigError> =
                if is_local_model(&params.model) {
                    match &local {
                        Some(engine) => Ok(Some(Arc::new(local::LocalDeployment::new(
                            Arc::clone(engine),
                        )))),
                        None => Err(fail(format!(
                            "`{}` is served by the local engine, but none is running \
                             (start with --model as well as --config)",
                            params.model
                        ))),
                    }
                } else if wildcard::is_pattern(&entry.model_name) {
                    probe_wildcard(&entry.model_name, params, build.as_ref())
                        .map(|()| None)
                        .map_err(|e| fail(e.to_string()))
                } else {
                    build(&entry.model_name, params)
                        .map(Some)
                        .map_err(|e| fail(e.to_string()))
                };
            match built {
                Ok(Some(provider)) => specs.push(DeploymentSpec {
                    model_name: entry.model_name.clone(),
                    id,
                    params: params.clone(),
                    provider,
                }),
                Ok(None) => patterns.push(wildcard::WildcardEntry {
                    pattern: entry.model_name.clone(),
                    id,
                    params: params.clone(),
                }),
                Err(e) if bad == BadEntries::Refuse => return Err(e),
                Err(e) => {
                    tracing::warn!(
                        model_name = %entry.model_name,
                        "{e}; this entry is not served (requests that reach it get a 503 \
                         while the other models serve; --strict-config refuses such a config)"
                    );
                    if !unservable.contains(&entry.model_name) {
                        unservable.push(entry.model_name.clone());
                    }
                }
            }
        }
        let wildcards = Wildcards::new(patterns, build).map_err(|e| ConfigError::Invalid {
            path: "model_list".to_owned(),
            message: format!("wildcard model_name: {e}"),
        })?;
        let order = config.model_names();
        Self::assemble(
            specs,
            unservable,
            wildcards,
            &order,
            config.policy.clone(),
            registry,
        )
    }

    /// A router over `deployments` (config order) with `policy`; checks
    /// that every fallback names a served model_name.
    pub fn new(
        deployments: Vec<DeploymentSpec>,
        policy: RouterPolicy,
        registry: &prometheus::Registry,
    ) -> Result<Self, ConfigError> {
        Self::assemble(
            deployments,
            Vec::new(),
            Wildcards::none(),
            &[],
            policy,
            registry,
        )
    }

    /// The router over built deployments, unservable model_names and
    /// wildcard entries; model_names listed in `order` (config order),
    /// wildcard patterns left out (a client cannot ask for `*` itself).
    /// Every fallback must name a model_name or a name a wildcard serves.
    fn assemble(
        deployments: Vec<DeploymentSpec>,
        mut unservable: Vec<String>,
        wildcards: Wildcards,
        order: &[String],
        policy: RouterPolicy,
        registry: &prometheus::Registry,
    ) -> Result<Self, ConfigError> {
        let metrics = RouterMetrics::register(registry).map_err(|e| ConfigError::Metrics {
            message: e.to_string(),
        })?;
        let mut groups: HashMap<String, Vec<Arc<Deployment>>> = HashMap::new();
        let mut names = Vec::new();
        for spec in deployments {
            if !groups.contains_key(&spec.model_name) {
                names.push(spec.model_name.clone());
            }
            let d = Arc::new(Deployment::new(spec));
            metrics
                .in_cooldown
                .with_label_values(&[&d.model_name, &d.id])
                .set(0);
            groups.entry(d.model_name.clone()).or_default().push(d);
        }
        unservable.retain(|n| !groups.contains_key(n));
        for n in &unservable {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let position = |n: &String| order.iter().position(|o| o == n).unwrap_or(usize::MAX);
        names.sort_by_key(position);
        for (kind, list) in [
            ("fallbacks", &policy.fallbacks),
            ("context_window_fallbacks", &policy.context_window_fallbacks),
            ("content_policy_fallbacks", &policy.content_policy_fallbacks),
        ] {
            for (from, tos) in list {
                for name in std::iter::once(from).chain(tos) {
                    let known = groups.contains_key(name)
                        || unservable.contains(name)
                        || wildcards.matches(name);
                    if !known {
                        return Err(ConfigError::Invalid {
                            path: kind.to_owned(),
                            message: format!(
                                "`{name}` is not a model_name of model_list, nor served by a \
                                 wildcard entry"
                            ),
                        });
                    }
                }
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                policy,
                metrics,
                groups: groups.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
                names,
                unservable,
                wildcards,
            }),
        })
    }

    /// The model_names whose entries could not be built (served as 503).
    pub fn unservable(&self) -> &[String] {
        &self.shared.unservable
    }

    /// The deployments serving `model_name`.
    pub fn deployments(&self, model_name: &str) -> &[Arc<Deployment>] {
        self.shared
            .groups
            .get(model_name)
            .map_or(&[], |g| g.as_slice())
    }

    /// The effective policy.
    pub fn policy(&self) -> &RouterPolicy {
        &self.shared.policy
    }

    /// Runs `attempt` for `model` with retries and fallbacks under the
    /// request's deadline (its own `timeout`, else the router's).
    async fn call<T: Routed>(
        &self,
        model: &str,
        own_timeout: Option<Duration>,
        est_tokens: u64,
        attempt: &AttemptFn<'_, T>,
    ) -> Result<T::Output, ProviderError> {
        // A deadline past what the clock can represent is no deadline
        // (a client may send `"timeout": 1e20`).
        let deadline = own_timeout
            .or(self.shared.policy.timeout)
            .and_then(|t| Instant::now().checked_add(t));
        let chain = self.with_fallbacks(model, deadline, est_tokens, attempt);
        match deadline {
            Some(d) => tokio::time::timeout_at(d, chain)
                .await
                .unwrap_or(Err(ProviderError::Timeout)),
            None => chain.await,
        }
    }

    async fn with_fallbacks<T: Routed>(
        &self,
        model: &str,
        deadline: Option<Instant>,
        est_tokens: u64,
        attempt: &AttemptFn<'_, T>,
    ) -> Result<T::Output, ProviderError> {
        let err = match self.in_group(model, deadline, est_tokens, attempt).await {
            Ok(out) => return Ok(out),
            Err(e) => e,
        };
        for fallback in self.fallbacks_for(model, &err) {
            self.shared
                .metrics
                .fallbacks
                .with_label_values(&[model, &fallback])
                .inc();
            tracing::info!(from = model, to = %fallback, error = %err, "falling back");
            match self
                .in_group(&fallback, deadline, est_tokens, attempt)
                .await
            {
                Ok(out) => return Ok(out),
                Err(e) => {
                    tracing::info!(model = %fallback, error = %e, "fallback failed");
                }
            }
        }
        Err(err)
    }

    /// The fallback model_names for a failure of `model`: context-window
    /// or content-policy fallbacks for those errors (the generic ones when
    /// none are set), the generic ones otherwise; none for a request the
    /// gateway itself found invalid (it would fail anywhere).
    fn fallbacks_for(&self, model: &str, err: &ProviderError) -> Vec<String> {
        let p = &self.shared.policy;
        let lookup = |list: &[(String, Vec<String>)]| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for (_, tos) in list.iter().filter(|(from, _)| from == model) {
                for t in tos {
                    if t != model && !out.contains(t) {
                        out.push(t.clone());
                    }
                }
            }
            out
        };
        let specific = match err {
            ProviderError::InvalidRequest { .. } => return Vec::new(),
            ProviderError::ContextLengthExceeded { .. } => lookup(&p.context_window_fallbacks),
            ProviderError::ContentPolicy { .. } => lookup(&p.content_policy_fallbacks),
            _ => Vec::new(),
        };
        if specific.is_empty() {
            lookup(&p.fallbacks)
        } else {
            specific
        }
    }

    /// Picks a deployment of `model`, excluding `exclude` when another
    /// healthy one exists. Errors: unknown model (404), every deployment
    /// cooling down (429 naming the model and when the first comes back),
    /// every deployment at its rpm/tpm limit (429).
    fn pick(
        &self,
        model: &str,
        exclude: &[usize],
        est_tokens: u64,
        streaming: bool,
    ) -> Result<(usize, Arc<Deployment>, bool), ProviderError> {
        let group = self.shared.group(model)?;
        let now = Instant::now();
        let mut healthy = Vec::with_capacity(group.len());
        for (i, d) in group.iter().enumerate() {
            let (cooling, ended) = d.cooling(now);
            if ended {
                self.shared
                    .metrics
                    .in_cooldown
                    .with_label_values(&[&d.model_name, &d.id])
                    .set(0);
                tracing::info!(model_name = %d.model_name, deployment = %d.id, "cooldown over");
            }
            if !cooling {
                healthy.push(i);
            }
        }
        if healthy.is_empty() {
            let back_in = group
                .iter()
                .filter_map(|d| d.cooldown_until())
                .min()
                .map_or(0.0, |t| t.saturating_duration_since(now).as_secs_f64());
            return Err(ProviderError::RateLimited {
                message: format!(
                    "no deployment of model `{model}` is available: all {} are cooling down \
                     after failures; the first is back in {back_in:.1}s",
                    group.len()
                ),
                retry_after: None,
            });
        }
        let others: Vec<usize> = healthy
            .iter()
            .copied()
            .filter(|i| !exclude.contains(i))
            .collect();
        let mut cands = if others.is_empty() { healthy } else { others };
        let min_order = cands
            .iter()
            .map(|i| group[*i].order())
            .min()
            .unwrap_or(u32::MAX);
        cands.retain(|i| group[*i].order() == min_order);
        let deps: Vec<Arc<Deployment>> = cands.iter().map(|i| Arc::clone(&group[*i])).collect();
        let ctx = PickContext {
            now,
            est_tokens,
            streaming,
            latency_buffer: self.shared.policy.lowest_latency_buffer,
        };
        match strategy::choose(self.shared.policy.strategy, &deps, ctx) {
            Choice::Pick(k) => {
                let has_alternative = group.len() > 1;
                let d = Arc::clone(&deps[k]);
                d.count_request(now);
                Ok((cands[k], d, has_alternative))
            }
            Choice::AllAtLimit => Err(ProviderError::RateLimited {
                message: format!(
                    "every deployment of model `{model}` is at its rpm/tpm limit for this minute"
                ),
                retry_after: None,
            }),
        }
    }

    /// When the first cooling deployment of `model` comes back, if any
    /// is cooling.
    fn first_back(&self, model: &str) -> Option<Instant> {
        self.shared
            .group(model)
            .ok()?
            .iter()
            .filter_map(|d| d.cooldown_until())
            .min()
    }

    /// Attempts within one model group: the first try plus its retries.
    async fn in_group<T: Routed>(
        &self,
        model: &str,
        deadline: Option<Instant>,
        est_tokens: u64,
        attempt: &AttemptFn<'_, T>,
    ) -> Result<T::Output, ProviderError> {
        let mut exclude: Vec<usize> = Vec::new();
        let mut retries_done: u32 = 0;
        let mut last_err: Option<ProviderError> = None;
        loop {
            let (index, d, has_alternative) =
                match self.pick(model, &exclude, est_tokens, T::STREAMING) {
                    Ok(picked) => picked,
                    Err(e) => {
                        // Every deployment is cooling down: while retries
                        // are left and the first one is back before the
                        // deadline, wait for it (a cooldown is a 429's
                        // Retry-After or a short pause, not an outage).
                        let back = self.first_back(model);
                        let retries_left = retries_done < self.shared.policy.num_retries;
                        if let Some(back) =
                            back.filter(|b| retries_left && deadline.is_none_or(|dl| *b < dl))
                        {
                            tracing::debug!(
                                model,
                                "every deployment cooling; waiting for the first"
                            );
                            tokio::time::sleep_until(back).await;
                            retries_done += 1;
                            continue;
                        }
                        // The client (and the fallback choice) gets the
                        // upstream's error, not the router's "cooling down".
                        return Err(last_err.unwrap_or(e));
                    }
                };
            let guard = d.start();
            let started = Instant::now();
            // A stream's attempt ends at its first chunk: this bounds the
            // time to it; the adapters bound each read after it.
            let per_attempt = if T::STREAMING {
                d.params.stream_timeout()
            } else {
                d.params.timeout()
            };
            let fut = attempt(Arc::clone(&d), model.to_owned());
            let result = tokio::time::timeout(per_attempt, fut)
                .await
                .unwrap_or(Err(ProviderError::Timeout));
            let err = match result {
                Ok(value) => {
                    let elapsed = started.elapsed();
                    d.record_latency(elapsed, T::STREAMING);
                    d.record_success(Instant::now());
                    self.shared
                        .metrics
                        .upstream_latency
                        .with_label_values(&[&d.model_name, &d.id])
                        .observe(elapsed.as_secs_f64());
                    return Ok(value.finish(Finish {
                        deployment: d,
                        guard,
                        deadline,
                        shared: Arc::clone(&self.shared),
                    }));
                }
                Err(e) => e,
            };
            drop(guard);
            self.shared.failed(&d, &err);
            if retries_done >= retry::retries_for(&err, &self.shared.policy) {
                return Err(err);
            }
            self.shared
                .metrics
                .retries
                .with_label_values(&[&d.model_name])
                .inc();
            exclude = vec![index];
            let other_healthy = has_alternative
                && self.shared.group(model).is_ok_and(|g| {
                    g.iter()
                        .enumerate()
                        .any(|(i, o)| i != index && !o.cooling(Instant::now()).0)
                });
            if !other_healthy {
                let wait = retry::backoff(retries_done, &err);
                tracing::debug!(model, wait_s = wait.as_secs_f64(), error = %err, "retrying");
                tokio::time::sleep(wait).await;
            }
            retries_done += 1;
            last_err = Some(err);
        }
    }
}

impl Router {
    /// The first deployment of `model` (or of the first model_name when
    /// the request names none), for calls that are not load-balanced.
    fn first_deployment(&self, model: Option<&str>) -> Result<Arc<Deployment>, ProviderError> {
        let name = model
            .filter(|m| !m.is_empty())
            .or_else(|| self.shared.names.first().map(String::as_str))
            .unwrap_or_default();
        self.shared
            .group(name)?
            .first()
            .cloned()
            .ok_or_else(|| ProviderError::ModelNotFound {
                model: name.to_owned(),
            })
    }
}

/// Checks at startup what can be checked of a wildcard entry: a fixed
/// `model` builds as any entry does; `openai/*` builds with a stand-in
/// name, so an unknown provider prefix or a missing parameter is found
/// before a request; `*` alone takes its provider from each requested
/// name, so only requests can tell.
fn probe_wildcard(
    pattern: &str,
    params: &crate::config::params::DeploymentParams,
    build: &wildcard::BuildFn,
) -> Result<(), ProviderError> {
    let Some(star) = params.model.find('*') else {
        return build(pattern, params).map(|_| ());
    };
    if !params.model[..star].contains('/') {
        return Ok(());
    }
    let mut probe = params.clone();
    probe.model = params.model.replace('*', "probe");
    build(pattern, &probe).map(|_| ())
}

/// Takes LiteLLM's per-request `timeout` (seconds) out of the request's
/// extra fields, so it is not forwarded upstream. A value no `Duration`
/// can hold (`1e20`) means no timeout of the client's own, never a panic.
fn take_timeout(extra: &mut Map<String, Value>) -> Option<Duration> {
    extra
        .remove("timeout")
        .and_then(|v| v.as_f64())
        .filter(|t| t.is_finite() && *t > 0.0)
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
}

/// A rough input-token estimate (4 bytes a token) for tpm limits before
/// the upstream has counted.
fn estimate_tokens<S: serde::Serialize>(value: &S) -> u64 {
    serde_json::to_vec(value).map_or(0, |b| b.len() as u64 / 4)
}

impl Router {
    /// A whole chat or text completion, through routing, retries and
    /// fallbacks.
    async fn answer<R>(&self, mut req: R) -> Result<R::Response, ProviderError>
    where
        R: Generation,
        R::Response: Routed<Output = R::Response>,
    {
        let timeout = take_timeout(req.extra_mut());
        let est = req.prompt_bytes() as u64 / 4;
        let model = req.model().to_owned();
        let attempt = move |d: Arc<Deployment>, name: String| -> BoxFuture<'static, _> {
            let mut r = req.clone();
            *r.model_mut() = name;
            Box::pin(async move { r.answer(d.provider.as_ref()).await })
        };
        self.call(&model, timeout, est, &attempt).await
    }

    /// A streamed chat or text completion, as [`Router::answer`]; an
    /// attempt succeeds once its first chunk arrived.
    async fn stream<R: Generation>(
        &self,
        mut req: R,
    ) -> Result<ChunkStream<R::Chunk>, ProviderError> {
        let timeout = take_timeout(req.extra_mut());
        let est = req.prompt_bytes() as u64 / 4;
        let model = req.model().to_owned();
        let attempt = move |d: Arc<Deployment>, name: String| -> BoxFuture<'static, _> {
            let mut r = req.clone();
            *r.model_mut() = name;
            Box::pin(async move { Peeked::first_of(r.stream(d.provider.as_ref()).await?).await })
        };
        self.call(&model, timeout, est, &attempt).await
    }
}

#[async_trait::async_trait]
impl Provider for Router {
    fn models(&self) -> Vec<ModelCard> {
        self.shared
            .names
            .iter()
            .map(|name| ModelCard::new(name.clone(), "gateway", None))
            .collect()
    }

    fn serves(&self, model: &str) -> bool {
        self.shared.serves(model)
    }

    async fn chat(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionResponse, ProviderError> {
        self.answer(req).await
    }

    async fn chat_stream(
        &self,
        req: ChatCompletionRequest,
    ) -> Result<ChunkStream<ChatCompletionChunk>, ProviderError> {
        self.stream(req).await
    }

    async fn completion(
        &self,
        req: CompletionRequest,
    ) -> Result<CompletionResponse, ProviderError> {
        self.answer(req).await
    }

    async fn completion_stream(
        &self,
        req: CompletionRequest,
    ) -> Result<ChunkStream<CompletionChunk>, ProviderError> {
        self.stream(req).await
    }

    async fn embeddings(
        &self,
        mut req: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ProviderError> {
        let timeout = take_timeout(&mut req.extra);
        let est = estimate_tokens(&req.input);
        let model = req.model.clone();
        let attempt = move |d: Arc<Deployment>, name: String| -> BoxFuture<'static, _> {
            let mut r = req.clone();
            r.model = name;
            Box::pin(async move { d.provider.embeddings(r).await })
        };
        self.call(&model, timeout, est, &attempt).await
    }

    /// vLLM's `/tokenize`: only tokenizer-owning deployments (the local
    /// engine) answer; no retries or balancing, it is a local lookup.
    async fn tokenize(&self, req: TokenizeRequest) -> Result<TokenizeResponse, ProviderError> {
        let d = self.first_deployment(req.model.as_deref())?;
        d.provider.tokenize(req).await
    }

    /// vLLM's `/detokenize`, as [`Router::tokenize`].
    async fn detokenize(
        &self,
        req: DetokenizeRequest,
    ) -> Result<DetokenizeResponse, ProviderError> {
        let d = self.first_deployment(req.model.as_deref())?;
        d.provider.detokenize(req).await
    }
}

#[cfg(test)]
mod tests;
