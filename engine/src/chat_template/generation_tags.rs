//! transformers' `{% generation %}` tag (its assistant-mask extension),
//! which minijinja does not know, rewritten to a block that always renders.

use std::fmt::Write as _;

/// Replaces `{% generation %}`/`{% endgeneration %}` (transformers'
/// assistant-mask extension, which minijinja does not know) with an
/// always-true `if` block, keeping the whitespace-control markers.
pub(super) fn rewrite_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        // The closing `%}` is searched after the opening `{%`, so `{%}`
        // (which minijinja then rejects) never makes the body a reversed
        // range.
        let Some(end) = tag.get(2..).and_then(|t| t.find("%}")).map(|e| e + 2) else {
            out.push_str(tag);
            return out;
        };
        let inner = &tag[2..end];
        let (open, body) = split_marker(inner, true);
        let (body, close) = split_marker(body, false);
        match body.trim() {
            "generation" => {
                let _ = write!(out, "{{%{open} if true {close}%}}");
            }
            "endgeneration" => {
                let _ = write!(out, "{{%{open} endif {close}%}}");
            }
            _ => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Splits a leading (or trailing) `-`/`+` whitespace marker off a tag body.
fn split_marker(s: &str, leading: bool) -> (&str, &str) {
    let has = |c: char| c == '-' || c == '+';
    if leading {
        match s.chars().next() {
            Some(c) if has(c) => (&s[..1], &s[1..]),
            _ => ("", s),
        }
    } else {
        match s.chars().last() {
            Some(c) if has(c) => (&s[..s.len() - 1], &s[s.len() - 1..]),
            _ => (s, ""),
        }
    }
}
