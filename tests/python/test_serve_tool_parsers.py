"""Each --tool-call-parser end to end on the tiny checkpoints of the model
families (scripts/fixtures/model_families.py), streamed and not.

The tiny models' weights are random, so each server is made to write its
family's call syntax with a regex (structured outputs), and `tool_choice`
auto must read it back as the same OpenAI tool call. Their template knows
no tools, so an inline --chat-template that renders them is given, as vLLM
users pass one."""
import json

import pytest
from openai import OpenAI

from conftest import ROOT, Server

FIXTURES = ROOT / "tests" / "fixtures" / "generated"
TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
            "{% if tools %}tools: {{ tools | tojson }}\n{% endif %}"
            "{% if add_generation_prompt %}<s>assistant: {% endif %}")
TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}}}}
ARGS = {"city": "Paris", "unit": "c"}
# (checkpoint, parser, the family's syntax as a regex)
FAMILIES = [
    ("tiny_qwen3", "hermes",
     r'<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris", "unit": "c"\}\}\n</tool_call>'),
    ("tiny_qwen3_moe", "qwen3_coder",
     r"<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n"
     r"<parameter=unit>\nc\n</parameter>\n</function>\n</tool_call>"),
    ("tiny_llama4", "llama4_pythonic", r'\[get_weather\(city="Paris", unit=\'c\'\)\]'),
    ("tiny_mistral", "mistral",
     r'\[TOOL_CALLS\]\[\{"name": "get_weather", "arguments": \{"city": "Paris", "unit": "c"\}\}\]'),
    ("tiny_mixtral", "llama3_json",
     r'\{"name": "get_weather", "parameters": \{"city": "Paris", "unit": "c"\}\}'),
]


@pytest.mark.parametrize("folder, parser, syntax", FAMILIES, ids=[f[1] for f in FAMILIES])
def test_each_parser_reads_its_familys_calls(tmp_path, folder, parser, syntax):
    if not (FIXTURES / folder / "tokenizer.json").exists():
        pytest.fail("run scripts/fixtures/model_families.py")
    server = Server(model=str(FIXTURES / folder), tmp=tmp_path, extra_args=[
        "--max-model-len", "512", "--served-model-name", "tiny", "--chat-template", TEMPLATE,
        "--tool-call-parser", parser, "--enable-auto-tool-choice"])
    try:
        client = OpenAI(base_url=f"{server.base}/v1", api_key="none", max_retries=0)
        body = dict(model="tiny", messages=[{"role": "user", "content": "weather?"}],
                    tools=[TOOL], max_tokens=200, extra_body={"guided_regex": syntax})
        r = client.chat.completions.create(**body)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == ARGS
        assert not (choice.message.content or "").strip()

        chunks = list(client.chat.completions.create(stream=True, **body))
        calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
        assert [c.function.name for c in calls if c.function.name] == ["get_weather"], chunks
        assert calls[0].id.startswith("call_") and all(c.id is None for c in calls[1:])
        arguments = "".join(c.function.arguments or "" for c in calls)
        assert json.loads(arguments) == ARGS
        # The JSON families stream the arguments as written; the XML and
        # pythonic ones give them once a call is whole.
        fragments = sum(1 for c in calls if c.function.arguments)
        if parser in ("hermes", "mistral", "llama3_json"):
            assert fragments > 1, calls
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert not text.strip(), f"call syntax leaked into content: {text!r}"
    finally:
        server.stop()
