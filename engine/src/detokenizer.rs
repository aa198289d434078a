//! Incremental detokenization and stop strings, per request.
//!
//! Byte-level BPE tokens do not map one to one onto characters: a token can
//! end in the middle of a UTF-8 sequence, and a token's text can depend on
//! its neighbours (spaces, cleanup). As TGI and vLLM do, we decode a small
//! window of ids twice (before and after the new token) and emit the
//! difference once it no longer ends in a replacement character.
//!
//! Stop strings are matched on the decoded text; while streaming, text that
//! could still become the start of a stop string is held back, so a client
//! never sees part of a stop string.

use std::sync::Arc;

use crate::tokenizer::{Tokenizer, TokenizerError};

/// Turns a stream of token ids into a stream of text deltas.
pub struct IncrementalDetokenizer {
    tokenizer: Arc<Tokenizer>,
    skip_special_tokens: bool,
    ids: Vec<u32>,
    /// Start of the window decoded as context.
    prefix_offset: usize,
    /// End of the text already emitted, in `ids`.
    read_offset: usize,
}

impl IncrementalDetokenizer {
    /// `context` are ids before the output (the prompt's tail), so the
    /// first output token is decoded with its left neighbour as it would be
    /// in the full text.
    pub fn new(tokenizer: Arc<Tokenizer>, context: &[u32], skip_special_tokens: bool) -> Self {
        let tail = &context[context.len().saturating_sub(4)..];
        Self {
            tokenizer,
            skip_special_tokens,
            ids: tail.to_vec(),
            prefix_offset: 0,
            read_offset: tail.len(),
        }
    }

    /// Adds one token and returns the text it completes (possibly empty).
    pub fn push(&mut self, token: u32) -> Result<String, TokenizerError> {
        self.ids.push(token);
        let prefix = self.tokenizer.decode(
            &self.ids[self.prefix_offset..self.read_offset],
            self.skip_special_tokens,
        )?;
        let full = self
            .tokenizer
            .decode(&self.ids[self.prefix_offset..], self.skip_special_tokens)?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let delta = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(delta)
        } else if !full.starts_with(&prefix) && !full.ends_with('\u{FFFD}') {
            // Cleanup rewrote the window's tail (e.g. " ." -> "."): emit what
            // follows the common part and move on.
            let common = common_prefix_len(&prefix, &full);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.ids.len();
            Ok(full[common..].to_string())
        } else {
            Ok(String::new())
        }
    }
}

fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8())
}

/// What [`StopChecker::push`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopUpdate {
    /// Text that may be sent to the client now.
    pub emit: String,
    /// True when a stop string was found: the request ends here.
    pub stopped: bool,
}

/// Applies stop strings to the output text as it grows.
pub struct StopChecker {
    stops: Vec<String>,
    include_stop_str_in_output: bool,
    /// Longest stop string, in bytes.
    max_len: usize,
    /// Output text so far (what was emitted plus what is held back).
    text: String,
    emitted: usize,
}

impl StopChecker {
    /// `stops` are matched anywhere in the output; empty strings are ignored.
    pub fn new(stops: Vec<String>, include_stop_str_in_output: bool) -> Self {
        let stops: Vec<String> = stops.into_iter().filter(|s| !s.is_empty()).collect();
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        Self {
            stops,
            include_stop_str_in_output,
            max_len,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds a delta. Returns what can be emitted, and whether a stop string
    /// ended the output.
    pub fn push(&mut self, delta: &str) -> StopUpdate {
        let search_from =
            floor_char_boundary(&self.text, self.text.len().saturating_sub(self.max_len));
        self.text.push_str(delta);
        if let Some((pos, stop)) = self.find_stop(search_from) {
            let end = if self.include_stop_str_in_output {
                pos + stop
            } else {
                pos
            };
            self.text.truncate(end);
            let emit = self
                .text
                .get(self.emitted..)
                .unwrap_or_default()
                .to_string();
            self.emitted = self.text.len();
            return StopUpdate {
                emit,
                stopped: true,
            };
        }
        // Hold back a tail that could still grow into a stop string.
        let hold = self.held_back_len();
        let safe = floor_char_boundary(&self.text, self.text.len() - hold);
        let emit = if safe > self.emitted {
            let e = self.text[self.emitted..safe].to_string();
            self.emitted = safe;
            e
        } else {
            String::new()
        };
        StopUpdate {
            emit,
            stopped: false,
        }
    }

    /// Text held back at the end of the request (no stop string came).
    pub fn flush(&mut self) -> String {
        let rest = self
            .text
            .get(self.emitted..)
            .unwrap_or_default()
            .to_string();
        self.emitted = self.text.len();
        rest
    }

    /// The whole output text so far (after stop-string truncation).
    pub fn text(&self) -> &str {
        &self.text
    }

    fn find_stop(&self, from: usize) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .filter_map(|s| {
                self.text[from..]
                    .find(s.as_str())
                    .map(|p| (from + p, s.len()))
            })
            .min_by_key(|(p, _)| *p)
    }

    /// Length of the longest suffix of the text that is a proper prefix of
    /// a stop string.
    fn held_back_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            for len in (1..stop.len()).rev() {
                if len <= best {
                    break;
                }
                if stop.is_char_boundary(len) && self.text.ends_with(&stop[..len]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], include: bool, deltas: &[&str]) -> (String, bool) {
        let mut c = StopChecker::new(stops.iter().map(|s| s.to_string()).collect(), include);
        let mut out = String::new();
        for d in deltas {
            let u = c.push(d);
            out.push_str(&u.emit);
            if u.stopped {
                return (out, true);
            }
        }
        out.push_str(&c.flush());
        (out, false)
    }

    #[test]
    fn stop_string_across_deltas_is_cut() {
        assert_eq!(
            run(&["END"], false, &["hello E", "N", "D more"]),
            ("hello ".into(), true)
        );
        assert_eq!(
            run(&["END"], true, &["hello E", "ND more"]),
            ("hello END".into(), true)
        );
    }

    #[test]
    fn partial_match_is_held_then_released() {
        let mut c = StopChecker::new(vec!["STOP".into()], false);
        assert_eq!(c.push("ab ST").emit, "ab ");
        assert_eq!(c.push("AR").emit, "STAR");
    }

    #[test]
    fn earliest_stop_wins_and_no_stops_pass_through() {
        assert_eq!(run(&["b", "a"], false, &["xxab"]), ("xx".into(), true));
        assert_eq!(run(&[], false, &["a", "b"]), ("ab".into(), false));
        assert_eq!(
            run(&["é!"], false, &["caf", "é", "!"]),
            ("caf".into(), true)
        );
    }
}
