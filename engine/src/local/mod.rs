//! The local model as a `frontend::Provider`: chat templates and
//! tokenization in, the engine core in the middle, detokenized text with
//! stop strings out.
//!
//! `generation` is API-agnostic (token ids to text deltas for `n`
//! choices); `requests` maps OpenAI parameters onto it; `provider` is the
//! trait implementation that shapes responses and chunks.

mod generation;
mod logprob_holdback;
mod provider;
mod requests;
mod tools;

use std::sync::Arc;

use crate::chat_template::ChatTemplate;
use crate::core::EngineCoreHandle;
use crate::generation_config::SamplingDefaults;
use crate::reasoning::ReasoningParser;
use crate::structured::{ReasoningMarkers, StructuredOutputs};
use crate::tokenizer::Tokenizer;

pub use generation::{generate, ChoiceDelta, GenerationParams, TokenLogprob};
pub use tools::ToolSettings;

/// A model served by this process.
pub struct LocalEngine {
    /// Names clients may use (`--served-model-name`), first is canonical.
    names: Vec<String>,
    tokenizer: Arc<Tokenizer>,
    /// Shared with the blocking tasks that render it.
    template: Option<Arc<ChatTemplate>>,
    core: EngineCoreHandle,
    max_model_len: usize,
    /// Whether the scheduler orders by request `priority` (else a nonzero
    /// one is refused, as vLLM does).
    priority_scheduling: bool,
    /// Sampling defaults for fields a request leaves out
    /// (`--generation-config`).
    defaults: SamplingDefaults,
    /// Grammars for structured outputs, or why this model has none.
    structured: Result<Arc<StructuredOutputs>, String>,
    tools: ToolSettings,
    /// `--reasoning-parser`: splits thinking into `reasoning_content`.
    reasoning: Option<ReasoningParser>,
    /// Its markers as tokens, when they are single tokens: grammars bind
    /// after the reasoning.
    reasoning_markers: Option<ReasoningMarkers>,
}

impl LocalEngine {
    /// Wraps a running engine core.
    pub fn new(
        names: Vec<String>,
        tokenizer: Arc<Tokenizer>,
        template: Option<ChatTemplate>,
        core: EngineCoreHandle,
        max_model_len: usize,
        priority_scheduling: bool,
    ) -> Self {
        let structured = StructuredOutputs::new(tokenizer.clone(), core.limits().vocab_size)
            .map(Arc::new)
            .map_err(|e| {
                tracing::warn!("structured outputs are off for this model: {e}");
                e.to_string()
            });
        Self {
            names,
            tokenizer,
            template: template.map(Arc::new),
            core,
            max_model_len,
            priority_scheduling,
            defaults: SamplingDefaults::default(),
            structured,
            tools: ToolSettings::default(),
            reasoning: None,
            reasoning_markers: None,
        }
    }

    /// Uses `defaults` for the sampling fields requests leave out.
    pub fn with_sampling_defaults(mut self, defaults: SamplingDefaults) -> Self {
        self.defaults = defaults;
        self
    }

    /// Splits a thinking model's reasoning off with `parser`.
    pub fn with_reasoning_parser(mut self, parser: Option<ReasoningParser>) -> Self {
        self.reasoning = parser;
        self.reasoning_markers = parser.and_then(|p| {
            ReasoningMarkers::of(p, &self.tokenizer)
                .map_err(|why| {
                    tracing::warn!(
                        "structured outputs bind from the first token, reasoning included: {why}"
                    )
                })
                .ok()
        });
        self
    }

    /// Serves tool calls as `settings` say (`--tool-call-parser`, ...).
    pub fn with_tool_settings(mut self, settings: ToolSettings) -> Self {
        self.tools = settings;
        self
    }
}
