//! The engine process: CLI, tokenization, chat templates, detokenization,
//! stop handling, and the engine core loop and the executor that drive the
//! workers. The last two, and everything that needs libtorch, sit behind
//! the default `local` feature: without it the binary is the gateway alone.
//!
//! It must not parse HTTP: the `frontend` crate owns the API and reaches the
//! local model through its `Provider` trait.

pub mod bench;
pub mod chat_template;
#[cfg(feature = "local")]
pub mod core;
pub mod detokenizer;
#[cfg(feature = "local")]
pub mod executor;
pub mod fuzz_harness;
#[cfg(feature = "local")]
pub mod generate;
pub mod generation_config;
#[cfg(feature = "local")]
pub mod local;
#[cfg(feature = "local")]
pub mod model_args;
#[cfg(feature = "local")]
pub mod reasoning;
pub mod serve;
#[cfg(feature = "local")]
pub mod structured;
pub mod tokenizer;
#[cfg(feature = "local")]
pub mod tool_calls;
