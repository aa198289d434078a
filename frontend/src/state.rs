//! The state every handler shares ([`AppState`]), in its own module so the
//! routes that read it and [`crate::app`], which builds the router from
//! them, do not import each other.

use crate::control::ControlPlane;
use crate::error::ProviderError;
use crate::metrics::HttpMetrics;
use crate::provider::Provider;
use prometheus::Registry;
use std::sync::Arc;

/// Default request body limit: long prompts (128k tokens of text are about
/// 0.5 MiB) with room for inline images.
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    providers: Arc<[Arc<dyn Provider>]>,
    registry: Registry,
    pub(crate) http_metrics: HttpMetrics,
    pub(crate) body_limit: usize,
    control: Option<Arc<ControlPlane>>,
    pub(crate) access_log: bool,
}

impl AppState {
    /// State over `providers` (earlier ones win when two serve the same
    /// model name; the first one serves requests that name no model) and
    /// `registry`, which the caller shares with the engine so `/metrics`
    /// shows both. Fails if the HTTP metrics are already in `registry`.
    pub fn new(
        providers: Vec<Arc<dyn Provider>>,
        registry: Registry,
    ) -> Result<Self, prometheus::Error> {
        let http_metrics = HttpMetrics::register(&registry)?;
        Ok(Self {
            providers: providers.into(),
            registry,
            http_metrics,
            body_limit: DEFAULT_BODY_LIMIT,
            control: None,
            access_log: true,
        })
    }

    /// Puts the routes behind `control`: keys, budgets, limits, spend,
    /// cache, guardrails and the admin API. Without it the gateway serves
    /// everyone (`engine serve --model`).
    pub fn with_control(mut self, control: Arc<ControlPlane>) -> Self {
        self.control = Some(control);
        self
    }

    /// The control plane, when configured.
    pub fn control(&self) -> Option<&Arc<ControlPlane>> {
        self.control.as_ref()
    }

    /// Turns the per-request access log line ([`crate::access_log`]) on or
    /// off (`--disable-log-requests`); on by default.
    pub fn with_access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }

    /// Sets the largest accepted request body (413 above it).
    pub fn with_body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The providers, in routing order.
    pub fn providers(&self) -> &[Arc<dyn Provider>] {
        &self.providers
    }

    /// The shared Prometheus registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The provider serving `model`; an empty `model` means the first
    /// provider's first model and is filled in, so providers always see a
    /// name they serve.
    pub fn route_model(&self, model: &mut String) -> Result<Arc<dyn Provider>, ProviderError> {
        if model.is_empty() {
            let first = self
                .providers
                .iter()
                .find_map(|p| p.models().into_iter().next().map(|card| (p, card.id)));
            return match first {
                Some((provider, id)) => {
                    *model = id;
                    Ok(Arc::clone(provider))
                }
                None => Err(ProviderError::Unavailable {
                    message: "no models are being served".to_owned(),
                }),
            };
        }
        self.providers
            .iter()
            .find(|p| p.serves(model))
            .cloned()
            .ok_or_else(|| ProviderError::ModelNotFound {
                model: model.clone(),
            })
    }
}
