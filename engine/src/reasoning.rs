//! Reasoning text out of a thinking model's output (vLLM's
//! `--reasoning-parser`): what the model wrote between `<think>` and
//! `</think>` goes to `reasoning_content`, the rest to `content`.

/// The families, by vLLM's `--reasoning-parser` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReasoningParser {
    /// DeepSeek-R1: the template opens `<think>` in the prompt, so the
    /// output starts in reasoning (a leading `<think>` is dropped) until
    /// `</think>`, or to the end.
    #[value(name = "deepseek_r1")]
    DeepseekR1,
    /// Qwen3: thinking can be switched off, so only output that opens with
    /// `<think>` has reasoning (until `</think>`, or to the end).
    Qwen3,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

impl ReasoningParser {
    /// The markers around the reasoning: (open, close).
    pub fn markers(self) -> (&'static str, &'static str) {
        (OPEN, CLOSE)
    }

    /// Splits a finished output into (reasoning, content).
    pub fn split(self, text: &str) -> (Option<String>, String) {
        let opened = text.trim_start().strip_prefix(OPEN);
        let body = match (self, opened) {
            (_, Some(body)) => body,
            (Self::DeepseekR1, None) => text,
            (Self::Qwen3, None) => return (None, text.to_owned()),
        };
        match body.find(CLOSE) {
            Some(end) => (
                Some(body[..end].to_owned()),
                body[end + CLOSE.len()..].to_owned(),
            ),
            None => (Some(body.to_owned()), String::new()),
        }
    }
}

/// Streaming: routes each delta to reasoning or content as the markers
/// pass, holding back the end of a delta that could be half a marker.
#[derive(Debug)]
pub struct ReasoningStream {
    parser: ReasoningParser,
    /// Text not routed yet (a possible partial marker).
    pending: String,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Nothing routed yet: a leading `<think>` decides.
    Start,
    Reasoning,
    Content,
}

/// One delta, routed.
#[derive(Debug, Default, PartialEq)]
pub struct Routed {
    pub reasoning: String,
    pub content: String,
}

impl ReasoningStream {
    pub fn new(parser: ReasoningParser) -> Self {
        Self {
            parser,
            pending: String::new(),
            state: State::Start,
        }
    }

    /// Routes `delta`; `last` flushes whatever is held.
    pub fn push(&mut self, delta: &str, last: bool) -> Routed {
        self.pending.push_str(delta);
        let mut out = Routed::default();
        if self.state == State::Start {
            let t = self.pending.trim_start();
            if let Some(rest) = t.strip_prefix(OPEN) {
                self.pending = rest.to_owned();
                self.state = State::Reasoning;
            } else if OPEN.starts_with(t) && !last {
                return out; // perhaps the start of `<think>`
            } else {
                self.state = match self.parser {
                    ReasoningParser::DeepseekR1 => State::Reasoning,
                    ReasoningParser::Qwen3 => State::Content,
                };
            }
        }
        if self.state == State::Reasoning {
            if let Some(end) = self.pending.find(CLOSE) {
                out.reasoning.push_str(&self.pending[..end]);
                self.pending.drain(..end + CLOSE.len());
                self.state = State::Content;
            } else {
                let keep = if last {
                    0
                } else {
                    partial_suffix(&self.pending, CLOSE)
                };
                let cut = self.pending.len() - keep;
                out.reasoning.push_str(&self.pending[..cut]);
                self.pending.drain(..cut);
                return out;
            }
        }
        out.content.push_str(&self.pending);
        self.pending.clear();
        out
    }
}

/// The longest end of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| text.ends_with(&marker[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_outputs_split_at_the_end_of_thinking() {
        let r1 = ReasoningParser::DeepseekR1;
        assert_eq!(
            r1.split("plan it</think>The answer is 4."),
            (Some("plan it".into()), "The answer is 4.".into())
        );
        assert_eq!(
            r1.split("<think>a</think>b"),
            (Some("a".into()), "b".into())
        );
        assert_eq!(
            r1.split("still thinking"),
            (Some("still thinking".into()), "".into())
        );
        let q = ReasoningParser::Qwen3;
        assert_eq!(q.split("<think>a</think>b"), (Some("a".into()), "b".into()));
        assert_eq!(
            q.split("no thinking here"),
            (None, "no thinking here".into())
        );
        assert_eq!(
            q.split("<think>cut off"),
            (Some("cut off".into()), "".into())
        );
    }

    fn stream(parser: ReasoningParser, pieces: &[&str]) -> (String, String) {
        let mut s = ReasoningStream::new(parser);
        let (mut r, mut c) = (String::new(), String::new());
        for (i, p) in pieces.iter().enumerate() {
            let out = s.push(p, i + 1 == pieces.len());
            r.push_str(&out.reasoning);
            c.push_str(&out.content);
        }
        (r, c)
    }

    #[test]
    fn a_stream_routes_the_same_split_whatever_the_pieces() {
        let text = "<think>Two and two.</think>It is 4.";
        for parser in [ReasoningParser::DeepseekR1, ReasoningParser::Qwen3] {
            let whole = parser.split(text);
            for size in [1, 2, 3, 5, 8, 40] {
                let chars: Vec<char> = text.chars().collect();
                let pieces: Vec<String> = chars.chunks(size).map(|c| c.iter().collect()).collect();
                let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
                let (r, c) = stream(parser, &refs);
                assert_eq!(
                    (Some(r), c),
                    whole.clone(),
                    "{parser:?} in pieces of {size}"
                );
            }
        }
        assert_eq!(
            stream(ReasoningParser::Qwen3, &["plain ", "answer"]),
            (String::new(), "plain answer".into())
        );
        assert_eq!(
            stream(ReasoningParser::DeepseekR1, &["unfinished </thi"]),
            ("unfinished </thi".into(), String::new())
        );
    }
}
