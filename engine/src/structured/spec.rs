//! The structured-output fields of an OpenAI or vLLM request, read into
//! one [`GrammarSpec`].
//!
//! Accepted, as vLLM accepts them: OpenAI's `response_format`
//! (`json_object`, `json_schema`), vLLM's `structured_outputs` object
//! (`json`, `regex`, `choice`, `grammar`, `json_object`), and the older
//! top-level `guided_json`, `guided_regex`, `guided_choice`,
//! `guided_grammar`. A request names at most one of them.

use frontend::ProviderError;
use serde_json::{Map, Value};

/// What a constrained request's output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum GrammarSpec {
    /// A JSON Schema (`response_format.json_schema.schema`, `guided_json`).
    JsonSchema(Value),
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// A regular expression the whole output matches.
    Regex(String),
    /// One of these strings, exactly.
    Choice(Vec<String>),
    /// A Lark grammar (llguidance's dialect; vLLM's `guided_grammar`).
    Lark(String),
}

/// Where JSON output may hold whitespace between its tokens.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum JsonWhitespace {
    /// Up to [`MAX_JSON_WHITESPACE`] blanks or newlines between tokens:
    /// pretty-printed JSON is allowed, a run of blanks that never ends
    /// (which small models fall into) is not.
    #[default]
    Bounded,
    /// None at all (vLLM's `disable_any_whitespace`).
    None,
    /// A regex for each run (vLLM's `whitespace_pattern`).
    Pattern(String),
}

/// Longest run of JSON whitespace by default.
pub const MAX_JSON_WHITESPACE: usize = 12;

/// A spec, the `param` it came from (for errors that point at it), and
/// the JSON whitespace rule.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecSource {
    pub param: String,
    pub spec: GrammarSpec,
    pub whitespace: JsonWhitespace,
}

impl SpecSource {
    /// A spec with the default whitespace rule.
    pub fn new(param: impl Into<String>, spec: GrammarSpec) -> Self {
        Self {
            param: param.into(),
            spec,
            whitespace: JsonWhitespace::default(),
        }
    }
}

/// Reads the one structured-output field a request sets, if any.
/// `response_format` is OpenAI's typed field; `extra` holds the fields the
/// OpenAI types do not name (vLLM's). Two fields at once is a 400, as in
/// vLLM ("only one kind of structured output").
pub fn from_request(
    response_format: Option<&Value>,
    extra: &Map<String, Value>,
) -> Result<Option<SpecSource>, ProviderError> {
    let mut found: Vec<SpecSource> = Vec::new();
    let mut whitespace = match extra
        .get("guided_whitespace_pattern")
        .and_then(Value::as_str)
    {
        Some(p) => JsonWhitespace::Pattern(p.to_owned()),
        None => JsonWhitespace::Bounded,
    };
    if let Some(spec) = response_format_spec(response_format)? {
        let param = match spec {
            GrammarSpec::JsonSchema(_) => "response_format.json_schema.schema",
            _ => "response_format",
        };
        found.push(SpecSource::new(param, spec));
    }
    if let Some(so) = extra.get("structured_outputs").filter(|v| !v.is_null()) {
        let Value::Object(so) = so else {
            return Err(ProviderError::invalid(
                "structured_outputs",
                "structured_outputs must be an object",
            ));
        };
        for (key, value) in so {
            if value.is_null() {
                continue;
            }
            let param = format!("structured_outputs.{key}");
            let spec = match key.as_str() {
                "json" => Some(json_schema_value(&param, value)?),
                "json_object" => value.as_bool().unwrap_or(false).then_some(GrammarSpec::JsonObject),
                "regex" => Some(GrammarSpec::Regex(string(&param, value)?)),
                "choice" => Some(GrammarSpec::Choice(choices(&param, value)?)),
                "grammar" => Some(GrammarSpec::Lark(string(&param, value)?)),
                "disable_any_whitespace" => {
                    if value.as_bool() == Some(true) {
                        whitespace = JsonWhitespace::None;
                    }
                    None
                }
                "whitespace_pattern" => {
                    whitespace = JsonWhitespace::Pattern(string(&param, value)?);
                    None
                }
                // vLLM's backend knobs: one backend here, nothing to pick.
                "disable_fallback" | "disable_additional_properties" | "backend" => None,
                other => {
                    return Err(ProviderError::invalid(
                        &param,
                        format!(
                            "unsupported structured output '{other}': use json, json_object, regex, choice or grammar"
                        ),
                    ))
                }
            };
            if let Some(spec) = spec {
                found.push(SpecSource::new(param, spec));
            }
        }
    }
    for key in [
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
    ] {
        let Some(value) = extra.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let spec = match key {
            "guided_json" => json_schema_value(key, value)?,
            "guided_regex" => GrammarSpec::Regex(string(key, value)?),
            "guided_choice" => GrammarSpec::Choice(choices(key, value)?),
            _ => GrammarSpec::Lark(string(key, value)?),
        };
        found.push(SpecSource::new(key, spec));
    }
    if found.len() > 1 {
        let names: Vec<&str> = found.iter().map(|s| s.param.as_str()).collect();
        return Err(ProviderError::invalid(
            &found[1].param,
            format!(
                "only one kind of structured output may be set, got {}",
                names.join(", ")
            ),
        ));
    }
    Ok(found.pop().map(|s| SpecSource { whitespace, ..s }))
}

/// `response_format`: `text` (or absent) is no constraint.
fn response_format_spec(format: Option<&Value>) -> Result<Option<GrammarSpec>, ProviderError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(GrammarSpec::JsonObject)),
        Some("json_schema") => {
            let schema = format.pointer("/json_schema/schema").ok_or_else(|| {
                ProviderError::invalid(
                    "response_format.json_schema.schema",
                    "response_format of type json_schema needs json_schema.schema",
                )
            })?;
            Ok(Some(json_schema_value(
                "response_format.json_schema.schema",
                schema,
            )?))
        }
        _ => Err(ProviderError::invalid(
            "response_format",
            "response_format.type must be text, json_object or json_schema",
        )),
    }
}

/// A schema given as an object (or, as vLLM also takes it, a JSON string).
fn json_schema_value(param: &str, value: &Value) -> Result<GrammarSpec, ProviderError> {
    match value {
        Value::Object(_) | Value::Bool(_) => Ok(GrammarSpec::JsonSchema(value.clone())),
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(|v| v.is_object() || v.is_boolean())
            .map(GrammarSpec::JsonSchema)
            .ok_or_else(|| {
                ProviderError::invalid(param, "the JSON schema string is not a JSON object")
            }),
        _ => Err(ProviderError::invalid(
            param,
            "a JSON schema must be an object",
        )),
    }
}

fn string(param: &str, value: &Value) -> Result<String, ProviderError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| ProviderError::invalid(param, format!("{param} must be a string")))
}

fn choices(param: &str, value: &Value) -> Result<Vec<String>, ProviderError> {
    let list = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        ProviderError::invalid(
            param,
            format!("{param} must be a non-empty array of strings"),
        )
    })?;
    list.iter()
        .map(|v| string(param, v))
        .collect::<Result<Vec<_>, _>>()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    fn read(format: Value, extra: Value) -> Result<Option<SpecSource>, ProviderError> {
        let Value::Object(extra) = extra else {
            panic!("extra must be an object")
        };
        from_request(Some(&format), &extra)
    }

    fn spec(format: Value, extra: Value) -> Option<GrammarSpec> {
        read(format, extra).unwrap().map(|s| s.spec)
    }

    #[test]
    fn reads_every_field_vllm_accepts() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(spec(Value::Null, json!({})), None);
        assert_eq!(spec(json!({"type": "text"}), json!({})), None);
        assert_eq!(
            spec(json!({"type": "json_object"}), json!({})),
            Some(GrammarSpec::JsonObject)
        );
        assert_eq!(
            spec(
                json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": schema}}),
                json!({})
            ),
            Some(GrammarSpec::JsonSchema(schema.clone()))
        );
        assert_eq!(
            spec(Value::Null, json!({"guided_json": schema.to_string()})),
            Some(GrammarSpec::JsonSchema(schema.clone()))
        );
        assert_eq!(
            spec(
                Value::Null,
                json!({"structured_outputs": {"regex": "[0-9]+"}})
            ),
            Some(GrammarSpec::Regex("[0-9]+".into()))
        );
        assert_eq!(
            spec(Value::Null, json!({"guided_choice": ["yes", "no"]})),
            Some(GrammarSpec::Choice(vec!["yes".into(), "no".into()]))
        );
        assert_eq!(
            spec(
                Value::Null,
                json!({"structured_outputs": {"grammar": "start: \"a\""}})
            ),
            Some(GrammarSpec::Lark("start: \"a\"".into()))
        );
        assert_eq!(
            spec(
                Value::Null,
                json!({"structured_outputs": {"json_object": true}})
            ),
            Some(GrammarSpec::JsonObject)
        );
        let ws = |extra| read(Value::Null, extra).unwrap().unwrap().whitespace;
        assert_eq!(
            ws(
                json!({"structured_outputs": {"json_object": true, "disable_any_whitespace": true}})
            ),
            JsonWhitespace::None
        );
        assert_eq!(
            ws(json!({"guided_json": {"type": "object"}, "guided_whitespace_pattern": " ?"})),
            JsonWhitespace::Pattern(" ?".into())
        );
        assert_eq!(ws(json!({"guided_regex": "a"})), JsonWhitespace::Bounded);
    }

    #[test]
    fn malformed_fields_are_400s_naming_the_field() {
        let cases = [
            (json!({"type": "xml"}), json!({}), "response_format"),
            (
                json!({"type": "json_schema"}),
                json!({}),
                "response_format.json_schema.schema",
            ),
            (
                Value::Null,
                json!({"guided_json": "not json"}),
                "guided_json",
            ),
            (Value::Null, json!({"guided_regex": 7}), "guided_regex"),
            (Value::Null, json!({"guided_choice": []}), "guided_choice"),
            (
                Value::Null,
                json!({"guided_choice": ["a", 1]}),
                "guided_choice",
            ),
            (
                Value::Null,
                json!({"structured_outputs": "json"}),
                "structured_outputs",
            ),
            (
                Value::Null,
                json!({"structured_outputs": {"xml": "<a/>"}}),
                "structured_outputs.xml",
            ),
            (
                json!({"type": "json_object"}),
                json!({"guided_regex": "a"}),
                "guided_regex",
            ),
        ];
        for (format, extra, param) in cases {
            match read(format.clone(), extra.clone()) {
                Err(ProviderError::InvalidRequest { param: Some(p), .. }) => {
                    assert_eq!(p, param, "{format} {extra}")
                }
                other => panic!("{format} {extra}: {other:?}"),
            }
        }
    }
}
