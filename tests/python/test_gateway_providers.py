"""The front door end to end: `engine serve --config` in front of aimock
(the third-party mock of each provider's wire format), with the official
`openai` SDK as the client of /v1/chat/completions and /v1/embeddings and
the official `anthropic` SDK as the client of /v1/messages. Each test runs
against both builds: the default one and the gateway-only one (no
libtorch).

Every adapter gets the same checks: a plain answer, a stream with its
usage chunk, a tool call and the turn that carries its result, and each
upstream error status kept with its message."""
import json
from pathlib import Path

import pytest

from conftest import ENGINE, GATEWAY_ENGINE, ROOT, Aimock, Gateway

FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "gateway.json"
AWS = ("aws_access_key_id: AKIDEXAMPLE\n      aws_secret_access_key: secret\n"
       "      aws_region_name: us-east-1")

# model_name -> litellm_params (besides api_base), one per wire format.
CHAT = {
    "gpt": "model: openai/gpt-4o\n      api_key: os.environ/MOCK_KEY",
    "groq-llama": "model: groq/llama-3.1-8b-instant\n      api_key: sk-groq",
    "azure-gpt": "model: azure/gpt4o-deployment\n      api_key: az\n      api_version: 2024-10-21",
    "claude": "model: anthropic/claude-3-5-sonnet-20241022\n      api_key: sk-ant",
    "gemini": "model: gemini/gemini-2.0-flash\n      api_key: g",
    "vertex": "model: vertex_ai/gemini-1.5-pro\n      api_key: token\n"
              "      vertex_project: proj\n      vertex_location: us-central1",
    "bedrock": f"model: bedrock/anthropic.claude-3-haiku-20240307-v1:0\n      {AWS}",
    "ollama": "model: ollama/llama3.1",
    "cohere": "model: cohere/command-r-plus\n      api_key: co",
}
EMBED = {
    "emb-openai": "model: openai/text-embedding-3-small\n      api_key: sk",
    "emb-azure": "model: azure/embedding-deployment\n      api_key: az\n      api_version: 2024-10-21",
    "emb-gemini": "model: gemini/text-embedding-004\n      api_key: g",
    "emb-ollama": "model: ollama/nomic-embed-text",
    "emb-cohere": "model: cohere/embed-english-v3.0\n      api_key: co",
}
OPENAI_PATH = {"gpt", "groq-llama", "emb-openai"}  # their api_base ends in /v1


def config(mock_url: str) -> str:
    entries = []
    for name, params in {**CHAT, **EMBED}.items():
        base = f"{mock_url}/v1" if name in OPENAI_PATH else mock_url
        entries.append(f"  - model_name: {name}\n    litellm_params:\n"
                       f"      {params}\n      api_base: {base}\n")
    entries.append(f"  - model_name: claude-drop\n    litellm_params:\n"
                   f"      {CHAT['claude']}\n      api_base: {mock_url}\n      drop_params: true\n")
    return ("model_list:\n" + "".join(entries)
            + "router_settings:\n  num_retries: 0\n  timeout: 30\n")


@pytest.fixture(scope="module", params=[ENGINE, GATEWAY_ENGINE], ids=["default", "gateway-only"])
def gateway(tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("gateway")
    mock = Aimock(FIXTURES, log=tmp / "aimock.log")
    gw = Gateway(config(mock.url), tmp, env={"MOCK_KEY": "sk-from-env"}, binary=request.param)
    yield gw
    gw.stop()
    mock.stop()


@pytest.fixture(scope="module")
def client(gateway):
    from openai import OpenAI
    return OpenAI(base_url=f"{gateway.base}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_every_model_name(client):
    ids = {m.id for m in client.models.list().data}
    assert set(CHAT) | set(EMBED) | {"claude-drop"} <= ids


@pytest.mark.parametrize("model", sorted(CHAT))
def test_chat(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "say hello"}], max_tokens=50)
    assert r.choices[0].message.content == "Hello from the mock upstream!"
    assert r.choices[0].finish_reason == "stop"
    assert r.model == model
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("model", sorted(CHAT))
def test_chat_stream(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "say hello"}], max_tokens=50,
        stream=True, stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == "Hello from the mock upstream!"
    assert finish == "stop"
    assert usage is not None, "include_usage asked for a usage chunk"


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}


@pytest.mark.parametrize("model", sorted(CHAT))
def test_tool_call_round_trip(client, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                       max_tokens=100)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
    ]
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                       max_tokens=100)
    assert r.choices[0].message.content == "It is sunny in Paris."


@pytest.mark.parametrize("model", sorted(CHAT))
def test_streamed_tool_call(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL], max_tokens=100, stream=True)
    name, args, finish = "", "", None
    for chunk in stream:
        for choice in chunk.choices:
            for tc in choice.delta.tool_calls or []:
                name += tc.function.name or "" if tc.function else ""
                args += tc.function.arguments or "" if tc.function else ""
            finish = choice.finish_reason or finish
    assert name == "get_weather"
    assert json.loads(args) == {"city": "Paris"}
    assert finish == "tool_calls"


@pytest.mark.parametrize("model", sorted(EMBED))
def test_embeddings(client, model):
    # Left unset, the SDK asks for base64 and decodes it; floats as asked.
    r = client.embeddings.create(model=model, input="embed me")
    assert r.data[0].embedding == pytest.approx([0.25, -0.5, 0.75])
    r = client.embeddings.create(model=model, input="embed me", encoding_format="float")
    assert r.data[0].embedding == pytest.approx([0.25, -0.5, 0.75])
    assert r.usage.total_tokens == r.usage.prompt_tokens


@pytest.mark.parametrize("model", sorted(CHAT))
@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 422, 429, 500, 503])
def test_upstream_error_status_and_message_are_kept(client, model, status):
    import openai
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"status {status}"}],
            max_tokens=20)
    err = info.value
    assert err.status_code == status, err
    body = err.response.json()
    assert set(body["error"]) >= {"message", "type", "code"}, body
    expected = json.loads(FIXTURES.read_text())["fixtures"]
    message = next(f["response"]["error"]["message"] for f in expected
                   if f["match"].get("userMessage") == f"status {status}")
    assert message in body["error"]["message"]


def test_unknown_model_is_a_clear_error(client):
    import openai
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "hi"}])
    assert "no-such-model" in info.value.response.json()["error"]["message"]


def test_unsupported_params_are_named_unless_dropped(client):
    import openai
    messages = [{"role": "user", "content": "say hello"}]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="claude", messages=messages,
                                       logit_bias={"50256": -100})
    assert "logit_bias" in info.value.response.json()["error"]["message"]
    r = client.chat.completions.create(model="claude-drop", messages=messages,
                                       logit_bias={"50256": -100})
    assert r.choices[0].message.content == "Hello from the mock upstream!"


@pytest.mark.parametrize("model", ["claude", "gpt", "gemini", "bedrock"])
def test_anthropic_sdk_messages(gateway, model):
    import anthropic
    client = anthropic.Anthropic(base_url=gateway.base, api_key="unused", max_retries=0)
    msg = client.messages.create(model=model, max_tokens=50, system="Be brief.",
                                 messages=[{"role": "user", "content": "say hello"}])
    assert msg.content[0].text == "Hello from the mock upstream!"
    assert msg.stop_reason == "end_turn"
    with client.messages.stream(model=model, max_tokens=50,
                                messages=[{"role": "user", "content": "say hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from the mock upstream!"
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["claude", "gpt"])
def test_anthropic_sdk_tool_use(gateway, model):
    import anthropic
    client = anthropic.Anthropic(base_url=gateway.base, api_key="unused", max_retries=0)
    tools = [{"name": "get_weather", "description": "Weather of a city",
              "input_schema": WEATHER_TOOL["function"]["parameters"]}]
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    msg = client.messages.create(model=model, max_tokens=100, tools=tools, messages=messages)
    assert msg.stop_reason == "tool_use"
    use = next(b for b in msg.content if b.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", {"city": "Paris"})
    messages += [{"role": "assistant", "content": [b.model_dump() for b in msg.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": '{"sky": "sunny"}'}]}]
    msg = client.messages.create(model=model, max_tokens=100, tools=tools, messages=messages)
    assert msg.content[0].text == "It is sunny in Paris."


def test_anthropic_sdk_errors_keep_status(gateway):
    import anthropic
    client = anthropic.Anthropic(base_url=gateway.base, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model="gpt", max_tokens=20,
                               messages=[{"role": "user", "content": "status 429"}])
    assert info.value.body["error"]["type"] == "rate_limit_error"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=20,
                               messages=[{"role": "user", "content": "hi"}])
