//! The axum HTTP application: OpenAI- and Anthropic-format
//! APIs, provider adapters, the router, keys/teams/budgets/spend store, rate
//! limits, cache, guardrails and metrics.
//!
//! It must not depend on `engine`: the local engine plugs in through the
//! [`Provider`] trait defined here.
//!
//! It serves vLLM's OpenAI-compatible surface (`/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/tokenize`,
//! `/detokenize`, `/health`, `/metrics`), Anthropic's `/v1/messages`, and
//! LiteLLM's admin API and UI. The pieces:
//! - [`openai`], [`messages_api`] (Anthropic's Messages API): serde wire types with `validate()`;
//! - [`Provider`]: what a backend implements (dropping = cancelling);
//!   [`providers`]: one adapter per remote wire format; [`mod@router`]: a
//!   `Provider` over deployments (retries, fallbacks, cooldowns);
//!   [`config`]: LiteLLM's `config.yaml`;
//! - [`ProviderError`] / [`GatewayError`]: every failure, mapped once to a
//!   status and an OpenAI error body;
//! - [`control`]: keys, model access, budgets, spend, limits, cache and
//!   guardrails as the routes use them, over [`store`] (SQLite or
//!   PostgreSQL), [`ratelimit`] and [`cache`] (memory or Redis);
//! - [`pricing`]: per-token prices and context windows (LiteLLM's price
//!   file format and name resolution) with per-deployment overrides;
//! - [`guardrails`]: pre-call PII masking, banned keywords and webhook
//!   guardrails from LiteLLM's `guardrails:` list;
//! - [`routes`]: one file per API family; [`metrics`]: HTTP metrics in the
//!   Prometheus registry the caller shares with the engine;
//! - [`request_id`]: the id every answer and log line of a request carries
//!   (5xx bodies show it instead of internals); [`fetch`]: server-side
//!   fetching of client-named URLs, off by default, SSRF-safe when on;
//! - [`AppState`], [`router()`], [`serve`]: wiring, with `TCP_NODELAY` on
//!   every accepted socket (DESIGN.md's 44 ms Nagle stall).

pub mod access_log;
pub mod app;
pub mod cache;
pub mod config;
pub mod control;
pub mod error;
pub mod extract;
pub mod fetch;
pub mod fuzz_harness;
pub mod gateway_error;
pub mod guardrails;
pub mod messages_api;
pub mod metrics;
pub mod openai;
pub mod pricing;
pub mod provider;
pub mod providers;
pub mod ratelimit;
pub mod request_id;
pub mod route_paths;
pub mod router;
pub mod routes;
mod sse;
pub mod state;
pub mod store;

pub use app::{router, serve};
pub use error::{ErrorBody, ErrorDetail, ProviderError};
pub use extract::OpenAiJson;
pub use gateway_error::GatewayError;
pub use metrics::HttpMetrics;
pub use provider::{ChunkStream, Provider};
pub use state::{AppState, DEFAULT_BODY_LIMIT};
