//! The torch-free gateway build (`--no-default-features`): it serves
//! remote providers and the control plane, and has no local engine. A
//! local model is refused with a message naming the build that has one.

use std::sync::Arc;

use anyhow::{bail, Result};

use super::{FailureSignal, ServeArgs};

/// What this build tells a user who asks for a local model.
const NO_LOCAL_ENGINE: &str = "this engine is the gateway-only build (built without the `local` \
     feature, so without libtorch): it serves remote providers through `engine serve --config \
     <config.yaml>`; local models need the default build (`cargo build --release -p engine`)";

/// Refuses: there is no local engine in this build.
pub(super) fn start_for_model(
    _args: &ServeArgs,
    _registry: &prometheus::Registry,
) -> Result<(LocalServing, String)> {
    bail!("{NO_LOCAL_ENGINE}")
}

/// Refuses a config with a `local/...` entry; starts nothing otherwise.
pub(super) fn start_for_config(
    _args: &ServeArgs,
    config: &frontend::config::GatewayConfig,
    _registry: &prometheus::Registry,
) -> Result<Option<LocalServing>> {
    match config
        .model_list
        .iter()
        .find(|entry| frontend::config::is_local_model(&entry.litellm_params.model))
    {
        Some(entry) => bail!(
            "model_list entry `{}` serves `{}` on the local engine, but {NO_LOCAL_ENGINE}",
            entry.model_name,
            entry.litellm_params.model
        ),
        None => Ok(None),
    }
}

/// A local engine, which this build never has: the type has no values, so
/// every path that would hold one is statically unreachable and the
/// server code is shared with the full build unchanged.
pub(super) enum LocalServing {}

impl LocalServing {
    pub(super) fn provider(&self) -> Arc<dyn frontend::Provider> {
        match *self {}
    }

    pub(super) fn failure_signal(&self) -> FailureSignal {
        match *self {}
    }

    pub(super) fn shutdown(&self) {
        match *self {}
    }

    pub(super) fn health(&self) -> Result<(), std::convert::Infallible> {
        match *self {}
    }
}
