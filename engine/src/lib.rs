//! The engine process: CLI, tokenization, chat templates, detokenization,
//! stop handling, and (issue 4) the engine core loop and the executor that
//! drives the workers.
//!
//! It must not parse HTTP: the `frontend` crate owns the API and reaches the
//! local model through its `Provider` trait.

pub mod bench;
pub mod chat_template;
pub mod core;
pub mod detokenizer;
pub mod executor;
pub mod fuzz_harness;
pub mod generate;
pub mod generate_tp;
pub mod generation_config;
pub mod local;
pub mod model_args;
pub mod serve;
pub mod tokenizer;
