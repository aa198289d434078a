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
///
/// Each stop string runs a Knuth-Morris-Pratt matcher over the output
/// bytes as they arrive, so a push costs O(delta bytes x stop strings)
/// (amortized), whatever the stop strings' lengths: the matcher's state is
/// both "a stop string ended here" and "this many trailing bytes could
/// still begin one" (the hold-back). Checking every prefix length of every
/// stop string on every token instead would cost their total length per
/// token, which a client sending long stop strings turns into a stall.
pub struct StopChecker {
    stops: Vec<StopMatcher>,
    include_stop_str_in_output: bool,
    /// Output text so far (what was emitted plus what is held back).
    text: String,
    emitted: usize,
}

/// Incremental KMP over one stop string.
struct StopMatcher {
    pattern: Vec<u8>,
    /// `fail[i]`: length of the longest proper prefix of `pattern[..=i]`
    /// that is also its suffix.
    fail: Vec<usize>,
    /// Length of the longest prefix of `pattern` that the text ends with.
    state: usize,
}

impl StopMatcher {
    fn new(pattern: Vec<u8>) -> Self {
        let mut fail = vec![0; pattern.len()];
        let mut k = 0;
        for i in 1..pattern.len() {
            while k > 0 && pattern[i] != pattern[k] {
                k = fail[k - 1];
            }
            if pattern[i] == pattern[k] {
                k += 1;
            }
            fail[i] = k;
        }
        Self {
            pattern,
            fail,
            state: 0,
        }
    }

    /// Feeds `bytes`; returns the index in `bytes` where the first full
    /// match ends (inclusive), if one does.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, &b) in bytes.iter().enumerate() {
            while self.state > 0 && self.pattern[self.state] != b {
                self.state = self.fail[self.state - 1];
            }
            if self.pattern[self.state] == b {
                self.state += 1;
            }
            if self.state == self.pattern.len() {
                self.state = self.fail[self.state - 1];
                return Some(i);
            }
        }
        None
    }
}

impl StopChecker {
    /// `stops` are matched anywhere in the output; empty strings are ignored.
    pub fn new(stops: Vec<String>, include_stop_str_in_output: bool) -> Self {
        Self {
            stops: stops
                .into_iter()
                .filter(|s| !s.is_empty())
                .map(|s| StopMatcher::new(s.into_bytes()))
                .collect(),
            include_stop_str_in_output,
            text: String::new(),
            emitted: 0,
        }
    }

    /// Adds a delta. Returns what can be emitted, and whether a stop string
    /// ended the output.
    pub fn push(&mut self, delta: &str) -> StopUpdate {
        let start = self.text.len();
        self.text.push_str(delta);
        // The earliest-starting stop string that ends in this delta.
        let mut found: Option<(usize, usize)> = None;
        for m in &mut self.stops {
            if let Some(end) = m.feed(delta.as_bytes()) {
                let len = m.pattern.len();
                let pos = start + end + 1 - len;
                if found.is_none_or(|(p, _)| pos < p) {
                    found = Some((pos, len));
                }
            }
        }
        if let Some((pos, stop)) = found {
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
        let hold = self.stops.iter().map(|m| m.state).max().unwrap_or(0);
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
    fn overlapping_and_self_similar_stops_match_where_str_find_does() {
        // KMP must fall back inside a partial match ("aab" in "aaab").
        assert_eq!(
            run(&["aab"], false, &["a", "a", "a", "b!"]),
            ("a".into(), true)
        );
        assert_eq!(run(&["abab"], false, &["xabababy"]), ("x".into(), true));
        // The earliest start wins even when another stop ends first.
        assert_eq!(run(&["bc", "abcd"], false, &["xabcd"]), ("x".into(), true));
        assert_eq!(
            run(&["abcd", "bc"], false, &["xab", "cd"]),
            ("x".into(), true)
        );
        // Held back while it could still match, released when it cannot.
        let mut c = StopChecker::new(vec!["aab".into()], false);
        assert_eq!(c.push("xaa").emit, "x");
        assert_eq!(c.push("a").emit, "a");
        assert_eq!(c.push("c").emit, "aac");
    }

    #[test]
    fn long_stop_strings_cost_per_byte_not_per_stop_length() {
        // 16 stop strings of 1 MiB each over 2,000 tokens: checking every
        // prefix length per token was 16 x 1 Mi x 2,000 = 3.4e10 steps.
        let stops: Vec<String> = (0..16)
            .map(|i| {
                let mut s = "a".repeat(1 << 20);
                s.push(char::from(b'A' + i as u8));
                s
            })
            .collect();
        let mut c = StopChecker::new(stops, false);
        let mut out = String::new();
        for _ in 0..2_000 {
            let u = c.push("aa");
            assert!(!u.stopped);
            out.push_str(&u.emit);
        }
        // Everything could still become a stop string: all held back.
        assert_eq!(out, "");
        assert_eq!(c.flush().len(), 4_000);
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
