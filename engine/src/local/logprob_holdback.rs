//! Keeps a choice's logprob tokens in step with its content.
//!
//! OpenAI's clients join the logprob tokens of a choice to get its content.
//! The stop-string checker holds text back while it might be the start of a
//! stop string and cuts the content where one matched, so logprobs released
//! as soon as their token is sampled can run ahead of the content, and past
//! its end. This releases a token's logprob only once the content covers
//! its text, and at a stop string trims the token that carried the match.

use std::collections::VecDeque;

use super::generation::TokenLogprob;

/// Logprobs sampled but not yet covered by emitted content.
#[derive(Debug, Default)]
pub struct LogprobHoldback {
    pending: VecDeque<TokenLogprob>,
    /// Bytes of content emitted so far.
    content: usize,
    /// Bytes of the logprob tokens released so far.
    released: usize,
}

impl LogprobHoldback {
    /// Queues `sampled` and returns those whose text the content, now
    /// `emitted` bytes longer, covers.
    pub fn push(&mut self, sampled: Vec<TokenLogprob>, emitted: usize) -> Vec<TokenLogprob> {
        self.pending.extend(sampled);
        self.content += emitted;
        let mut out = Vec::new();
        while let Some(front) = self.pending.front() {
            if self.released + front.token.len() > self.content {
                break;
            }
            self.released += front.token.len();
            out.extend(self.pending.pop_front());
        }
        out
    }

    /// The choice ended. Without a stop string the content is all out and
    /// so is every logprob; at a stop string the content ends where it
    /// matched: the token that reaches past it is cut to the part inside,
    /// and the tokens after it (none are, unless it was held) are dropped.
    pub fn finish(&mut self, at_stop_string: bool) -> Vec<TokenLogprob> {
        let pending = std::mem::take(&mut self.pending);
        if !at_stop_string {
            return pending.into();
        }
        let room = self.content.saturating_sub(self.released);
        let mut out = Vec::new();
        if let Some(mut straddling) = pending.into_iter().next() {
            if room > 0 {
                let mut cut = room.min(straddling.token.len());
                while !straddling.token.is_char_boundary(cut) {
                    cut -= 1;
                }
                if cut > 0 {
                    straddling.token.truncate(cut);
                    self.released += cut;
                    out.push(straddling);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(token: &str) -> TokenLogprob {
        TokenLogprob {
            token: token.into(),
            token_id: 0,
            logprob: -0.5,
            top: Vec::new(),
        }
    }

    fn joined(lps: &[TokenLogprob]) -> String {
        lps.iter().map(|l| l.token.as_str()).collect()
    }

    #[test]
    fn logprobs_wait_for_the_text_the_stop_checker_holds() {
        let mut h = LogprobHoldback::default();
        // "Hello" is out; " wor" is held (it could start " world!").
        let out = h.push(vec![lp("Hello"), lp(" wor")], "Hello".len());
        assert_eq!(joined(&out), "Hello");
        // The stop string did not match: the held text comes out.
        let out = h.push(vec![lp("ld")], " world".len());
        assert_eq!(joined(&out), " world");
        assert!(h.finish(false).is_empty());
    }

    #[test]
    fn at_a_stop_string_the_token_carrying_it_is_cut_and_later_ones_dropped() {
        // Content "The answer is 4" with stop string "." inside the token ".\n".
        let mut h = LogprobHoldback::default();
        let mut all = h.push(vec![lp("The"), lp(" answer"), lp(" is")], 13);
        all.extend(h.push(vec![lp(" 4."), lp("\n")], 2));
        all.extend(h.finish(true));
        assert_eq!(joined(&all), "The answer is 4");
    }

    #[test]
    fn a_stop_string_on_a_token_boundary_drops_the_rest() {
        let mut h = LogprobHoldback::default();
        let mut all = h.push(vec![lp("yes"), lp("STOP"), lp("more")], 3);
        all.extend(h.finish(true));
        assert_eq!(joined(&all), "yes");
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        let mut h = LogprobHoldback::default();
        // Content is "a" plus one byte of "é"'s two: keep only "a".
        let mut all = h.push(vec![lp("a"), lp("é!")], 2);
        all.extend(h.finish(true));
        assert_eq!(joined(&all), "a");
    }

    #[test]
    fn without_a_stop_string_every_logprob_comes_out_at_the_end() {
        // A token whose text alone differs from what it adds to the content
        // (a partial UTF-8 sequence) is not lost, only later.
        let mut h = LogprobHoldback::default();
        let mut all = h.push(vec![lp("\u{fffd}"), lp("\u{fffd}")], 2);
        all.extend(h.finish(false));
        assert_eq!(all.len(), 2);
    }
}
