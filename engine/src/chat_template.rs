//! Chat messages -> prompt text, rendered the way `transformers`'
//! `apply_chat_template(..., tokenize=False)` renders it, so a chat request
//! to us yields the same prompt as to a `transformers`-based server.
//!
//! The template comes from `chat_template.jinja`, `tokenizer_config.json`'s
//! `chat_template` (a string, or a list of `{name, template}` where we pick
//! `default`, and `tool_use` when tools are given) or `chat_template.json`
//! of an HF folder, or the GGUF key `tokenizer.chat_template`.
//!
//! `transformers` renders with jinja2 (`utils/chat_template_utils.py`):
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`
//! with loop controls, no trailing-newline keeping, the globals
//! `raise_exception` and `strftime_now`, and a `tojson` filter that is
//! Python's `json.dumps` (`ensure_ascii=False`, `indent`, `separators`,
//! `sort_keys`). We reproduce that on minijinja: Python string/dict/list
//! methods through `minijinja-contrib`'s pycompat, Python's way of printing
//! `None`/`True`/floats/lists/dicts through a formatter, and `json.dumps`
//! byte for byte in [`python_json_dumps`]. The `{% generation %}` tag of
//! transformers' assistant-mask extension becomes a no-op block.
//!
//! A template is code from a model repository, so a render is bounded: at
//! most [`MAX_RENDERED_BYTES`] of output (also for one value printed or
//! passed to `tojson`), and at most [`RENDER_FUEL`] template instructions,
//! so `{{ messages * 10**9 }}` or an endless loop fails the request instead
//! of filling the memory or holding a thread (jinja2's sandbox stops the
//! first with a `MemoryError` or a `range` limit, not the second).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Output, State, Value};
use model_files::gguf::GgufFile;
use model_files::{ModelFormat, ModelSource};

use crate::tokenizer::{read_json_if_exists, Tokenizer, TokenizerError};

/// Name under which the main template is compiled (no extension, so no
/// auto-escaping, like jinja2's default).
const MAIN: &str = "chat_template";
/// Most bytes one render produces: several times what any context window
/// holds (a million tokens of text are about 4 MiB), and small enough that
/// producing it takes about a second, not the tens of seconds a template
/// that multiplies its input up to a larger bound took under the fuzzer.
pub const MAX_RENDERED_BYTES: usize = 16 << 20;
/// Most template instructions one render runs (minijinja's fuel): a render
/// of a long conversation with tools takes well under a million.
pub const RENDER_FUEL: u64 = 10_000_000;
/// Name of the optional `tool_use` variant.
const TOOL_USE: &str = "chat_template_tool_use";

/// Why a chat template could not be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The template called `raise_exception(message)`: the conversation is
    /// one the model does not accept (e.g. roles out of order). A client
    /// error, not a server fault.
    #[error("chat template rejected the conversation: {0}")]
    Raised(String),
    /// The template does not compile.
    #[error("chat template has a syntax error: {0}")]
    Syntax(String),
    /// Rendering failed for another reason (undefined attribute, bad
    /// operand types, ...).
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// Rendering would produce more than [`MAX_RENDERED_BYTES`], or run
    /// more than [`RENDER_FUEL`] instructions.
    #[error("chat template render exceeds its bounds: {0}")]
    TooLarge(String),
    /// `messages` is not a JSON array.
    #[error("chat messages must be a JSON array, got {0}")]
    InvalidMessages(&'static str),
    /// `chat_template` in a config file has a shape we do not know.
    #[error("cannot use chat template from {source_name}: {reason}")]
    BadConfig {
        /// The file or key it came from.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A side file could not be read or parsed.
    #[error(transparent)]
    Files(#[from] TokenizerError),
    /// The GGUF file could not be read.
    #[error("cannot read GGUF file: {0}")]
    Gguf(#[from] model_files::gguf::GgufError),
}

/// The special-token strings a template can use (`bos_token`, ...), which
/// `transformers` passes from the tokenizer's `special_tokens_map`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token`.
    pub bos_token: Option<String>,
    /// `eos_token`.
    pub eos_token: Option<String>,
    /// `unk_token`.
    pub unk_token: Option<String>,
    /// `pad_token`.
    pub pad_token: Option<String>,
}

impl SpecialTokens {
    /// The strings the tokenizer knows.
    pub fn from_tokenizer(tokenizer: &Tokenizer) -> Self {
        Self {
            bos_token: tokenizer.bos_token().map(str::to_string),
            eos_token: tokenizer.eos_token().map(str::to_string),
            unk_token: tokenizer.unk_token().map(str::to_string),
            pad_token: tokenizer.pad_token().map(str::to_string),
        }
    }
}

/// Optional inputs of a render beyond messages and the generation prompt.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderExtras<'a> {
    /// JSON schemas of tools (`tools`), passed as given.
    pub tools: Option<&'a serde_json::Value>,
    /// Retrieval documents (`documents`), passed as given.
    pub documents: Option<&'a serde_json::Value>,
    /// Extra template variables (`chat_template_kwargs` of vLLM's API,
    /// e.g. `enable_thinking`); they override the special tokens.
    pub kwargs: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// A compiled chat template plus the special tokens it may use.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    has_tool_use: bool,
    special: SpecialTokens,
}

impl ChatTemplate {
    /// The template of a resolved `--model`, `None` when it has none (a
    /// base model: the chat API is then refused, as vLLM does).
    pub fn from_model_source(
        source: &ModelSource,
        tokenizer: &Tokenizer,
    ) -> Result<Option<Self>, ChatTemplateError> {
        let special = SpecialTokens::from_tokenizer(tokenizer);
        let found = match source.format {
            ModelFormat::Gguf => gguf_templates(&GgufFile::open(&source.path)?)?,
            ModelFormat::HfFolder => hf_dir_templates(&source.path)?,
        };
        found
            .map(|(main, tool_use)| Self::new(&main, tool_use.as_deref(), special))
            .transpose()
    }

    /// The template of an HF folder (see the module doc for where it looks).
    pub fn from_hf_dir(
        dir: &Path,
        special: SpecialTokens,
    ) -> Result<Option<Self>, ChatTemplateError> {
        hf_dir_templates(dir)?
            .map(|(main, tool_use)| Self::new(&main, tool_use.as_deref(), special))
            .transpose()
    }

    /// The template in GGUF metadata (`tokenizer.chat_template`, and
    /// `tokenizer.chat_template.tool_use` if present).
    pub fn from_gguf(
        file: &GgufFile,
        special: SpecialTokens,
    ) -> Result<Option<Self>, ChatTemplateError> {
        gguf_templates(file)?
            .map(|(main, tool_use)| Self::new(&main, tool_use.as_deref(), special))
            .transpose()
    }

    /// Compiles `template` (and its `tool_use` variant), reporting syntax
    /// errors now rather than at the first request.
    pub fn new(
        template: &str,
        tool_use_template: Option<&str>,
        special: SpecialTokens,
    ) -> Result<Self, ChatTemplateError> {
        let mut env = python_like_environment();
        env.add_template_owned(MAIN, rewrite_generation_tags(template))
            .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        if let Some(tool_use) = tool_use_template {
            env.add_template_owned(TOOL_USE, rewrite_generation_tags(tool_use))
                .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        }
        Ok(Self {
            env,
            has_tool_use: tool_use_template.is_some(),
            special,
        })
    }

    /// Renders `messages` (a JSON array of `{role, content, ...}`), ending
    /// with the assistant header when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, ChatTemplateError> {
        self.render_with(
            messages,
            add_generation_prompt,
            RenderExtras {
                tools,
                ..RenderExtras::default()
            },
        )
    }

    /// [`ChatTemplate::render`] with documents and extra template variables.
    pub fn render_with(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        extras: RenderExtras<'_>,
    ) -> Result<String, ChatTemplateError> {
        if !messages.is_array() {
            return Err(ChatTemplateError::InvalidMessages(json_kind(messages)));
        }
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        let special = [
            ("bos_token", &self.special.bos_token),
            ("eos_token", &self.special.eos_token),
            ("unk_token", &self.special.unk_token),
            ("pad_token", &self.special.pad_token),
        ];
        for (name, token) in special {
            if let Some(token) = token {
                ctx.insert(name.to_string(), Value::from(token.as_str()));
            }
        }
        for (key, value) in extras.kwargs.into_iter().flatten() {
            ctx.insert(key.clone(), Value::from_serialize(value));
        }
        let optional =
            |v: Option<&serde_json::Value>| v.map_or(Value::from(()), Value::from_serialize);
        ctx.insert("messages".into(), Value::from_serialize(messages));
        ctx.insert("tools".into(), optional(extras.tools));
        ctx.insert("documents".into(), optional(extras.documents));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        let name = if extras.tools.is_some() && self.has_tool_use {
            TOOL_USE
        } else {
            MAIN
        };
        let template = self
            .env
            .get_template(name)
            .map_err(|e| ChatTemplateError::Render(e.to_string()))?;
        let mut out = CappedBuffer::default();
        let rendered = template.render_captured_to(ctx, &mut out);
        if out.overflowed {
            return Err(ChatTemplateError::TooLarge(format!(
                "the prompt would exceed {MAX_RENDERED_BYTES} bytes"
            )));
        }
        rendered.map_err(classify_render_error)?;
        String::from_utf8(out.bytes).map_err(|e| ChatTemplateError::Render(e.to_string()))
    }
}

/// An in-memory writer that fails once more than [`MAX_RENDERED_BYTES`]
/// would be written (then it keeps what it had, and says so).
#[derive(Debug, Default)]
struct CappedBuffer {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other(OutputTooLarge));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One value printed or serialized inside a render would exceed
/// [`MAX_RENDERED_BYTES`]; carried as the source of the minijinja error.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("a value of the template exceeds {MAX_RENDERED_BYTES} bytes")]
struct OutputTooLarge;

impl From<OutputTooLarge> for Error {
    fn from(e: OutputTooLarge) -> Self {
        Error::new(ErrorKind::InvalidOperation, e.to_string()).with_source(e)
    }
}

/// The message a template passed to `raise_exception`, carried as the
/// source of the minijinja error so we can tell it from other failures.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RaisedByTemplate(String);

fn classify_render_error(err: Error) -> ChatTemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedByTemplate>() {
            return ChatTemplateError::Raised(raised.0.clone());
        }
        if let Some(too_large) = e.downcast_ref::<OutputTooLarge>() {
            return ChatTemplateError::TooLarge(too_large.to_string());
        }
        source = e.source();
    }
    if err.kind() == ErrorKind::OutOfFuel {
        return ChatTemplateError::TooLarge(format!("more than {RENDER_FUEL} instructions"));
    }
    ChatTemplateError::Render(err.to_string())
}

/// jinja2 as `transformers` configures it, on minijinja.
fn python_like_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
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
    env
}

/// Prints values as Python's `str()` does (`None`, `True`, `[1, 'a']`),
/// where minijinja would print `none`, `true`, `[1, "a"]`.
fn python_formatter(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
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
fn python_float_repr(f: f64, json: bool) -> String {
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
                let n = i64::try_from(v)?;
                " ".repeat(usize::try_from(n).unwrap_or(0))
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
fn strftime(unix_secs: u64, format: &str) -> String {
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

/// Replaces `{% generation %}`/`{% endgeneration %}` (transformers'
/// assistant-mask extension, which minijinja does not know) with an
/// always-true `if` block, keeping the whitespace-control markers.
fn rewrite_generation_tags(src: &str) -> String {
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

/// `(default, tool_use)` templates of an HF folder, in `transformers`'
/// order of precedence.
fn hf_dir_templates(dir: &Path) -> Result<Option<(String, Option<String>)>, ChatTemplateError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|source| TokenizerError::Io {
            path: jinja.clone(),
            source,
        })?;
        return Ok(Some((text, None)));
    }
    let config_path = dir.join("tokenizer_config.json");
    if let Some(config) = read_json_if_exists(&config_path)? {
        if let Some(value) = config.get("chat_template") {
            return templates_from_config(value, &config_path.display().to_string());
        }
    }
    let json_path = dir.join("chat_template.json");
    if let Some(config) = read_json_if_exists(&json_path)? {
        if let Some(value) = config.get("chat_template") {
            return templates_from_config(value, &json_path.display().to_string());
        }
    }
    Ok(None)
}

/// A `chat_template` value: a string, or a list of `{name, template}`.
fn templates_from_config(
    value: &serde_json::Value,
    source_name: &str,
) -> Result<Option<(String, Option<String>)>, ChatTemplateError> {
    let bad = |reason: String| ChatTemplateError::BadConfig {
        source_name: source_name.to_string(),
        reason,
    };
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => Ok(Some((s.clone(), None))),
        serde_json::Value::Array(items) => {
            let mut named = BTreeMap::new();
            for item in items {
                let name = item.get("name").and_then(serde_json::Value::as_str);
                let template = item.get("template").and_then(serde_json::Value::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => {
                        named.insert(n.to_string(), t.to_string());
                    }
                    _ => return Err(bad("list entries must be {name, template} strings".into())),
                }
            }
            let tool_use = named.get("tool_use").cloned();
            match named.remove("default") {
                Some(default) => Ok(Some((default, tool_use))),
                None => Err(bad(format!(
                    "several templates and none named `default` (have: {})",
                    named.keys().cloned().collect::<Vec<_>>().join(", ")
                ))),
            }
        }
        other => Err(bad(format!(
            "expected a string or a list, got {}",
            json_kind(other)
        ))),
    }
}

/// `(default, tool_use)` templates in GGUF metadata.
fn gguf_templates(file: &GgufFile) -> Result<Option<(String, Option<String>)>, ChatTemplateError> {
    let text = |key: &str| -> Result<Option<String>, ChatTemplateError> {
        match file.get(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| {
                ChatTemplateError::BadConfig {
                    source_name: format!("GGUF key {key}"),
                    reason: "not a string".into(),
                }
            }),
        }
    };
    let tool_use = text("tokenizer.chat_template.tool_use")?;
    Ok(text("tokenizer.chat_template")?.map(|main| (main, tool_use)))
}

/// A JSON value's type, in words, for error messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template(src: &str) -> ChatTemplate {
        ChatTemplate::new(
            src,
            None,
            SpecialTokens {
                bos_token: Some("<s>".into()),
                eos_token: Some("</s>".into()),
                ..SpecialTokens::default()
            },
        )
        .unwrap()
    }

    #[test]
    fn raise_exception_is_a_typed_error_with_the_message() {
        let t = template(
            "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok",
        );
        let err = t
            .render(&json!([{"role": "assistant", "content": "x"}]), false, None)
            .unwrap_err();
        match err {
            ChatTemplateError::Raised(msg) => assert_eq!(msg, "Conversation must start with user"),
            other => panic!("expected Raised, got {other:?}"),
        }
        assert_eq!(
            t.render(&json!([{"role": "user", "content": "x"}]), false, None)
                .unwrap(),
            "ok"
        );
    }

    #[test]
    fn malformed_tags_are_syntax_errors_not_panics() {
        for src in [
            "{%}",
            "a{%}b%}",
            "{%-}",
            "{%",
            "%}{%",
            "{% generation %}{%}",
            "é{%}é",
        ] {
            let got = ChatTemplate::new(src, None, SpecialTokens::default());
            assert!(
                matches!(got, Err(ChatTemplateError::Syntax(_)) | Ok(_)),
                "{src}"
            );
        }
        assert!(matches!(
            ChatTemplate::new("{%}", None, SpecialTokens::default()),
            Err(ChatTemplateError::Syntax(_))
        ));
        assert_eq!(rewrite_generation_tags("{%}x%}"), "{%}x%}");
        assert_eq!(
            rewrite_generation_tags("{%- generation -%}a{% endgeneration %}"),
            "{%- if true -%}a{% endif %}"
        );
    }

    #[test]
    fn syntax_and_render_errors_are_typed() {
        let err = ChatTemplate::new("{% for %}", None, SpecialTokens::default()).unwrap_err();
        assert!(matches!(err, ChatTemplateError::Syntax(_)), "{err}");
        let t = template("{{ messages[0].content.nope.deeper }}");
        let err = t
            .render(&json!([{"role": "user", "content": "x"}]), false, None)
            .unwrap_err();
        assert!(matches!(err, ChatTemplateError::Render(_)), "{err}");
        let err = t.render(&json!({"role": "user"}), false, None).unwrap_err();
        assert!(matches!(
            err,
            ChatTemplateError::InvalidMessages("an object")
        ));
    }

    /// A template from a model repository cannot fill the memory or hold a
    /// thread: huge repeated sequences (printed, as Python prints them,
    /// or through `tojson`) and endless loops fail the render, quickly.
    /// The first came from the fuzzer (`{{messages*\n48E8}}` ran past its
    /// 10 s timeout).
    #[test]
    fn runaway_templates_fail_within_their_bounds() {
        let messages = json!([{"role": "user", "content": "hello"}]);
        for source in [
            "{{ messages * 4800000000 }}",
            "{{ [messages * 100000000] }}",
            "{{ {'a': messages * 100000000} }}",
            "{{ (messages * 100000000) | tojson }}",
            "{{ 'ab' * 100000000 }}{{ 'ab' * 100000000 }}",
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
        ] {
            let started = std::time::Instant::now();
            let err = template(source).render(&messages, false, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    ChatTemplateError::TooLarge(_) | ChatTemplateError::Render(_)
                ),
                "{source}: {err}"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{source} took {:?}",
                started.elapsed()
            );
        }
        let err = template("{{ messages * 4800000000 }}")
            .render(&messages, false, None)
            .unwrap_err();
        assert!(matches!(err, ChatTemplateError::TooLarge(_)), "{err}");
    }

    #[test]
    fn python_methods_and_printing() {
        let t = template(
            "{{ messages[0].content.strip() }}|{{ messages[0].content.startswith('  hi') }}|\
             {{ 'a,b'.split(',') }}|{{ none }}|{{ tools }}|{{ 1.0 }}|{{ bos_token }}{{ eos_token }}|\
             {% for m in messages %}{% if loop.index > 0 %}{% break %}{% endif %}{% endfor %}{{ x }}",
        );
        let out = t
            .render_with(
                &json!([{"role": "user", "content": "  hi  "}]),
                false,
                RenderExtras {
                    kwargs: json!({"x": "kw"}).as_object(),
                    ..RenderExtras::default()
                },
            )
            .unwrap();
        assert_eq!(out, "hi|True|['a', 'b']|None|None|1.0|<s></s>|kw");
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = template("{{ tools | tojson }}\n{{ tools[0] | tojson(indent=2) }}\n{{ tools | tojson(separators=(',', ':'), sort_keys=true) }}");
        let tools = json!([{"name": "f", "b": [1, 2.5, 1e-7, "é\"<>"], "a": {}}]);
        let out = t.render(&json!([]), false, Some(&tools)).unwrap();
        assert_eq!(
            out,
            "[{\"name\": \"f\", \"b\": [1, 2.5, 1e-07, \"é\\\"<>\"], \"a\": {}}]\n\
             {\n  \"name\": \"f\",\n  \"b\": [\n    1,\n    2.5,\n    1e-07,\n    \"é\\\"<>\"\n  ],\n  \"a\": {}\n}\n\
             [{\"a\":{},\"b\":[1,2.5,1e-07,\"é\\\"<>\"],\"name\":\"f\"}]"
        );
    }

    #[test]
    fn trims_blocks_and_drops_one_trailing_newline() {
        let t = template("{% for m in messages %}\n  {% if true %}\n[{{ m.role }}]\n  {% endif %}\n{% endfor %}\n");
        let out = t
            .render(&json!([{"role": "a"}, {"role": "b"}]), false, None)
            .unwrap();
        assert_eq!(out, "[a]\n[b]\n");
    }

    #[test]
    fn generation_tags_are_no_ops() {
        let t = template("{%- for m in messages %}{% generation -%}  {{ m.content }}{%- endgeneration %}{% endfor %}");
        let out = t
            .render(&json!([{"role": "assistant", "content": "x"}]), false, None)
            .unwrap();
        assert_eq!(out, "x");
    }

    #[test]
    fn config_template_list_picks_default_and_tool_use() {
        let v =
            json!([{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]);
        let (main, tool) = templates_from_config(&v, "cfg").unwrap().unwrap();
        assert_eq!((main.as_str(), tool.as_deref()), ("D", Some("T")));
        let err =
            templates_from_config(&json!([{"name": "x", "template": "X"}]), "cfg").unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
        let t = ChatTemplate::new("D", Some("T"), SpecialTokens::default()).unwrap();
        assert_eq!(t.render(&json!([]), false, None).unwrap(), "D");
        assert_eq!(t.render(&json!([]), false, Some(&json!([]))).unwrap(), "T");
    }

    #[test]
    fn hf_dir_prefers_chat_template_jinja() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            ChatTemplate::from_hf_dir(dir.path(), SpecialTokens::default())
                .unwrap()
                .is_none()
        );
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"chat_template": "C"}"#,
        )
        .unwrap();
        let t = ChatTemplate::from_hf_dir(dir.path(), SpecialTokens::default())
            .unwrap()
            .unwrap();
        assert_eq!(t.render(&json!([]), false, None).unwrap(), "C");
        std::fs::write(dir.path().join("chat_template.jinja"), "J\n").unwrap();
        let t = ChatTemplate::from_hf_dir(dir.path(), SpecialTokens::default())
            .unwrap()
            .unwrap();
        assert_eq!(t.render(&json!([]), false, None).unwrap(), "J");
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        assert_eq!(
            strftime(
                1_709_211_909,
                "%Y-%m-%d %H:%M:%S %a %A %b %B %j %I%p %-d %y %%"
            ),
            "2024-02-29 13:05:09 Thu Thursday Feb February 060 01PM 29 24 %"
        );
    }

    #[test]
    fn python_float_repr_matches_python() {
        for (f, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e-5, "1.5e-05"),
            (123456789.125, "123456789.125"),
            (0.0001, "0.0001"),
        ] {
            assert_eq!(python_float_repr(f, false), s);
        }
    }
}
