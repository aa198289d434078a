//! Structured outputs: a request's JSON schema, regex, choice or Lark
//! grammar turned into the set of tokens it may sample next, step by step
//! (llguidance, the library behind vLLM's `guidance` backend).
//!
//! The engine core holds one [`Constraint`] per constrained sequence. Each
//! step, the executor asks each scheduled one for its
//! [`Constraint::allowed_tokens`] bitmask (on a second thread while the
//! workers run the forward pass on an accelerator; first on CPU); the
//! bitmasks follow the step to the sampling rank
//! (`StepRequest.bitmasks_follow`, then `SubmitBitmasks`) and mask its
//! logits; after the step the core feeds the sampled tokens back with
//! [`Constraint::accept`].
//! Unconstrained requests pay nothing, and steps without constrained
//! requests send nothing more. With a `--reasoning-parser` whose markers
//! are single tokens, a sequence's grammar binds only after its reasoning
//! ([`ReasoningMarkers`]), as vLLM guides a reasoning model's content.

mod spec;
mod vocabulary;

use std::sync::Arc;

use frontend::ProviderError;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};

use self::vocabulary::{token_bytes, Vocabulary};
use crate::reasoning::ReasoningParser;
use crate::tokenizer::Tokenizer;

pub use spec::{from_request, GrammarSpec, JsonWhitespace, SpecSource, MAX_JSON_WHITESPACE};

/// Why structured outputs cannot be offered for a model.
#[derive(Debug, thiserror::Error)]
pub enum StructuredOutputsError {
    #[error("the tokenizer's vocabulary could not be read as bytes: {0}")]
    Vocabulary(String),
    #[error("the grammar engine could not start: {0}")]
    Factory(String),
}

/// Compiles request grammars for one model. Built once at startup.
pub struct StructuredOutputs {
    factory: ParserFactory,
    vocab_size: usize,
    eos: Vec<u32>,
}

impl StructuredOutputs {
    /// Reads `tokenizer`'s vocabulary into llguidance's token trie. The
    /// grammar ends on the tokenizer's end-of-sequence tokens, which the
    /// scheduler stops on.
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        vocab_size: usize,
    ) -> Result<Self, StructuredOutputsError> {
        let bytes =
            token_bytes(&tokenizer, vocab_size).map_err(StructuredOutputsError::Vocabulary)?;
        let eos = tokenizer.eos_token_ids().to_vec();
        let first_eos = *eos.first().ok_or_else(|| {
            StructuredOutputsError::Vocabulary("the tokenizer has no end-of-sequence token".into())
        })?;
        let info = TokRxInfo::new(vocab_size as u32, first_eos);
        let trie = TokTrie::from(&info, &bytes).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(Vocabulary { trie, tokenizer });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| StructuredOutputsError::Factory(e.to_string()))?;
        // Grammar warnings and errors come back to the client, not stderr.
        factory.quiet();
        Ok(Self {
            factory,
            vocab_size,
            eos,
        })
    }

    /// Compiles `source` for one sequence; a grammar llguidance refuses is
    /// a 400 naming the field and llguidance's reason.
    pub fn compile(&self, source: &SpecSource) -> Result<Constraint, ProviderError> {
        let json = |schema: serde_json::Value| {
            TopLevelGrammar::from_json_schema(with_whitespace(schema, &source.whitespace))
        };
        let grammar = match &source.spec {
            GrammarSpec::JsonSchema(schema) => json(schema.clone()),
            GrammarSpec::JsonObject => json(serde_json::json!({"type": "object"})),
            GrammarSpec::Regex(rx) => TopLevelGrammar::from_regex(rx),
            GrammarSpec::Choice(choices) => {
                let alternatives: Vec<String> =
                    choices.iter().map(|c| regex_syntax::escape(c)).collect();
                TopLevelGrammar::from_regex(&alternatives.join("|"))
            }
            GrammarSpec::Lark(lark) => TopLevelGrammar::from_lark(lark.clone()),
        };
        let parser = self.factory.create_parser(grammar).map_err(|e| {
            ProviderError::invalid(&source.param, format!("invalid structured output: {e}"))
        })?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ProviderError::invalid(
                &source.param,
                format!("invalid structured output: {e}"),
            ));
        }
        let mut constraint = Constraint {
            matcher,
            vocab_size: self.vocab_size,
            eos: self.eos.clone(),
            reasoning: None,
            phase: Phase::Output,
        };
        // Some grammars compile yet allow no first token (`{"$ref": "#"}`):
        // the client's error, found here rather than as a failed step.
        constraint.allowed_tokens().map_err(|e| {
            ProviderError::invalid(&source.param, format!("invalid structured output: {e}"))
        })?;
        Ok(constraint)
    }
}

/// `schema` with llguidance's whitespace options (`x-guidance`) for
/// `rule`, unless the schema sets its own.
fn with_whitespace(mut schema: serde_json::Value, rule: &JsonWhitespace) -> serde_json::Value {
    let options = match rule {
        JsonWhitespace::Bounded => serde_json::json!({
            "whitespace_pattern": format!(r"[\x20\x0A\x0D\x09]{{1,{MAX_JSON_WHITESPACE}}}"),
        }),
        JsonWhitespace::None => serde_json::json!({"whitespace_flexible": false}),
        JsonWhitespace::Pattern(p) => serde_json::json!({"whitespace_pattern": p}),
    };
    if let Some(object) = schema.as_object_mut() {
        object.entry("x-guidance").or_insert(options);
    }
    schema
}

/// A thinking model's reasoning markers as tokens, for a
/// `--reasoning-parser`: the grammar binds what follows the reasoning, as
/// vLLM guides only the content of a reasoning model's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasoningMarkers {
    /// `<think>`.
    pub open: u32,
    /// `</think>`.
    pub close: u32,
    /// The output starts in reasoning (DeepSeek-R1, whose template opens
    /// `<think>` in the prompt); otherwise it reasons only if its first
    /// token is `open` (Qwen3, whose thinking can be off).
    pub starts_reasoning: bool,
}

impl ReasoningMarkers {
    /// The markers of `parser` in `tokenizer`'s vocabulary. They must be
    /// single tokens (they are, as added tokens, in the models these
    /// parsers are for): a marker spelled in several tokens cannot be
    /// told apart reliably, and the grammar then binds from the first
    /// token, as without a parser.
    pub fn of(parser: ReasoningParser, tokenizer: &Tokenizer) -> Result<Self, String> {
        let (open, close) = parser.markers();
        let id = |marker: &str| {
            tokenizer
                .token_to_id(marker)
                .ok_or_else(|| format!("`{marker}` is not one token of this vocabulary"))
        };
        Ok(Self {
            open: id(open)?,
            close: id(close)?,
            starts_reasoning: parser == ReasoningParser::DeepseekR1,
        })
    }
}

/// Where a sequence is relative to its reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Its first token decides whether it reasons (`open`) or not.
    MayReason,
    /// Inside the reasoning: free until `close`.
    Reasoning,
    /// The grammar binds.
    Output,
}

/// One sequence's grammar state.
pub struct Constraint {
    matcher: Matcher,
    vocab_size: usize,
    /// The end-of-sequence tokens, for [`Constraint::end_of_sequence_only`].
    eos: Vec<u32>,
    reasoning: Option<ReasoningMarkers>,
    phase: Phase,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish_non_exhaustive()
    }
}

impl Clone for Constraint {
    /// An independent copy (each of `n` choices walks its own grammar).
    fn clone(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
            vocab_size: self.vocab_size,
            eos: self.eos.clone(),
            reasoning: self.reasoning,
            phase: self.phase,
        }
    }
}

impl Constraint {
    /// Lets the sequence reason first: the grammar binds once its
    /// reasoning is over.
    pub fn after_reasoning(mut self, markers: Option<ReasoningMarkers>) -> Self {
        self.reasoning = markers;
        self.phase = match markers {
            None => Phase::Output,
            Some(m) if m.starts_reasoning => Phase::Reasoning,
            Some(_) => Phase::MayReason,
        };
        self
    }

    /// The tokens the sequence may sample next: bit `t % 32` of word
    /// `t / 32` is set when token `t` is allowed; `None` while it reasons
    /// (every token is). Once the grammar is complete only the
    /// end-of-sequence tokens are. Computed afresh on each call: a step
    /// asks once per state.
    pub fn allowed_tokens(&mut self) -> Result<Option<Vec<u32>>, String> {
        if self.phase == Phase::Reasoning {
            return Ok(None);
        }
        let vob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        let mut words = vob.as_slice().to_vec();
        words.resize(self.vocab_size.div_ceil(32), 0);
        if words.iter().all(|&w| w == 0) {
            return Err("the grammar allows no token here".into());
        }
        if let (Phase::MayReason, Some(m)) = (self.phase, self.reasoning) {
            if let Some(w) = words.get_mut(m.open as usize / 32) {
                *w |= 1 << (m.open % 32);
            }
        }
        Ok(Some(words))
    }

    /// A bitmask allowing only the end-of-sequence tokens: what a sequence
    /// whose grammar failed samples in the step already scheduled for it.
    pub fn end_of_sequence_only(&self) -> Vec<u32> {
        let mut words = vec![0u32; self.vocab_size.div_ceil(32)];
        for &t in &self.eos {
            if let Some(w) = words.get_mut(t as usize / 32) {
                *w |= 1 << (t % 32);
            }
        }
        words
    }

    /// Advances the grammar over tokens the sequence sampled (those after
    /// its reasoning).
    pub fn accept(&mut self, mut tokens: &[u32]) -> Result<(), String> {
        if let (Some(m), Some((&first, rest))) = (self.reasoning, tokens.split_first()) {
            if self.phase == Phase::MayReason {
                self.phase = if first == m.open {
                    tokens = rest;
                    Phase::Reasoning
                } else {
                    Phase::Output
                };
            }
            if self.phase == Phase::Reasoning {
                match tokens.iter().position(|&t| t == m.close) {
                    Some(end) => {
                        self.phase = Phase::Output;
                        tokens = &tokens[end + 1..];
                    }
                    None => return Ok(()),
                }
            }
        }
        if tokens.is_empty() {
            return Ok(());
        }
        if self.matcher.is_stopped() {
            // Only an end-of-sequence token was allowed; a sequence that
            // ignores EOS goes on without the grammar's say.
            return Ok(());
        }
        self.matcher
            .consume_tokens(tokens)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
