//! The axum HTTP application (issues 4-6): OpenAI- and Anthropic-format
//! APIs, provider adapters, the router, keys/teams/budgets/spend store, rate
//! limits, cache, guardrails and metrics.
//!
//! It must not depend on `engine`: the local engine plugs in through the
//! `Provider` trait that this crate will define.
