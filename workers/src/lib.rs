//! Worker-side model execution.
