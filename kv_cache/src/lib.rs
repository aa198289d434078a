//! Paged KV cache bookkeeping: block pool, free-block LRU queue, prefix-hash
//! index, reference counts and per-request block tables (issue 3).
//!
//! Pure Rust: it must not know about torch, async or gRPC.
