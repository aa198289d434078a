//! Continuous-batching scheduler: the request state machine,
//! `schedule() -> SchedulerOutput`, `update_from_output()`, token budget,
//! chunked prefill, preemption and priorities (issue 3).
//!
//! Pure Rust: it must not know about torch, tokenizers or HTTP.
