//! [`CacheControls`]: LiteLLM's per-request `"cache"` object.

use crate::error::ProviderError;
use serde_json::{Map, Value};
use std::time::Duration;

/// What one request asks of the cache, from its body's `"cache"` field, as
/// LiteLLM's proxy accepts it (`extra_body={"cache": {...}}` in the OpenAI
/// SDKs):
///
/// | field | type | meaning |
/// | --- | --- | --- |
/// | `no-cache` | bool | do not read the cache: always call the model |
/// | `no-store` | bool | do not write this response to the cache |
/// | `ttl` | seconds | keep this response this long (else the default) |
/// | `s-maxage` (or `s-max-age`) | seconds | accept only an entry at most this old |
/// | `namespace` | string | keep the entry apart, under `"<namespace>:<key>"` |
///
/// LiteLLM's docs table says `no-cache` "will not store"; its code (and
/// HTTP) skip the *read*, which is what this follows. Unlike LiteLLM, a
/// wrong shape (a string ttl, an unknown field such as `no_cache`) is a
/// `400` naming `cache`, not silently ignored. `null` fields are absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheControls {
    /// Skip the lookup (the response may still be stored).
    pub no_cache: bool,
    /// Skip storing the response (a cached one may still be served).
    pub no_store: bool,
    /// How long to keep this response; `None` uses the configured default.
    pub ttl: Option<Duration>,
    /// Only an entry at most this old is a hit; `None` accepts any.
    pub s_maxage: Option<Duration>,
    /// Entries of this namespace are apart from all others; [`super::cache_key`]
    /// already applies it.
    pub namespace: Option<String>,
}

/// The fields LiteLLM accepts in `"cache"`.
const FIELDS: [&str; 6] = [
    "no-cache",
    "no-store",
    "ttl",
    "s-maxage",
    "s-max-age",
    "namespace",
];

impl CacheControls {
    /// The controls of a request body (its `"cache"` field; none → default).
    pub fn from_request(request: &Value) -> Result<Self, ProviderError> {
        Self::parse(request.get("cache"))
    }

    /// Parses the value of a `"cache"` field (`None` or `null` → default);
    /// typed requests find it in their `extra` map.
    pub fn parse(cache: Option<&Value>) -> Result<Self, ProviderError> {
        let fields = match cache {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(fields)) => fields,
            Some(other) => {
                return Err(invalid(format!(
                    "`cache` must be an object such as {{\"no-cache\": true}}, got {}",
                    kind(other)
                )))
            }
        };
        if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(format!(
                "unknown cache control `{unknown}`; expected one of: {}",
                FIELDS.join(", ")
            )));
        }
        if fields.get("s-maxage").is_some_and(|v| !v.is_null())
            && fields.get("s-max-age").is_some_and(|v| !v.is_null())
        {
            return Err(invalid(
                "give `s-maxage` or its alias `s-max-age`, not both".to_owned(),
            ));
        }
        let ttl = seconds(fields, "ttl")?;
        if ttl == Some(Duration::ZERO) {
            return Err(invalid("`cache.ttl` must be greater than 0".to_owned()));
        }
        let s_maxage = match seconds(fields, "s-maxage")? {
            Some(d) => Some(d),
            None => seconds(fields, "s-max-age")?,
        };
        let namespace = match fields.get("namespace") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(other) => {
                return Err(invalid(format!(
                    "`cache.namespace` must be a non-empty string, got {}",
                    kind(other)
                )))
            }
        };
        Ok(Self {
            no_cache: flag(fields, "no-cache")?,
            no_store: flag(fields, "no-store")?,
            ttl,
            s_maxage,
            namespace,
        })
    }

    /// Whether the cache may be read for this request.
    pub fn reads(&self) -> bool {
        !self.no_cache
    }

    /// Whether this request's response may be stored.
    pub fn writes(&self) -> bool {
        !self.no_store
    }

    /// The ttl to store with: the request's, else `default`.
    pub fn ttl_or(&self, default: Duration) -> Duration {
        self.ttl.unwrap_or(default)
    }
}

fn invalid(message: String) -> ProviderError {
    ProviderError::invalid("cache", message)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn flag(fields: &Map<String, Value>, name: &str) -> Result<bool, ProviderError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(invalid(format!(
            "`cache.{name}` must be true or false, got {}",
            kind(other)
        ))),
    }
}

/// A duration in (possibly fractional) seconds, at least 0.
fn seconds(fields: &Map<String, Value>, name: &str) -> Result<Option<Duration>, ProviderError> {
    let value = match fields.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    value
        .as_f64()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "`cache.{name}` must be a number of seconds, at least 0, got {}",
                match value {
                    Value::Number(n) => n.to_string(),
                    other => kind(other).to_owned(),
                }
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn parse(cache: Value) -> Result<CacheControls, ProviderError> {
        CacheControls::from_request(&json!({"model": "m", "cache": cache}))
    }

    fn error(cache: Value) -> String {
        let e = parse(cache).unwrap_err();
        assert_eq!(e.status().as_u16(), 400);
        assert_eq!(e.body().error.param.as_deref(), Some("cache"));
        e.to_string()
    }

    #[test]
    fn absent_or_null_is_default() {
        let d = CacheControls::from_request(&json!({"model": "m"})).unwrap();
        assert_eq!(d, CacheControls::default());
        assert!(d.reads() && d.writes());
        assert_eq!(parse(Value::Null).unwrap(), CacheControls::default());
        assert_eq!(parse(json!({})).unwrap(), CacheControls::default());
    }

    #[test]
    fn every_litellm_control() {
        let c = parse(json!({"no-cache": true, "no-store": false, "ttl": 600,
                             "s-maxage": 0.5, "namespace": "team-a"}))
        .unwrap();
        assert_eq!(
            c,
            CacheControls {
                no_cache: true,
                no_store: false,
                ttl: Some(Duration::from_secs(600)),
                s_maxage: Some(Duration::from_millis(500)),
                namespace: Some("team-a".into()),
            }
        );
        assert!(!c.reads() && c.writes());
        assert_eq!(c.ttl_or(Duration::from_secs(1)), Duration::from_secs(600));
        let c = parse(json!({"no-store": true, "s-max-age": 0})).unwrap();
        assert!(c.reads() && !c.writes());
        assert_eq!(c.s_maxage, Some(Duration::ZERO));
        assert_eq!(c.ttl_or(Duration::from_secs(7)), Duration::from_secs(7));
        let c = parse(json!({"ttl": null, "no-cache": null})).unwrap();
        assert_eq!(c, CacheControls::default());
    }

    #[test]
    fn bad_shapes_are_400_naming_cache() {
        assert!(error(json!(true)).contains("must be an object"));
        assert!(error(json!("no-cache")).contains("got a string"));
        assert!(error(json!({"no_cache": true})).contains("unknown cache control `no_cache`"));
        assert!(
            error(json!({"no-cache": "yes"})).contains("`cache.no-cache` must be true or false")
        );
        assert!(error(json!({"ttl": "600"})).contains("`cache.ttl` must be a number"));
        assert!(error(json!({"ttl": -1})).contains("got -1"));
        assert!(error(json!({"ttl": 0})).contains("greater than 0"));
        assert!(error(json!({"s-maxage": [1]})).contains("got an array"));
        assert!(error(json!({"s-maxage": 1, "s-max-age": 2})).contains("not both"));
        assert!(error(json!({"namespace": 3})).contains("non-empty string"));
        assert!(error(json!({"namespace": ""})).contains("non-empty string"));
    }

    #[test]
    fn parse_takes_the_field_value() {
        let extra = json!({"no-store": true});
        assert!(CacheControls::parse(Some(&extra)).unwrap().no_store);
        assert_eq!(
            CacheControls::parse(None).unwrap(),
            CacheControls::default()
        );
    }
}
