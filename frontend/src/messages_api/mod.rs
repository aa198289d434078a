//! Anthropic's Messages format, for both directions of the gateway:
//!
//! - [`types`]: the wire types, defined once and shared with the Anthropic
//!   adapter ([`crate::providers::anthropic`]);
//! - [`request`]: ingress validation and Anthropic request → OpenAI chat
//!   request (so `POST /v1/messages` can reach any provider);
//! - [`response`]: OpenAI response → Anthropic message;
//! - [`events`]: OpenAI chunk stream → Anthropic stream events;
//! - [`error`]: Anthropic's error shape and the status ↔ error-type map.
//!
//! LiteLLM's `/v1/messages` does the same translation through its OpenAI
//! shape; like it, features with no OpenAI counterpart (thinking blocks,
//! prompt-cache control) are dropped on the way in.

pub mod error;
pub mod events;
pub mod request;
pub mod response;
pub mod types;
