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
//! byte for byte (`python.rs`). The `{% generation %}` tag of
//! transformers' assistant-mask extension becomes a no-op block
//! (`generation_tags.rs`). Where a model keeps its template: `source.rs`.
//!
//! A template is code from a model repository, so a render is bounded: at
//! most [`MAX_RENDERED_BYTES`] of output (also for one value printed or
//! passed to `tojson`), and at most [`RENDER_FUEL`] template instructions,
//! so `{{ messages * 10**9 }}` or an endless loop fails the request instead
//! of filling the memory or holding a thread (jinja2's sandbox stops the
//! first with a `MemoryError` or a `range` limit, not the second).
//! What no bound here reaches: minijinja builds a string inside one
//! operation (`seq ~ ''`, `seq|string`) without a size limit, and repeats a
//! sequence up to 100 million items, so a template written to do it
//! (`{{ (messages * 49999999) ~ '' }}`) can still take gigabytes; the
//! fuzzer found it. Only a template does that (messages, tools and
//! kwargs from clients cannot), and the template is the operator's, as in
//! `transformers`, whose sandbox does not stop it either.

mod bounds;
mod generation_tags;
mod python;
mod source;

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::value::Serde;
use minijinja::{Environment, Error, ErrorKind, Value};
use model_files::gguf::GgufFile;
use model_files::{ModelFormat, ModelSource};

use crate::tokenizer::{Tokenizer, TokenizerError};
use bounds::{CappedBuffer, OutputTooLarge};
use generation_tags::rewrite_generation_tags;
use python::{python_like_environment, RaisedByTemplate};
use source::{gguf_templates, hf_dir_templates};

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
    /// Whether the template reads `tools` at all (a request with tools
    /// is refused otherwise: they would vanish from the prompt).
    reads_tools: bool,
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
        let mut env =
            python_like_environment().map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        env.add_template_owned(MAIN, rewrite_generation_tags(template))
            .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        if let Some(tool_use) = tool_use_template {
            env.add_template_owned(TOOL_USE, rewrite_generation_tags(tool_use))
                .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        }
        Ok(Self {
            env,
            has_tool_use: tool_use_template.is_some(),
            reads_tools: tool_use_template.is_some() || template.contains("tools"),
            special,
        })
    }

    /// `--chat-template`: a file's template, or the argument itself when
    /// no such file exists and it looks like a template (vLLM's rule).
    pub fn from_flag(given: &str, tokenizer: &Tokenizer) -> Result<Self, ChatTemplateError> {
        let special = SpecialTokens::from_tokenizer(tokenizer);
        let path = std::path::Path::new(given);
        if path.is_file() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ChatTemplateError::Syntax(format!("{given}: {e}")))?;
            return Self::new(&text, None, special);
        }
        if given.contains("{{") || given.contains("{%") {
            return Self::new(given, None, special);
        }
        Err(ChatTemplateError::Syntax(format!(
            "--chat-template {given}: no such file, and not a template"
        )))
    }

    /// Whether the template renders `tools`.
    pub fn reads_tools(&self) -> bool {
        self.reads_tools
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
            ctx.insert(key.clone(), Value::from(Serde(value)));
        }
        let optional =
            |v: Option<&serde_json::Value>| v.map_or(Value::from(()), |v| Value::from(Serde(v)));
        ctx.insert("messages".into(), Value::from(Serde(messages)));
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
        // A panic inside minijinja (2.x had one in its repetition
        // arithmetic) fails this render, never the thread that serves
        // other requests.
        let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            template.render_captured_to(ctx, &mut out)
        }))
        .map_err(|_| {
            ChatTemplateError::Render("the template panicked inside minijinja".to_owned())
        })?;
        if out.overflowed {
            return Err(ChatTemplateError::TooLarge(format!(
                "the prompt would exceed {MAX_RENDERED_BYTES} bytes"
            )));
        }
        rendered.map_err(classify_render_error)?;
        String::from_utf8(out.bytes).map_err(|e| ChatTemplateError::Render(e.to_string()))
    }
}

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
    use super::python::{python_float_repr, strftime};
    use super::source::templates_from_config;
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
            "{{ messages * 100000000 * 100000000 }}",
            "{% for m in messages * 100000000 %}{% endfor %}",
            "{{ (messages * 50000000) | list | length }}",
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
        // Within minijinja's repetition cap, yet too long to print.
        let err = template("{{ messages * 10000000 }}")
            .render(&messages, false, None)
            .unwrap_err();
        assert!(matches!(err, ChatTemplateError::TooLarge(_)), "{err}");
        // Found by the fuzzer as a panic (an unchecked length product in
        // minijinja where overflow checks are on) and an abort (a tojson
        // indent of trillions of spaces): both fail the render.
        for source in [
            "{{ messages * 4 * 0552 ** 7 }}",
            "{{ messages | tojson(indent=66666666666662) }}",
        ] {
            let err = template(source).render(&messages, false, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    ChatTemplateError::Render(_) | ChatTemplateError::TooLarge(_)
                ),
                "{source}: {err}"
            );
        }
        // An emptied repetition (the fuzzer's `messages*4*0**5*9**6*25*25`)
        // is empty at once, printed or through tojson.
        for source in [
            "{{ messages * 4 * 0 * 531441 * 625 }}",
            "{{ (messages * 4 * 0 * 531441 * 625) | tojson }}",
            "{% for m in messages * 4 * 0 * 1000000000 %}{{ m }}{% endfor %}[]",
        ] {
            let started = std::time::Instant::now();
            assert_eq!(
                template(source).render(&messages, false, None).unwrap(),
                "[]"
            );
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{source}"
            );
        }
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
