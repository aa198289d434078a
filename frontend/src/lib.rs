//! The axum HTTP application (issues 4-6): OpenAI- and Anthropic-format
//! APIs, provider adapters, the router, keys/teams/budgets/spend store, rate
//! limits, cache, guardrails and metrics.
//!
//! It must not depend on `engine`: the local engine plugs in through the
//! [`Provider`] trait defined here.
//!
//! Today it serves vLLM's OpenAI-compatible surface:
//! `POST /v1/chat/completions` and `/v1/completions` (streaming or not),
//! `GET /v1/models`, `/health`, `/metrics`, `POST /tokenize` and
//! `/detokenize`. The pieces:
//! - [`openai`]: serde wire types with `validate()`;
//! - [`Provider`]: what a backend implements (dropping = cancelling);
//! - [`ProviderError`] / [`GatewayError`]: every failure, mapped once to a
//!   status and an OpenAI error body;
//! - [`pricing`]: per-token prices and context windows (LiteLLM's price
//!   file format and name resolution) with per-deployment overrides;
//! - [`guardrails`]: pre-call PII masking, banned keywords and webhook
//!   guardrails from LiteLLM's `guardrails:` list;
//! - [`routes`]: one file per API family; [`metrics`]: HTTP metrics in the
//!   Prometheus registry the caller shares with the engine;
//! - [`AppState`], [`router`], [`serve`]: wiring, with `TCP_NODELAY` on
//!   every accepted socket (DESIGN.md's 44 ms Nagle stall).

pub mod anthropic;
pub mod app;
pub mod cache;
pub mod config;
pub mod control;
pub mod error;
pub mod extract;
pub mod guardrails;
pub mod metrics;
pub mod openai;
pub mod pricing;
pub mod provider;
pub mod providers;
pub mod ratelimit;
pub mod router;
pub mod routes;
mod sse;
pub mod store;

pub use app::{router, serve, AppState, DEFAULT_BODY_LIMIT};
pub use error::{ErrorBody, ErrorDetail, GatewayError, ProviderError};
pub use extract::OpenAiJson;
pub use metrics::HttpMetrics;
pub use provider::{ChunkStream, Provider};
