//! `config.yaml` read as LiteLLM reads it: PyYAML's `safe_load`, which
//! implements YAML 1.1. Most YAML in the Rust ecosystem is YAML 1.2, where
//! `20_000`, `yes`, `on` and `017` are strings; in YAML 1.1 (and so in
//! every LiteLLM deployment) they are the numbers 20000 and 15 and the
//! boolean true. A config written for LiteLLM must mean the same here.
//!
//! The parsing (indentation, flow style, quoting, anchors) is
//! `yaml-rust2`'s event parser; what this module adds is the part no Rust
//! crate offers: PyYAML's implicit resolver (the regular expressions of
//! `yaml/resolver.py`, applied to plain scalars only, so a quoted
//! `"20_000"` stays a string), its constructors for `int` (underscores,
//! `0x`, `0b`, leading-zero octal, base 60) and `float`, and `<<` merge
//! keys. Two YAML 1.2 spellings PyYAML leaves as strings are read as
//! numbers too (exponents without a sign or a dot, `1e3`, `1.5e3`, and
//! `0o17`): LiteLLM's typed settings would coerce
//! those strings to numbers, so reading them as numbers serves the same
//! files.
//!
//! The result is a `serde_json::Value` tree, which the loader then
//! resolves (`os.environ/`) and types.

use regex::Regex;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Parses `text` (one document; an empty one is `null`). Errors carry the
/// line and column.
pub fn parse(text: &str) -> Result<Value, String> {
    let mut builder = Builder {
        resolver: RESOLVER.as_ref().map_err(Clone::clone)?,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| e.to_string())?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Value::Null))
}

/// The resolvers, compiled once: compiling them took most of a parse of a
/// small config.
static RESOLVER: std::sync::LazyLock<Result<Resolver, String>> =
    std::sync::LazyLock::new(Resolver::new);

/// PyYAML's implicit resolvers (`yaml/resolver.py`, `Resolver`), as
/// compiled patterns.
struct Resolver {
    boolean: Regex,
    int: Regex,
    float: Regex,
    null: Regex,
    /// `1e3`, `-2E-5`, `1.5e3`: YAML 1.2 floats whose exponent has no
    /// sign or whose mantissa has no dot (PyYAML wants both).
    exp_float: Regex,
    /// `0o17`: a YAML 1.2 octal.
    octal12: Regex,
}

impl Resolver {
    fn new() -> Result<Self, String> {
        let re = |p: &str| Regex::new(p).map_err(|e| format!("YAML resolver pattern: {e}"));
        Ok(Self {
            boolean: re(
                r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$",
            )?,
            int: re(concat!(
                r"^(?:[-+]?0b[0-1_]+",
                r"|[-+]?0[0-7_]+",
                r"|[-+]?(?:0|[1-9][0-9_]*)",
                r"|[-+]?0x[0-9a-fA-F_]+",
                r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
            ))?,
            float: re(concat!(
                r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
                r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
                r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
                r"|[-+]?\.(?:inf|Inf|INF)",
                r"|\.(?:nan|NaN|NAN))$"
            ))?,
            null: re(r"^(?:~|null|Null|NULL|)$")?,
            exp_float: re(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")?,
            octal12: re(r"^[-+]?0o[0-7_]+$")?,
        })
    }

    /// The value of a plain (unquoted, untagged) scalar.
    fn plain(&self, s: &str) -> Value {
        if self.null.is_match(s) {
            return Value::Null;
        }
        if self.boolean.is_match(s) {
            return Value::Bool(matches!(
                s,
                "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON"
            ));
        }
        if self.int.is_match(s) || self.octal12.is_match(s) {
            if let Some(v) = construct_int(s) {
                return v;
            }
        }
        if self.float.is_match(s) || self.exp_float.is_match(s) {
            if let Some(v) = construct_float(s) {
                return v;
            }
        }
        Value::String(s.to_owned())
    }

    /// A scalar with an explicit tag: the standard `!!str`, `!!int`,
    /// `!!float`, `!!bool`, `!!null`; `!` alone means string.
    fn tagged(&self, s: &str, tag: &Tag) -> Result<Value, String> {
        let suffix = tag.suffix.as_str();
        let standard = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
        // `! 12`: the non-specific tag, which makes a scalar a string.
        let non_specific =
            (tag.handle.is_empty() || tag.handle == "!") && (suffix == "!" || suffix.is_empty());
        let bad = || format!("`{s}` is not a valid !!{suffix}");
        match (standard, suffix) {
            _ if non_specific => Ok(Value::String(s.to_owned())),
            (true, "str") => Ok(Value::String(s.to_owned())),
            (true, "int") => construct_int(s).ok_or_else(bad),
            (true, "float") => construct_float(s)
                .or_else(|| construct_int(s))
                .ok_or_else(bad),
            (true, "bool") => match self.plain(s) {
                Value::Bool(b) => Ok(Value::Bool(b)),
                _ => Err(bad()),
            },
            (true, "null") => Ok(Value::Null),
            _ => Err(format!(
                "unsupported YAML tag `{}{}` (PyYAML's safe_load refuses it too)",
                tag.handle, tag.suffix
            )),
        }
    }
}

/// PyYAML's `construct_yaml_int`: sign, `_` ignored, `0b`, `0x`, a
/// leading `0` for octal, `:` for base 60. `None` when it does not fit
/// 64 bits.
fn construct_int(s: &str) -> Option<Value> {
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let magnitude: u64 = if digits == "0" {
        0
    } else if let Some(bin) = digits.strip_prefix("0b") {
        u64::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        u64::from_str_radix(oct, 8).ok()?
    } else if let Some(oct) = digits.strip_prefix('0') {
        u64::from_str_radix(oct, 8).ok()?
    } else if digits.contains(':') {
        digits.split(':').try_fold(0u64, |acc, part| {
            acc.checked_mul(60)?.checked_add(part.parse::<u64>().ok()?)
        })?
    } else {
        digits.parse().ok()?
    };
    if negative {
        let v = i64::try_from(magnitude).ok()?;
        Some(Value::Number(Number::from(-v)))
    } else {
        Some(Value::Number(Number::from(magnitude)))
    }
}

/// PyYAML's `construct_yaml_float`: `_` ignored, base 60. Infinities and
/// NaN have no JSON number, so they stay strings (no setting takes them).
fn construct_float(s: &str) -> Option<Value> {
    let cleaned: String = s.chars().filter(|c| *c != '_').collect();
    let lower = cleaned.to_ascii_lowercase();
    if lower.ends_with(".inf") || lower == ".nan" {
        return Some(Value::String(s.to_owned()));
    }
    let (sign, digits) = match cleaned.as_bytes().first() {
        Some(b'-') => (-1.0, &cleaned[1..]),
        Some(b'+') => (1.0, &cleaned[1..]),
        _ => (1.0, cleaned.as_str()),
    };
    let value = if digits.contains(':') {
        digits.split(':').try_fold(0.0f64, |acc, part| {
            Some(acc * 60.0 + part.parse::<f64>().ok()?)
        })?
    } else {
        digits.parse::<f64>().ok()?
    };
    Number::from_f64(sign * value).map(Value::Number)
}

/// A collection being built.
enum Frame {
    Seq {
        anchor: usize,
        items: Vec<Value>,
    },
    Map {
        anchor: usize,
        map: Map<String, Value>,
        /// The key read, waiting for its value.
        key: Option<String>,
        /// Whether the pending key is a `<<` merge key.
        merge_key: bool,
        /// Mappings merged in with `<<`, in order (earlier win).
        merges: Vec<Map<String, Value>>,
    },
}

/// Builds the tree from the parser's events.
struct Builder {
    resolver: &'static Resolver,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    root: Option<Value>,
    error: Option<String>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(format!(
                "{message} at line {} column {}",
                mark.line(),
                mark.col() + 1
            ));
        }
    }

    /// Adds a finished node to its parent (or makes it the root), noting
    /// the first error. `plain_merge` is whether the node is a plain `<<`.
    fn add(&mut self, value: Value, anchor: usize, plain_merge: bool, mark: Marker) {
        if let Err(e) = self.push(value, anchor, plain_merge) {
            self.fail(mark, e.to_owned());
        }
    }

    fn push(&mut self, value: Value, anchor: usize, plain_merge: bool) -> Result<(), &'static str> {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map,
                key,
                merge_key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    *merge_key = plain_merge;
                    *key = Some(match value {
                        Value::String(s) => s,
                        Value::Null => "null".to_owned(),
                        // PyYAML keeps non-string keys typed; every key
                        // of LiteLLM's config is a string, so the text
                        // of a number or bool is what a lookup uses.
                        Value::Bool(b) => if b { "True" } else { "False" }.to_owned(),
                        Value::Number(n) => n.to_string(),
                        Value::Array(_) | Value::Object(_) => {
                            return Err("a mapping key must be a scalar")
                        }
                    });
                }
                Some(k) => {
                    if std::mem::take(merge_key) {
                        match value {
                            Value::Object(m) => merges.push(m),
                            Value::Array(list) => {
                                for item in list {
                                    match item {
                                        Value::Object(m) => merges.push(m),
                                        _ => return Err("a `<<` merge list must hold mappings"),
                                    }
                                }
                            }
                            _ => {
                                return Err(
                                    "a `<<` merge key needs a mapping or a list of mappings",
                                )
                            }
                        }
                    } else {
                        // A repeated key: the last one wins, as in PyYAML.
                        map.insert(k, value);
                    }
                }
            },
        }
        Ok(())
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let plain = matches!(style, TScalarStyle::Plain);
                let value = match (&tag, plain) {
                    (Some(tag), _) => match self.resolver.tagged(&text, tag) {
                        Ok(v) => v,
                        Err(e) => return self.fail(mark, e),
                    },
                    (None, true) => self.resolver.plain(&text),
                    (None, false) => Value::String(text.clone()),
                };
                let merge = plain && tag.is_none() && text == "<<";
                self.add(value, anchor, merge, mark);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                anchor,
                map: Map::new(),
                key: None,
                merge_key: false,
                merges: Vec::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { anchor, items }) => {
                    self.add(Value::Array(items), anchor, false, mark);
                }
                Some(Frame::Map {
                    anchor,
                    mut map,
                    merges,
                    ..
                }) => {
                    // Explicit keys win over merged ones; among merged
                    // mappings the earlier wins (PyYAML's flatten_mapping).
                    for merged in merges {
                        for (k, v) in merged {
                            map.entry(k).or_insert(v);
                        }
                    }
                    self.add(Value::Object(map), anchor, false, mark);
                }
                None => self.fail(mark, "unbalanced YAML collection".to_owned()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(v) => self.add(v, 0, false, mark),
                None => self.fail(mark, "alias to an unknown anchor".to_owned()),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_booleans_as_pyyaml_reads_them() {
        let v = parse(
            "a: 20_000\nb: 0x10\nc: 0o17\nd: 017\ne: 1e3\nf: 1.5e+3\ng: 1_000.5\nh: -0b101\n\
             i: 1:30\nj: yes\nk: No\nl: on\nm: OFF\nn: ~\no: \np: True\nq: 0\nr: -7\n\
             s: .5\nt: 2024-10-21\nu: 1.0.0\nv: 12abc\nw: .inf\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "a": 20000, "b": 16, "c": 15, "d": 15, "e": 1000.0, "f": 1500.0,
                "g": 1000.5, "h": -5, "i": 90, "j": true, "k": false, "l": true,
                "m": false, "n": null, "o": null, "p": true, "q": 0, "r": -7,
                "s": 0.5, "t": "2024-10-21", "u": "1.0.0", "v": "12abc", "w": ".inf"
            })
        );
    }

    #[test]
    fn quoted_and_tagged_scalars_keep_their_type() {
        let v = parse(
            "a: \"20_000\"\nb: 'yes'\nc: !!str 10\nd: !!int \"0x10\"\ne: !!float 3\n\
             f: |\n  on\ng: ! 12\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": "20_000", "b": "yes", "c": "10", "d": 16, "e": 3.0, "f": "on\n", "g": "12"})
        );
        let err = parse("a: !python/name:os.system x\n").unwrap_err();
        assert!(err.contains("unsupported YAML tag"), "{err}");
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = parse(
            "base: &b {api_key: k, rpm: 10}\nother: &o {tpm: 5, rpm: 1}\n\
             one: {<<: *b, rpm: 20}\ntwo:\n  <<: [*b, *o]\nlist: [*b]\n",
        )
        .unwrap();
        assert_eq!(v["one"], json!({"api_key": "k", "rpm": 20}));
        assert_eq!(v["two"], json!({"api_key": "k", "rpm": 10, "tpm": 5}));
        assert_eq!(v["list"], json!([{"api_key": "k", "rpm": 10}]));
    }

    #[test]
    fn empty_documents_and_errors() {
        assert_eq!(parse("").unwrap(), Value::Null);
        assert_eq!(parse("# only a comment\n").unwrap(), Value::Null);
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.contains("line"), "{err}");
        assert_eq!(
            parse("a: 99999999999999999999\n").unwrap()["a"],
            "99999999999999999999"
        );
    }
}
