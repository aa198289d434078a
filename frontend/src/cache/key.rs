//! [`cache_key`]: the identity of a request for the response cache.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// Top-level request fields left out of the cache key because they do not
/// change the answer, only how it is delivered, attributed or retried:
///
/// - `stream`, `stream_options`: a cached answer can be sent either way;
/// - `user`, `metadata`, `litellm_metadata`, `tags`: attribution and
///   logging (LiteLLM keys on `user` too; we do not, so identical questions
///   from different end users share an entry — use `namespace` to separate
///   tenants);
/// - `cache`, `caching`: the cache controls themselves;
/// - `timeout`, `request_timeout`, `num_retries`, `max_retries`,
///   `fallbacks`, `context_window_fallbacks`: retry policy;
/// - `priority`: vLLM's scheduling priority (when, not what).
///
/// Fields whose value is `null` are also left out, as OpenAI treats them as
/// absent. Everything else — `model`, `messages`/`prompt`/`input`,
/// sampling parameters, `tools`, `response_format`, unknown
/// provider-specific fields — is part of the key.
pub const IGNORED_FIELDS: &[&str] = &[
    "stream",
    "stream_options",
    "user",
    "metadata",
    "litellm_metadata",
    "tags",
    "cache",
    "caching",
    "timeout",
    "request_timeout",
    "num_retries",
    "max_retries",
    "fallbacks",
    "context_window_fallbacks",
    "priority",
];

/// The cache key of `request` sent to `route` (`"/v1/chat/completions"`):
/// the SHA-256 hex of the route and a canonical JSON of the request without
/// [`IGNORED_FIELDS`] — object keys sorted at every depth, no whitespace,
/// integral floats written as integers (`1.0` and `1` are the same
/// temperature). The route is part of it so a chat and a text completion
/// with equal bodies never share an entry.
///
/// When the request's `cache.namespace` is a string, the key is
/// `"<namespace>:<hex>"`, as in LiteLLM, so a tenant can keep its own
/// entries.
///
/// ```
/// use frontend::cache::cache_key;
/// use serde_json::json;
/// let a = json!({"model": "m", "messages": [], "temperature": 0, "stream": true});
/// let b = json!({"temperature": 0.0, "messages": [], "model": "m", "user": "u1"});
/// assert_eq!(cache_key("/v1/chat/completions", &a), cache_key("/v1/chat/completions", &b));
/// ```
pub fn cache_key(route: &str, request: &Value) -> String {
    let mut canonical = String::with_capacity(256);
    canonical.push_str(route);
    canonical.push('\n');
    match request {
        Value::Object(fields) => write_object(&mut canonical, fields, true),
        other => write_canonical(&mut canonical, other),
    }
    let hex = hex::encode(Sha256::digest(canonical.as_bytes()));
    let namespace = request
        .get("cache")
        .and_then(|c| c.get("namespace"))
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty());
    match namespace {
        Some(ns) => format!("{ns}:{hex}"),
        None => hex,
    }
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(fields) => write_object(out, fields, false),
    }
}

/// Writes an object with sorted keys; at the top level, without
/// [`IGNORED_FIELDS`] and `null` values.
fn write_object(out: &mut String, fields: &Map<String, Value>, top_level: bool) {
    let mut keys: Vec<&String> = fields
        .iter()
        .filter(|(k, v)| !top_level || !(v.is_null() || IGNORED_FIELDS.contains(&k.as_str())))
        .map(|(k, _)| k)
        .collect();
    keys.sort_unstable();
    out.push('{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        if let Some(value) = fields.get(key) {
            write_canonical(out, value);
        }
    }
    out.push('}');
}

/// Largest integer an `f64` holds exactly (2^53).
const F64_EXACT_INT: f64 = 9_007_199_254_740_992.0;

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f.is_finite() && f.fract() == 0.0 && f.abs() <= F64_EXACT_INT {
            // Exact: |f| <= 2^53 and integral, so the cast loses nothing.
            let int = f as i64;
            let _ = write!(out, "{int}");
            return;
        }
    }
    let _ = write!(out, "{n}");
}

fn write_string(out: &mut String, s: &str) {
    // serde_json's escaping of a plain string cannot fail; fall back to
    // Debug quoting rather than panicking if it ever did.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => {
            let _ = write!(out, "{s:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    const CHAT: &str = "/v1/chat/completions";

    fn base() -> Value {
        json!({
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "Hello", "name": "a"}],
            "temperature": 0.2,
            "max_tokens": 100
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = base();
        v.as_object_mut().unwrap().insert(field.to_owned(), value);
        v
    }

    #[test]
    fn is_sha256_hex() {
        let key = cache_key(CHAT, &base());
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(key, cache_key(CHAT, &base()));
    }

    #[test]
    fn key_order_does_not_matter_at_any_depth() {
        let reordered: Value = serde_json::from_str(
            r#"{"max_tokens": 100, "temperature": 0.2,
                "messages": [{"name": "a", "content": "Hello", "role": "user"}],
                "model": "gpt-4o"}"#,
        )
        .unwrap();
        assert_eq!(cache_key(CHAT, &base()), cache_key(CHAT, &reordered));
    }

    #[test]
    fn delivery_and_attribution_fields_do_not_matter() {
        let key = cache_key(CHAT, &base());
        for (field, value) in [
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
            ("user", json!("end-user-7")),
            ("metadata", json!({"trace": "x"})),
            ("cache", json!({"ttl": 60, "no-store": true})),
            ("num_retries", json!(3)),
            ("seed", Value::Null),
        ] {
            assert_eq!(key, cache_key(CHAT, &with(field, value)), "{field}");
        }
    }

    #[test]
    fn model_messages_and_parameters_matter() {
        let key = cache_key(CHAT, &base());
        for (field, value) in [
            ("model", json!("gpt-4o-mini")),
            ("messages", json!([{"role": "user", "content": "Hello!"}])),
            ("temperature", json!(0.3)),
            ("max_tokens", json!(101)),
            ("seed", json!(1)),
            ("tools", json!([])),
            ("top_k", json!(5)),
        ] {
            assert_ne!(key, cache_key(CHAT, &with(field, value)), "{field}");
        }
        assert_ne!(key, cache_key("/v1/completions", &base()));
        // Ignored names only at the top level: inside a message they count.
        let nested = json!({"model": "gpt-4o", "temperature": 0.2, "max_tokens": 100,
            "messages": [{"role": "user", "content": "Hello", "name": "a", "user": "x"}]});
        assert_ne!(key, cache_key(CHAT, &nested));
    }

    #[test]
    fn integral_floats_equal_integers() {
        assert_eq!(
            cache_key(CHAT, &with("temperature", json!(1))),
            cache_key(CHAT, &with("temperature", json!(1.0)))
        );
        assert_ne!(
            cache_key(CHAT, &with("temperature", json!(1))),
            cache_key(CHAT, &with("temperature", json!(1.5)))
        );
    }

    #[test]
    fn namespace_prefixes_the_key() {
        let plain = cache_key(CHAT, &base());
        let spaced = cache_key(CHAT, &with("cache", json!({"namespace": "team-a"})));
        assert_eq!(spaced, format!("team-a:{plain}"));
        let empty = cache_key(CHAT, &with("cache", json!({"namespace": ""})));
        assert_eq!(empty, plain);
    }

    #[test]
    fn strings_are_escaped_so_fields_cannot_collide() {
        let a = json!({"model": "m\",\"x\":\"y", "messages": []});
        let b = json!({"model": "m", "x": "y", "messages": []});
        assert_ne!(cache_key(CHAT, &a), cache_key(CHAT, &b));
    }
}
