//! Each parser on outputs as the families write them, well-formed and
//! not: a malformed call is text, whole.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

use super::*;

fn call(name: &str, args: Value) -> ToolCall {
    ToolCall {
        name: name.into(),
        arguments: object(args).unwrap(),
    }
}

fn calls(parser: ToolCallParser, text: &str) -> Vec<ToolCall> {
    parser.parse(text).calls
}

fn is_text(parser: ToolCallParser, text: &str) {
    assert_eq!(
        parser.parse(text),
        Parsed {
            content: text.into(),
            calls: vec![]
        },
        "{} on {text:?}",
        parser.name()
    );
}

#[test]
fn hermes_reads_one_or_several_calls_and_the_text_around() {
    let p = ToolCallParser::Hermes;
    let out = p.parse(
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>",
    );
    assert_eq!(out.content.trim(), "Let me check.");
    assert_eq!(
        out.calls,
        vec![
            call("get_weather", json!({"city": "Paris"})),
            call("now", json!({}))
        ]
    );
    // An unclosed last call (the model stopped at EOS) still counts.
    assert_eq!(
        calls(
            p,
            "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}"
        ),
        vec![call("f", json!({"a": 1}))]
    );
    is_text(p, "No tools needed.");
    is_text(
        p,
        "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": </tool_call>",
    );
    is_text(p, "<tool_call>{\"arguments\": {}}</tool_call>");
    is_text(
        p,
        "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
    );
}

#[test]
fn llama3_json_reads_the_object_with_or_without_the_python_tag() {
    let p = ToolCallParser::Llama3Json;
    assert_eq!(
        calls(
            p,
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}"
        ),
        vec![call("get_weather", json!({"city": "Oslo"}))]
    );
    assert_eq!(
        calls(
            p,
            "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"x\": [1, 2]}}"
        ),
        vec![call("a", json!({})), call("b", json!({"x": [1, 2]}))]
    );
    is_text(p, "The weather is nice.");
    is_text(p, "{\"name\": \"a\", \"parameters\": {}} and more text");
    is_text(p, "{\"not\": \"a call\"}");
    is_text(p, "{\"name\": \"a\", \"parameters\": {");
}

#[test]
fn pythonic_reads_keyword_calls_with_python_literals() {
    let p = ToolCallParser::Llama4Pythonic;
    assert_eq!(
        calls(
            p,
            "[get_weather(city='San Francisco', days=3, metric=True), search(q=\"a \\\"b\\\"\", tags=['x', \"y\"], opts={'k': None, 'f': 1.5}), now()]"
        ),
        vec![
            call("get_weather", json!({"city": "San Francisco", "days": 3, "metric": true})),
            call(
                "search",
                json!({"q": "a \"b\"", "tags": ["x", "y"], "opts": {"k": null, "f": 1.5}})
            ),
            call("now", json!({})),
        ]
    );
    assert_eq!(
        calls(p, "<|python_start|>[f(a=1)]<|python_end|>"),
        vec![call("f", json!({"a": 1}))]
    );
    is_text(p, "[1, 2, 3]");
    is_text(p, "[f(a=1)");
    is_text(p, "[f(1)]");
    is_text(p, "I would call [f(a=1)].");
    is_text(p, "[f(a='unterminated)]");
    let deep = format!("[f(a={}{})]", "[".repeat(100), "]".repeat(100));
    is_text(p, &deep);
}

#[test]
fn mistral_reads_both_tokenizer_generations() {
    let p = ToolCallParser::Mistral;
    assert_eq!(
        calls(
            p,
            "[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}, {\"name\": \"now\", \"arguments\": {}}]"
        ),
        vec![call("add", json!({"a": 1, "b": 2})), call("now", json!({}))]
    );
    assert_eq!(
        calls(p, "[TOOL_CALLS]add[ARGS]{\"a\": 1}[TOOL_CALLS]now[ARGS]{}"),
        vec![call("add", json!({"a": 1})), call("now", json!({}))]
    );
    is_text(p, "Sure, 1 + 2 = 3.");
    is_text(
        p,
        "[TOOL_CALLS] [{\"name\": \"add\", \"arguments\": {\"a\": 1",
    );
    is_text(p, "[TOOL_CALLS][ARGS]{}");
}

#[test]
fn qwen3_coder_reads_xml_parameters_as_json_or_text() {
    let p = ToolCallParser::Qwen3Coder;
    let out = p.parse(
        "I'll look.\n<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
    );
    assert_eq!(out.content.trim(), "I'll look.");
    assert_eq!(
        out.calls,
        vec![call("get_weather", json!({"city": "New York", "days": 3}))]
    );
    is_text(
        p,
        "<tool_call>\n<function=f>\n<parameter=a>\n1\n</function>\n</tool_call>",
    );
    is_text(p, "<tool_call>{\"name\": \"f\"}</tool_call>");
}

#[test]
fn a_stream_shows_text_until_a_call_and_the_calls_at_the_end() {
    let mut s = StreamSplitter::new(ToolCallParser::Hermes);
    let mut shown = String::new();
    for piece in [
        "Let me ",
        "check.<tool",
        "_call>{\"name\": \"f\", ",
        "\"arguments\": {}}</tool_call>",
    ] {
        shown.push_str(&s.push(piece));
    }
    assert_eq!(shown, "Let me check.");
    let end = s.finish();
    assert_eq!(end.calls, vec![call("f", json!({}))]);
    assert_eq!(end.content, "");

    // A partial marker that turns out to be text is shown at the end.
    let mut s = StreamSplitter::new(ToolCallParser::Hermes);
    let mut shown = s.push("a <tool");
    shown.push_str(&s.push("box> b"));
    let end = s.finish();
    shown.push_str(&end.content);
    assert_eq!(shown, "a <toolbox> b");
    assert!(end.calls.is_empty());

    // A malformed call held back comes out as text.
    let mut s = StreamSplitter::new(ToolCallParser::Llama3Json);
    let shown = s.push("{\"name\": oops");
    let end = s.finish();
    assert_eq!(format!("{shown}{}", end.content), "{\"name\": oops");
    assert!(end.calls.is_empty());

    // Pythonic: a bracket later in the text is not a call.
    let mut s = StreamSplitter::new(ToolCallParser::Llama4Pythonic);
    assert_eq!(s.push("see [1]"), "see [1]");
}
