//! Banned keywords: LiteLLM's `banned_keywords` hook (a list that blocks)
//! and the `blocked_words` of its `litellm_content_filter` guardrail (each
//! word `BLOCK` or `MASK`).
//!
//! Matching is case-insensitive and by whole word: `secret` matches
//! `Secret!` but not `secretary`; the spaces of a multi-word keyword match
//! any run of whitespace. A keyword edge that is not a word character
//! (`c++`) needs no boundary on that side.

use regex::{Regex, RegexBuilder};

/// What a matched keyword does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordAction {
    /// Refuse the request.
    Block,
    /// Replace the keyword with the redaction tag and go on.
    Mask,
}

/// One keyword with its compiled pattern.
#[derive(Debug, Clone)]
struct Keyword {
    word: String,
    pattern: Regex,
    action: KeywordAction,
}

/// A compiled keyword list.
#[derive(Debug, Clone)]
pub struct KeywordFilter {
    keywords: Vec<Keyword>,
    redaction_tag: String,
}

/// LiteLLM's content filter's default `keyword_redaction_tag`.
pub const DEFAULT_REDACTION_TAG: &str = "[KEYWORD_REDACTED]";

impl KeywordFilter {
    /// Compiles `words`; an empty or blank keyword is refused (it would
    /// match everything or nothing).
    pub fn new(
        words: impl IntoIterator<Item = (String, KeywordAction)>,
        redaction_tag: Option<String>,
    ) -> Result<Self, String> {
        let mut keywords = Vec::new();
        for (word, action) in words {
            let word = word.trim().to_owned();
            if word.is_empty() {
                return Err("a keyword is empty".to_owned());
            }
            let body = word
                .split_whitespace()
                .map(regex::escape)
                .collect::<Vec<_>>()
                .join(r"\s+");
            let starts_word = word.chars().next().is_some_and(is_word_char);
            let ends_word = word.chars().next_back().is_some_and(is_word_char);
            let pattern = format!(
                "{}{body}{}",
                if starts_word { r"\b" } else { "" },
                if ends_word { r"\b" } else { "" }
            );
            let pattern = RegexBuilder::new(&pattern)
                .case_insensitive(true)
                .build()
                .map_err(|e| format!("keyword `{word}`: {e}"))?;
            keywords.push(Keyword {
                word,
                pattern,
                action,
            });
        }
        if keywords.is_empty() {
            return Err("the keyword list is empty".to_owned());
        }
        Ok(Self {
            keywords,
            redaction_tag: redaction_tag.unwrap_or_else(|| DEFAULT_REDACTION_TAG.to_owned()),
        })
    }

    /// Masks the `Mask` keywords in `text`, or returns the first `Block`
    /// keyword found (as configured, not as written in the text, so the
    /// error does not echo the prompt).
    pub fn apply(&self, text: &mut String) -> Result<(), &str> {
        if let Some(k) = self
            .keywords
            .iter()
            .find(|k| k.action == KeywordAction::Block && k.pattern.is_match(text))
        {
            return Err(&k.word);
        }
        for k in self
            .keywords
            .iter()
            .filter(|k| k.action == KeywordAction::Mask)
        {
            if k.pattern.is_match(text) {
                *text = k
                    .pattern
                    .replace_all(text, regex::NoExpand(&self.redaction_tag))
                    .into_owned();
            }
        }
        Ok(())
    }
}

/// A character `\b` treats as part of a word.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn blocklist(words: &[&str]) -> KeywordFilter {
        KeywordFilter::new(
            words.iter().map(|w| (w.to_string(), KeywordAction::Block)),
            None,
        )
        .unwrap()
    }

    #[test]
    fn whole_word_case_insensitive() {
        let f = blocklist(&["secret", "api key", "c++"]);
        for hit in [
            "the SECRET is out",
            "Secret!",
            "my Api   Key here",
            "i write C++ daily",
            "(secret)",
        ] {
            assert!(f.apply(&mut hit.to_owned()).is_err(), "{hit}");
        }
        for miss in ["a secretary", "secrets", "apikey", "c+", "nothing"] {
            assert!(f.apply(&mut miss.to_owned()).is_ok(), "{miss}");
        }
        assert_eq!(f.apply(&mut "Tell me the SECRET".to_owned()), Err("secret"));
    }

    #[test]
    fn mask_replaces_every_match() {
        let f = KeywordFilter::new(
            [("Acme".to_owned(), KeywordAction::Mask)],
            Some("[X]".to_owned()),
        )
        .unwrap();
        let mut text = "acme sells ACME and acmeish things".to_owned();
        f.apply(&mut text).unwrap();
        assert_eq!(text, "[X] sells [X] and acmeish things");
        let f = KeywordFilter::new([("a$b".to_owned(), KeywordAction::Mask)], None).unwrap();
        let mut text = "pay a$b now".to_owned();
        f.apply(&mut text).unwrap();
        assert_eq!(text, "pay [KEYWORD_REDACTED] now");
    }

    #[test]
    fn empty_keywords_are_refused() {
        assert!(KeywordFilter::new(Vec::new(), None).is_err());
        assert!(KeywordFilter::new([(" ".to_owned(), KeywordAction::Block)], None).is_err());
    }
}
