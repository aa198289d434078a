//! jinja2 as `transformers` configures it, on minijinja: Python's way of
//! printing values (`None`, `True`, `[1, 'a']`, float reprs), `json.dumps`
//! byte for byte for `tojson`, `raise_exception` and `strftime_now`.

use std::fmt::Write as _;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};

use super::bounds::{CappedBuffer, OutputTooLarge};
use super::{MAX_RENDERED_BYTES, RENDER_FUEL};

/// The message a template passed to `raise_exception`, carried as the
/// source of the minijinja error so we can tell it from other failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct RaisedByTemplate(pub(super) String);
/// jinja2 as `transformers` configures it, on minijinja.
pub(super) fn python_like_environment() -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()?,
    );
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.set_fuel(Some(RENDER_FUEL));
    env.add_filter("tojson", tojson_filter);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message.clone())
                .with_source(RaisedByTemplate(message)))
        },
    );
    env.add_function("strftime_now", |format: String| -> String {
        strftime_utc_now(&format)
    });
    Ok(env)
}

/// Prints values as Python's `str()` does (`None`, `True`, `[1, 'a']`),
/// where minijinja would print `none`, `true`, `[1, "a"]`.
fn python_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        // Sequences are printed here, not by minijinja's `Debug` list,
        // which goes on iterating after its writer failed (over a sequence
        // repeated by `*`, for billions of items).
        ValueKind::None
        | ValueKind::Bool
        | ValueKind::Number
        | ValueKind::Seq
        | ValueKind::Iterable
        | ValueKind::Map => out
            .write_str(&python_str(value)?)
            .map_err(|e| Error::new(ErrorKind::WriteFailure, e.to_string())),
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `str(value)` for the JSON-like values templates see.
fn python_str(value: &Value) -> Result<String, OutputTooLarge> {
    match value.kind() {
        ValueKind::String => Ok(value.as_str().unwrap_or_default().to_string()),
        _ => {
            let mut out = String::new();
            write_python_repr(value, &mut out)?;
            Ok(out)
        }
    }
}

/// Refuses, before iterating it, a sequence repeated by `*` that is too
/// long to print within [`MAX_RENDERED_BYTES`] (each item takes at least a
/// byte and a separator): minijinja allows up to 100 million repeated
/// items, and producing them only to fail at the byte bound would hold a
/// render for seconds.
fn check_sequence_length(value: &Value) -> Result<(), OutputTooLarge> {
    match value.len() {
        Some(n) if value.kind() == ValueKind::Iterable && n > MAX_RENDERED_BYTES / 2 => {
            Err(OutputTooLarge)
        }
        _ => Ok(()),
    }
}

/// Appends Python's `repr(value)` to `out`, failing once `out` passes
/// [`MAX_RENDERED_BYTES`] (a sequence repeated by `*` can be huge and is
/// only produced as it is iterated).
fn write_python_repr(value: &Value, out: &mut String) -> Result<(), OutputTooLarge> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => match number(value) {
            Number::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Number::Float(f) => out.push_str(&python_float_repr(f, false)),
        },
        ValueKind::String => out.push_str(&python_str_repr(value.as_str().unwrap_or_default())),
        ValueKind::Seq | ValueKind::Iterable => {
            check_sequence_length(value)?;
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_repr(&item, out)?;
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_python_repr(&key, out)?;
                out.push_str(": ");
                write_python_repr(&value.get_item(&key).unwrap_or_default(), out)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    if out.len() > MAX_RENDERED_BYTES {
        return Err(OutputTooLarge);
    }
    Ok(())
}

/// Python's `repr(str)`: single quotes unless the text has `'` and no `"`.
fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

enum Number {
    Int(i128),
    Float(f64),
}

/// Splits a number value into int or float, as Python keeps them apart.
fn number(value: &Value) -> Number {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Number(n)) if !n.is_f64() => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .map_or(Number::Float(n.as_f64().unwrap_or(f64::NAN)), Number::Int),
        Ok(serde_json::Value::Number(n)) => Number::Float(n.as_f64().unwrap_or(f64::NAN)),
        _ => Number::Float(f64::try_from(value.clone()).unwrap_or(f64::NAN)),
    }
}

/// Python's `repr(float)` (shortest round-trip digits, scientific below
/// 1e-4 and from 1e16), or `json.dumps`' spelling of non-finite values.
pub(super) fn python_float_repr(f: f64, json: bool) -> String {
    if f.is_nan() {
        return if json { "NaN" } else { "nan" }.to_string();
    }
    if f.is_infinite() {
        let s = if json { "Infinity" } else { "inf" };
        return if f < 0.0 {
            format!("-{s}")
        } else {
            s.to_string()
        };
    }
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let plain = format!("{f}");
        if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Widest `tojson` indent: Python's `json.dumps` takes any, but a
/// template asking for trillions of spaces (the fuzzer did) must fail, not
/// abort the process on the allocation.
const MAX_JSON_INDENT: usize = 1024;

/// `transformers`' `tojson` filter: `json.dumps(x, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)`.
fn tojson_filter(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => {
                let n = usize::try_from(i64::try_from(v)?).unwrap_or(0);
                if n > MAX_JSON_INDENT {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        format!("tojson indent {n} is above {MAX_JSON_INDENT}"),
                    ));
                }
                " ".repeat(n)
            }
        }),
    };
    let separators = match kwargs.get::<Option<Vec<String>>>("separators")? {
        Some(seps) => match seps.as_slice() {
            [item, key] => Some((item.clone(), key.clone())),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson separators must be a pair (item_separator, key_separator)",
                ))
            }
        },
        None => None,
    };
    kwargs.assert_all_used()?;
    // Measured first, without keeping it: a repeated sequence is only as
    // large as its serialization says.
    check_sequence_length(&value)?;
    let mut sink = CappedBuffer::default();
    if serde_json::to_writer(&mut sink, &value).is_err() && sink.overflowed {
        return Err(OutputTooLarge.into());
    }
    let json = serde_json::to_value(&value)
        .map_err(|e| Error::new(ErrorKind::BadSerialization, e.to_string()))?;
    let options = DumpOptions {
        ensure_ascii,
        sort_keys,
        // json.dumps: ", " between items unless indenting, then ",".
        item_sep: separators.as_ref().map_or_else(
            || if indent.is_some() { "," } else { ", " }.to_string(),
            |s| s.0.clone(),
        ),
        key_sep: separators.map_or_else(|| ": ".to_string(), |s| s.1),
        indent,
    };
    let mut out = String::new();
    python_json_dumps(&json, &options, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

/// The `json.dumps` options templates use.
struct DumpOptions {
    ensure_ascii: bool,
    sort_keys: bool,
    item_sep: String,
    key_sep: String,
    indent: Option<String>,
}

/// Python's `json.dumps`, byte for byte, for JSON values.
fn python_json_dumps(value: &serde_json::Value, o: &DumpOptions, depth: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, depth: usize| {
        if let Some(indent) = &o.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    };
    match value {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => out.push_str(&i.to_string()),
            (_, Some(u)) => out.push_str(&u.to_string()),
            _ => out.push_str(&python_float_repr(n.as_f64().unwrap_or(f64::NAN), true)),
        },
        J::String(s) => json_string(s, o.ensure_ascii, out),
        J::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                python_json_dumps(item, o, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        J::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            let mut entries: Vec<(&String, &serde_json::Value)> = map.iter().collect();
            if o.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(&o.item_sep);
                }
                newline(out, depth + 1);
                json_string(key, o.ensure_ascii, out);
                out.push_str(&o.key_sep);
                python_json_dumps(item, o, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

/// A JSON string literal as Python's `json` module escapes it.
fn json_string(s: &str, ensure_ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `datetime.now().strftime(format)` for the common directives, in UTC
/// (servers run in UTC; `transformers` uses the local zone).
fn strftime_utc_now(format: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    strftime(secs, format)
}

/// Formats a UNIX time (UTC) with Python's `strftime` directives.
pub(super) fn strftime(unix_secs: u64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = i64::try_from(unix_secs / 86_400).unwrap_or(0);
    let secs_of_day = unix_secs % 86_400;
    let (hour, minute, second) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let month_idx = usize::try_from(month - 1).unwrap_or(0);
    let day_of_year = cumulative[month_idx] + day + i64::from(leap && month > 2);
    let month_name = MONTHS[month_idx];
    let day_name = DAYS[weekday];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year % 100),
            Some('m') => write!(out, "{month:02}"),
            Some('d') => write!(out, "{day:02}"),
            Some('-') => match chars.next() {
                Some('d') => write!(out, "{day}"),
                Some('m') => write!(out, "{month}"),
                Some(other) => write!(out, "%-{other}"),
                None => write!(out, "%-"),
            },
            Some('H') => write!(out, "{hour:02}"),
            Some('I') => write!(out, "{hour12:02}"),
            Some('M') => write!(out, "{minute:02}"),
            Some('S') => write!(out, "{second:02}"),
            Some('p') => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            Some('B') => write!(out, "{month_name}"),
            Some('b') => write!(out, "{}", &month_name[..3]),
            Some('A') => write!(out, "{day_name}"),
            Some('a') => write!(out, "{}", &day_name[..3]),
            Some('j') => write!(out, "{day_of_year:03}"),
            Some('%') => write!(out, "%"),
            Some(other) => write!(out, "%{other}"),
            None => write!(out, "%"),
        };
    }
    out
}
