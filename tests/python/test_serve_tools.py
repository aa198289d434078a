"""Tool calling and reasoning output on the local engine, through the
OpenAI and Anthropic SDKs.

SmolLM2's own template has no tools, so this server runs it with the
Hermes tool template in examples/ and the `hermes` parser, as vLLM serves a
model whose template lacks tools. `required` and named choices are
enforced with a grammar; `auto` is the parser reading what the model
wrote (forced here with a regex, so the test does not hope for a call)."""
import json

import anthropic
import httpx
import pytest
from openai import OpenAI

from conftest import Server

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20},
                           "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME = {"type": "function", "function": {
    "name": "get_time", "parameters": {"type": "object", "properties": {
        "zone": {"type": "string", "maxLength": 10}}, "required": ["zone"],
        "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory):
    s = Server(["--chat-template", "examples/tool_chat_template_hermes.jinja",
                "--tool-call-parser", "hermes", "--enable-auto-tool-choice",
                "--reasoning-parser", "qwen3"],
               tmp=tmp_path_factory.mktemp("engine-tools"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def oai(tool_server):
    return OpenAI(base_url=f"{tool_server.base}/v1", api_key="unused", max_retries=0,
                  timeout=120)


def weather_args(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("c", "f"), args
    assert isinstance(args["city"], str) and len(args["city"]) <= 20, args
    return args


def test_required_and_named_choices_always_call(oai):
    # One call (parallel_tool_calls=False bounds the array): a 135M model
    # left to list calls may list them until max_tokens.
    r = oai.chat.completions.create(model="smollm2", messages=ASK, tools=[WEATHER, TIME],
                                    tool_choice="required", max_tokens=120, temperature=0,
                                    parallel_tool_calls=False)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert calls and all(c.function.name in ("get_weather", "get_time") for c in calls), calls
    for c in calls:
        assert c.id.startswith("call_") and c.type == "function"
        if c.function.name == "get_weather":
            weather_args(c.function.arguments)

    r = oai.chat.completions.create(
        model="smollm2", messages=ASK, tools=[WEATHER, TIME], max_tokens=80,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice  # as OpenAI ends a forced call
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    weather_args(call.function.arguments)
    assert choice.message.content is None


def test_streamed_calls_arrive_as_openai_tool_call_deltas(oai):
    chunks = list(oai.chat.completions.create(
        model="smollm2", messages=ASK, tools=[WEATHER], stream=True, max_tokens=80,
        tool_choice={"type": "function", "function": {"name": "get_weather"}}))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id.startswith("call_") and deltas[0].function.name == "get_weather"
    assert all(d.id is None for d in deltas[1:]), "the id comes once"
    weather_args("".join(d.function.arguments or "" for d in deltas))

    chunks = list(oai.chat.completions.create(
        model="smollm2", messages=ASK, tools=[WEATHER], stream=True, max_tokens=120,
        tool_choice="required", parallel_tool_calls=False, temperature=0))
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"], finish
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather" and calls[0].id.startswith("call_")
    assert all(c.index == 0 and c.id is None and c.function.name is None for c in calls[1:])
    # The arguments stream as the model writes them, not whole at the end.
    fragments = [c.function.arguments for c in calls if c.function.arguments]
    assert len(fragments) > 3, fragments
    weather_args("".join(fragments))


def test_auto_reads_the_models_own_call_syntax(oai):
    """Under `auto` the hermes parser reads what the model wrote. A regex
    makes SmolLM2 write a Hermes call (text before it included), so the
    parse is tested end to end, streamed and not."""
    forced = (r'Let me check\.\n<tool_call>\n\{"name": "get_weather", "arguments": '
              r'\{"city": "Paris", "unit": "c"\}\}\n</tool_call>')
    body = dict(model="smollm2", messages=ASK, tools=[WEATHER], max_tokens=60,
                extra_body={"structured_outputs": {"regex": forced}})
    r = oai.chat.completions.create(**body)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content.strip() == "Let me check."
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}

    chunks = list(oai.chat.completions.create(stream=True, **body))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "Let me check.", text
    assert "<tool_call>" not in text
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert [c.function.name for c in calls if c.function.name] == ["get_weather"]
    fragments = [c.function.arguments for c in calls if c.function.arguments]
    assert len(fragments) > 3, fragments
    assert json.loads("".join(fragments)) == {"city": "Paris", "unit": "c"}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"], finish

    # A malformed call stays text, with a normal finish.
    broken = r'<tool_call>\n\{"name": "get_weather", "arguments": \{"city": \n</tool_call>'
    r = oai.chat.completions.create(**{**body, "extra_body": {"guided_regex": broken}})
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason == "stop"
    assert "<tool_call>" in r.choices[0].message.content

    # tool_choice none: no call is read, even from call syntax.
    r = oai.chat.completions.create(**body, tool_choice="none")
    assert r.choices[0].message.tool_calls is None


def test_a_tool_round_trip_renders_calls_and_results(tool_server, oai):
    first = oai.chat.completions.create(
        model="smollm2", messages=ASK, tools=[WEATHER], max_tokens=80,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = first.choices[0].message.tool_calls[0]
    history = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18 degrees, sunny"},
    ]
    tokens = httpx.post(f"{tool_server.base}/tokenize", timeout=30, json={
        "model": "smollm2", "messages": history}).json()["tokens"]
    prompt = httpx.post(f"{tool_server.base}/detokenize", timeout=30, json={
        "model": "smollm2", "tokens": tokens}).json()["prompt"]
    # The call went back as the model wrote it (arguments as an object),
    # the result as a tool response.
    args = json.dumps(json.loads(call.function.arguments))
    assert f'{{"name": "get_weather", "arguments": {args}}}' in prompt, prompt
    assert "<tool_response>\n18 degrees, sunny\n</tool_response>" in prompt, prompt
    r = oai.chat.completions.create(model="smollm2", messages=history, tools=[WEATHER],
                                    tool_choice="none", max_tokens=20)
    assert r.choices[0].message.content, r


def test_anthropic_sdk_tool_use_reaches_the_local_engine(tool_server):
    client = anthropic.Anthropic(base_url=tool_server.base, api_key="unused", max_retries=0)
    tool = {"name": "get_weather", "description": "The weather in a city.",
            "input_schema": WEATHER["function"]["parameters"]}
    msg = client.messages.create(model="smollm2", max_tokens=80, messages=ASK, tools=[tool],
                                 tool_choice={"type": "tool", "name": "get_weather"})
    uses = [b for b in msg.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather", msg.content
    assert set(uses[0].input) == {"city", "unit"}

    with client.messages.stream(model="smollm2", max_tokens=120, messages=ASK, tools=[tool],
                                tool_choice={"type": "any", "disable_parallel_tool_use": True}) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use", final
    uses = [b for b in final.content if b.type == "tool_use"]
    assert uses and uses[0].name == "get_weather" and set(uses[0].input) == {"city", "unit"}


def test_tool_requests_that_cannot_be_served_are_400s(tool_server, server):
    def post(base, **body):
        return httpx.post(f"{base}/v1/chat/completions", timeout=30,
                          json={"model": "smollm2", "messages": ASK, **body})

    r = post(tool_server.base, tools=[WEATHER],
             tool_choice={"type": "function", "function": {"name": "launch_rocket"}})
    assert r.status_code == 400 and "launch_rocket" in r.json()["error"]["message"], r.text
    # SmolLM2's own template renders no tools: refused, not silently dropped.
    r = post(server.base, tools=[WEATHER], tool_choice="required")
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools", r.text
    # auto needs --enable-auto-tool-choice (the default server has none).
    r = post(server.base, tools=[WEATHER])
    assert r.status_code == 400, r.text
    r = post(tool_server.base, tools=[WEATHER], tool_choice="required",
             response_format={"type": "json_object"})
    assert r.status_code == 400, r.text


def test_reasoning_goes_to_reasoning_content_streamed_or_not(oai):
    """With --reasoning-parser qwen3, output that opens with <think> is split
    at </think> (forced with a regex here: SmolLM2 does not think)."""
    body = dict(model="smollm2", messages=ASK, max_tokens=40,
                extra_body={"guided_regex": r"<think>It is in France\.</think>Sunny\."})
    r = oai.chat.completions.create(**body)
    message = r.choices[0].message
    assert message.reasoning_content == "It is in France.", message
    assert message.content == "Sunny."

    chunks = list(oai.chat.completions.create(stream=True, **body))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    assert (reasoning, content) == ("It is in France.", "Sunny."), deltas

    # Output that does not open with <think> is all content.
    r = oai.chat.completions.create(**{**body, "extra_body": {"guided_regex": "Sunny\\."}})
    assert r.choices[0].message.content == "Sunny."
    assert getattr(r.choices[0].message, "reasoning_content", None) is None


def test_tokenize_renders_tools_and_template_kwargs_as_chat_does(tool_server, server, tmp_path):
    """/tokenize with messages gives the prompt a chat request with the
    same tools and chat_template_kwargs would get."""
    def prompt(base, **body):
        r = httpx.post(f"{base}/tokenize", timeout=30, json={"messages": ASK, **body})
        assert r.status_code == 200, r.text
        return httpx.post(f"{base}/detokenize", timeout=30,
                          json={"tokens": r.json()["tokens"]}).json()["prompt"]

    assert "get_weather" in prompt(tool_server.base, tools=[WEATHER])
    assert "get_weather" not in prompt(tool_server.base)
    # A template that renders no tools refuses them, as chat does.
    r = httpx.post(f"{server.base}/tokenize", timeout=30, json={"messages": ASK, "tools": [WEATHER]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools", r.text
    r = httpx.post(f"{tool_server.base}/tokenize", timeout=30, json={"messages": ASK, "tools": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools", r.text

    # chat_template_kwargs reach the template (Qwen3's enable_thinking),
    # on /tokenize and on chat completions alike.
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                "{% endfor %}<|im_start|>assistant\n"
                "{% if enable_thinking is defined and not enable_thinking %}"
                "<think>\n\n</think>\n\n{% endif %}")
    kw = Server(["--chat-template", template], tmp=tmp_path)
    try:
        off = {"chat_template_kwargs": {"enable_thinking": False}}
        assert prompt(kw.base, **off).endswith("<think>\n\n</think>\n\n")
        assert prompt(kw.base).endswith("<|im_start|>assistant\n")
        chat = lambda **extra: httpx.post(f"{kw.base}/v1/chat/completions", timeout=60, json={
            "model": "smollm2", "messages": ASK, "max_tokens": 1, **extra}).json()
        assert (chat(**off)["usage"]["prompt_tokens"]
                == len(httpx.post(f"{kw.base}/tokenize", timeout=30,
                                  json={"messages": ASK, **off}).json()["tokens"])
                > chat()["usage"]["prompt_tokens"])
    finally:
        kw.stop()
