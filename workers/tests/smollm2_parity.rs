//! The real SmolLM2-135M-Instruct GGUF against transformers loading the same
//! file: for 5 chat prompts (token ids from transformers' own template and
//! tokenizer), the last-position logits agree within 1e-3 absolute (f32, both
//! dequantize Q4_1/Q8_0 to f32; the largest difference measured is 4.4e-5 on
//! logits of magnitude ~20) and the first 32 greedy tokens are identical.
//!
//! On a GPU in half precision (`ENGINE_TEST_DEVICE`, `ENGINE_TEST_DTYPE`,
//! see `common::Target`) the logits tolerance is a fraction of their scale,
//! and greedy tokens must agree until the first step where our top two are
//! a near tie (within that tolerance) and transformers picked the other one:
//! rounding may flip a tie, nothing else may change a token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use common::{smollm2_matches_transformers, Target};
use workers::parallel::TpGroup;

#[test]
fn smollm2_gguf_matches_transformers() {
    let summary = smollm2_matches_transformers(&TpGroup::single(), Target::from_env());
    eprintln!("smollm2 parity: {summary}");
}
