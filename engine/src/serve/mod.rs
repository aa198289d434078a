//! `engine serve`: the OpenAI-compatible server, over a local model or, with
//! `--config`, as the gateway over a LiteLLM `model_list`.
//!
//! This module holds the HTTP side every build has; `local` starts the
//! local engine (executor, scheduler, engine core, local provider). A
//! build without the `local` feature (the torch-free gateway) has
//! `gateway_only` in its place, which refuses local models and names the
//! build that has them.

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

#[cfg(not(feature = "local"))]
mod gateway_only;
#[cfg(feature = "local")]
mod local;

#[cfg(not(feature = "local"))]
use gateway_only as local;
#[cfg(feature = "local")]
pub use local::LocalArgs;
use local::LocalServing;

/// Resolves when the local engine fails (its workers died or hung), so the
/// server can drain and exit.
type FailureSignal = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Flags of `engine serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The local engine's flags (model, parallelism, scheduling, KV cache).
    #[cfg(feature = "local")]
    #[command(flatten)]
    pub local: LocalArgs,
    /// A LiteLLM `config.yaml`: serve every `model_name` of its
    /// `model_list` through the router (remote providers, and the local
    /// engine for `local/<model>` entries, which then loads `<model>`).
    /// Without a local entry no engine starts.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Refuse to start when a `model_list` entry cannot be served (its
    /// provider cannot be inferred, a required parameter is missing).
    /// Without it such an entry is logged once and its model answers 503
    /// while the others serve, as LiteLLM does.
    #[arg(long)]
    pub strict_config: bool,
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// No access-log line per request.
    #[arg(long)]
    pub disable_log_requests: bool,
}

/// How long a server whose engine failed keeps answering (503, `/health`
/// unhealthy) before it exits non-zero: long enough for in-flight clients
/// to get their error and for a load balancer's health check to see it.
const FAILED_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `engine serve` until Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<()> {
    if let Some(path) = &args.config {
        return run_gateway(args, path);
    }
    let registry = prometheus::Registry::new();
    let (local, example_model) = local::start_for_model(args, &registry)?;
    let result = serve_http(
        args,
        vec![local.provider()],
        registry,
        Some(&local),
        None,
        &example_model,
    );
    finish(Some(local), result)
}

/// `engine serve --config`: the router over the config's `model_list`;
/// a local engine runs only when an entry asks for one.
fn run_gateway(args: &ServeArgs, path: &std::path::Path) -> Result<()> {
    let config = frontend::config::GatewayConfig::load(path)
        .with_context(|| format!("loading {}", path.display()))?;
    let registry = prometheus::Registry::new();
    let local = local::start_for_config(args, &config, &registry)?;
    let client = frontend::providers::http::client()?;
    let bad_entries = if args.strict_config {
        frontend::router::BadEntries::Refuse
    } else {
        frontend::router::BadEntries::Isolate
    };
    let router = frontend::router::Router::from_config_with(
        &config,
        local.as_ref().map(LocalServing::provider),
        client,
        &registry,
        bad_entries,
    )
    .with_context(|| format!("building the router from {}", path.display()))?;
    eprintln!(
        "engine: gateway over {} model(s): {}",
        config.model_names().len(),
        config.model_names().join(", ")
    );
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let example_model = config.model_names().first().cloned().unwrap_or_default();
    let result = serve_http(
        args,
        vec![Arc::new(router)],
        registry,
        local.as_ref(),
        Some((&config, dir)),
        &example_model,
    );
    finish(local, result)
}

/// Stops the local engine, if one ran, and says how the server ended: a
/// dead worker ends the process with an error, for a supervisor (systemd,
/// Kubernetes) to restart it.
fn finish(local: Option<LocalServing>, served: Result<()>) -> Result<()> {
    if let Some(local) = &local {
        local.shutdown();
    }
    served?;
    match &local {
        Some(local) => local
            .health()
            .map_err(|e| anyhow::anyhow!("the engine failed: {e}")),
        None => Ok(()),
    }
}

/// Serves `providers` over HTTP on `--host`/`--port` until Ctrl-C, or,
/// when a local engine runs (`local`), until it fails (then after
/// [`FAILED_DRAIN`] of answering 503).
fn serve_http(
    args: &ServeArgs,
    providers: Vec<Arc<dyn frontend::Provider>>,
    registry: prometheus::Registry,
    local: Option<&LocalServing>,
    gateway: Option<(&frontend::config::GatewayConfig, std::path::PathBuf)>,
    example_model: &str,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let engine_failed = local.map(LocalServing::failure_signal);
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local_addr = listener.local_addr()?;
        let mut state = frontend::AppState::new(providers, registry.clone())?
            .with_access_log(!args.disable_log_requests);
        let control = match gateway {
            Some((config, dir)) => {
                let clock = frontend::control::system_clock();
                let plane =
                    frontend::control::ControlPlane::from_config(config, &dir, &registry, clock)
                        .await
                        .context("starting the gateway's control plane")?;
                state = state.with_control(Arc::clone(&plane));
                Some(plane)
            }
            None => None,
        };
        let needs_key = control.as_ref().is_some_and(|c| c.requires_keys());
        eprintln!("{}", ready_banner(local_addr, example_model, needs_key));
        let shutdown = async move {
            let failed = async {
                match engine_failed {
                    Some(failed) => failed.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                () = terminated() => {}
                () = failed => {
                    eprintln!(
                        "engine: the engine failed; answering 503 for {} s, then exiting",
                        FAILED_DRAIN.as_secs()
                    );
                    tokio::time::sleep(FAILED_DRAIN).await;
                }
            }
        };
        frontend::serve(listener, frontend::router(state), shutdown).await?;
        if let Some(plane) = control {
            // What the last batch interval queued goes to the store before
            // exit; only a kill -9 loses it.
            plane.flush_spend().await;
        }
        anyhow::Ok(())
    })
}

/// What `engine serve` prints once it answers: the URL and a request
/// that works as pasted (a short answer: `max_tokens` set). A server
/// bound to every interface is reached on `localhost`. With keys
/// required the request carries a placeholder, never a real key.
fn ready_banner(addr: std::net::SocketAddr, model: &str, needs_key: bool) -> String {
    let host = if addr.ip().is_unspecified() {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    let body = serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of Japan?"}],
        "max_tokens": 64,
    });
    let auth = if needs_key {
        " -H 'authorization: Bearer <your key>'"
    } else {
        ""
    };
    format!(
        "engine: serving on http://{host} (OpenAI API under /v1; metrics at /metrics)\n\
         engine: try: curl http://{host}/v1/chat/completions -H 'content-type: application/json'{auth} -d '{body}'"
    )
}

/// Resolves on SIGTERM (what service managers and `kill` send), so a
/// stop drains like Ctrl-C; never on other platforms.
async fn terminated() {
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            term.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_ready_banner_prints_a_request_that_works_as_pasted() {
        let banner = ready_banner("0.0.0.0:8000".parse().unwrap(), "smollm2", false);
        assert!(
            banner.contains("serving on http://localhost:8000"),
            "{banner}"
        );
        let body = banner.split(" -d '").nth(1).unwrap().trim_end_matches('\'');
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["model"], "smollm2");
        assert_eq!(body["max_tokens"], 64);
        assert!(!banner.contains("authorization"));
        let keyed = ready_banner("127.0.0.1:9000".parse().unwrap(), "gpt", true);
        assert!(
            keyed.contains("http://127.0.0.1:9000/v1/chat/completions"),
            "{keyed}"
        );
        assert!(keyed.contains("Bearer <your key>"), "{keyed}");
    }
}
