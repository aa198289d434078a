//! The single contract between the engine and its GPU workers (issue 4).
//!
//! Will hold the `.proto` files and the tonic/prost code generated from them:
//! the worker service (init, load model, profile memory, init KV cache,
//! execute one step, health, shutdown) and the wire form of
//! `SchedulerOutput` / `ModelRunnerOutput`. It must not contain logic.
