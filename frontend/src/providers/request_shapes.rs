//! The loosely typed parts of an OpenAI chat request (`tools`,
//! `tool_choice`, an assistant's `tool_calls`, `image_url` parts,
//! `response_format`) read once into plain types, so each adapter
//! translates from typed values instead of poking at JSON; a malformed
//! shape is a 400 naming its parameter.

use crate::error::ProviderError;
use base64::Engine;
use serde_json::Value;

/// One function the model may call (`tools[i].function`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The function name.
    pub name: String,
    /// What it does, for the model.
    pub description: Option<String>,
    /// JSON Schema of its arguments (`None` when the client sent none).
    pub parameters: Option<Value>,
}

/// `tools`: the function tools of a request (other tool types are a 400).
pub fn tools(tools: Option<&Value>) -> Result<Vec<ToolSpec>, ProviderError> {
    let Some(tools) = tools else {
        return Ok(Vec::new());
    };
    let items = tools
        .as_array()
        .ok_or_else(|| ProviderError::invalid("tools", "tools must be an array"))?;
    items
        .iter()
        .map(|t| {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(ProviderError::invalid(
                    "tools",
                    "only tools of type `function` are supported by this provider",
                ));
            }
            let f = t
                .get("function")
                .ok_or_else(|| ProviderError::invalid("tools", "a tool needs `function`"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| ProviderError::invalid("tools", "a tool function needs `name`"))?;
            Ok(ToolSpec {
                name: name.to_owned(),
                description: f
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: f.get("parameters").cloned(),
            })
        })
        .collect()
}

/// `tool_choice`, as every provider can express it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (`"auto"`).
    Auto,
    /// No tool may be called (`"none"`).
    None,
    /// Some tool must be called (`"required"`).
    Required,
    /// This function must be called.
    Function(String),
}

/// Reads `tool_choice`; `None` when absent.
pub fn tool_choice(choice: Option<&Value>) -> Result<Option<ToolChoice>, ProviderError> {
    let Some(choice) = choice else {
        return Ok(None);
    };
    let bad = || {
        ProviderError::invalid(
            "tool_choice",
            "tool_choice must be \"auto\", \"none\", \"required\" or \
             {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )
    };
    match choice {
        Value::Null => Ok(None),
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" | "any" => Ok(Some(ToolChoice::Required)),
            _ => Err(bad()),
        },
        Value::Object(_) => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|n| Some(ToolChoice::Function(n.to_owned())))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// One call in an assistant message's `tool_calls`.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The call id that the `tool` message answering it names.
    pub id: String,
    /// The function called.
    pub name: String,
    /// The arguments, parsed from OpenAI's JSON string (an unparsable
    /// string is kept as a JSON string value).
    pub arguments: Value,
}

/// Reads an assistant message's `tool_calls`.
pub fn tool_calls(calls: Option<&Value>) -> Result<Vec<ToolCall>, ProviderError> {
    let Some(calls) = calls else {
        return Ok(Vec::new());
    };
    let bad = |what: &str| ProviderError::invalid("messages", format!("tool_calls: {what}"));
    calls
        .as_array()
        .ok_or_else(|| bad("must be an array"))?
        .iter()
        .map(|c| {
            let id = c
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a call needs `id`"))?;
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a call needs `function.name`"))?;
            let arguments = match c.pointer("/function/arguments") {
                Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Default::default()),
                Some(Value::String(s)) => {
                    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
                }
                Some(other) => other.clone(),
                None => Value::Object(Default::default()),
            };
            Ok(ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments,
            })
        })
        .collect()
}

/// The `tool_call_id` of a `tool` message as a string.
pub fn tool_call_id(id: Option<&Value>) -> Result<String, ProviderError> {
    match id {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(ProviderError::invalid(
            "messages",
            "a tool message needs `tool_call_id`",
        )),
    }
}

/// An `image_url` content part.
#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    /// A `data:` URL, decoded: the media type and the base64 payload as
    /// sent (still encoded, as most providers want it).
    Inline {
        /// `image/png`, ...
        mime_type: String,
        /// The base64 text after the comma.
        base64: String,
    },
    /// An `http(s)://` (or `gs://`) URL, to be fetched by the provider.
    Url(String),
}

impl Image {
    /// The image bytes of an inline image (a bad base64 payload is a 400).
    pub fn bytes(base64: &str) -> Result<Vec<u8>, ProviderError> {
        base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map_err(|e| ProviderError::invalid("messages", format!("bad base64 image data: {e}")))
    }
}

/// Reads an `image_url` part (`{"image_url": {"url": ...}}` or the
/// string shorthand) kept in `ContentPart::extra`.
pub fn image(part: &serde_json::Map<String, Value>) -> Result<Image, ProviderError> {
    let url = part
        .get("image_url")
        .and_then(|u| u.get("url").or(Some(u)))
        .and_then(Value::as_str)
        .ok_or_else(|| ProviderError::invalid("messages", "an image_url part needs `url`"))?;
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest
            .split_once(',')
            .ok_or_else(|| ProviderError::invalid("messages", "a data: URL needs a comma"))?;
        let Some(mime_type) = meta.strip_suffix(";base64") else {
            return Err(ProviderError::invalid(
                "messages",
                "image data: URLs must be base64 (`data:image/png;base64,...`)",
            ));
        };
        return Ok(Image::Inline {
            mime_type: mime_type.to_owned(),
            base64: data.to_owned(),
        });
    }
    Ok(Image::Url(url.to_owned()))
}

/// `response_format`, as providers without OpenAI's field express it.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormatKind {
    /// Free text (absent or `{"type": "text"}`).
    Text,
    /// JSON mode (`{"type": "json_object"}`).
    JsonObject,
    /// Structured output: `json_schema.schema`, when given.
    JsonSchema(Option<Value>),
}

impl ResponseFormatKind {
    /// Reads `response_format`; an unknown `type` is a 400.
    pub fn of(format: Option<&Value>) -> Result<Self, ProviderError> {
        let Some(format) = format.filter(|f| !f.is_null()) else {
            return Ok(Self::Text);
        };
        match format.get("type").and_then(Value::as_str) {
            Some("text") => Ok(Self::Text),
            Some("json_object") => Ok(Self::JsonObject),
            Some("json_schema") => Ok(Self::JsonSchema(
                format.pointer("/json_schema/schema").cloned(),
            )),
            _ => Err(ProviderError::invalid(
                "response_format",
                "response_format.type must be text, json_object or json_schema",
            )),
        }
    }
}

/// A guess of an image URL's media type from its extension (`image/jpeg`
/// when unknown), for providers that want one with a URL.
pub fn mime_from_url(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        _ => "image/jpeg",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::json;

    #[test]
    fn reads_tools_choice_and_calls() {
        let t = tools(Some(&json!([{"type": "function", "function": {
            "name": "get_weather", "description": "w", "parameters": {"type": "object"}}}])))
        .unwrap();
        assert_eq!(t[0].name, "get_weather");
        assert_eq!(t[0].parameters, Some(json!({"type": "object"})));
        assert!(tools(Some(&json!([{"type": "web_search"}]))).is_err());

        assert_eq!(
            tool_choice(Some(&json!("required"))).unwrap(),
            Some(ToolChoice::Required)
        );
        assert_eq!(
            tool_choice(Some(
                &json!({"type": "function", "function": {"name": "f"}})
            ))
            .unwrap(),
            Some(ToolChoice::Function("f".into()))
        );
        assert!(tool_choice(Some(&json!("sometimes"))).is_err());

        let calls = tool_calls(Some(&json!([{"id": "c1", "type": "function",
            "function": {"name": "f", "arguments": "{\"a\":1}"}}])))
        .unwrap();
        assert_eq!(calls[0].arguments, json!({"a": 1}));
        assert_eq!(tool_call_id(Some(&json!("c1"))).unwrap(), "c1");
    }

    #[test]
    fn reads_images() {
        let part = json!({"image_url": {"url": "data:image/png;base64,aGk="}});
        let img = image(part.as_object().unwrap()).unwrap();
        assert_eq!(
            img,
            Image::Inline {
                mime_type: "image/png".into(),
                base64: "aGk=".into()
            }
        );
        assert_eq!(Image::bytes("aGk=").unwrap(), b"hi");
        let part = json!({"image_url": {"url": "https://x/y.webp?z=1"}});
        assert_eq!(
            image(part.as_object().unwrap()).unwrap(),
            Image::Url("https://x/y.webp?z=1".into())
        );
        assert_eq!(mime_from_url("https://x/y.webp?z=1"), "image/webp");
    }
}
