"""A LiteLLM `config.yaml` using every key the gateway reads loads as is
and routes: model groups with `order`, usage-based routing, `os.environ/`
references (from the process and from `environment_variables`), generic,
context-window and content-policy fallbacks, retry policy, cooldowns,
`drop_params`, a local model entry, and an unknown key that only warns."""
import pytest

from conftest import ROOT, Aimock, Gateway

FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "gateway.json"

CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/MOCK_OPENAI_BASE
      api_key: os.environ/OPENAI_API_KEY
      rpm: 600
      tpm: 100000
      weight: 2
      order: 1
      timeout: 30
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
    model_info:
      id: gpt-4o-openai
  - model_name: gpt-4o
    litellm_params:
      model: azure/my-gpt-4o-deployment
      api_base: os.environ/MOCK_BASE
      api_key: os.environ/AZURE_API_KEY
      api_version: "2024-10-21"
      rpm: 300
      tpm: 50000
      weight: 1
      order: 2
      drop_params: false
    model_info:
      id: gpt-4o-azure
  - model_name: claude-3
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20240620
      api_base: os.environ/MOCK_BASE
      api_key: os.environ/ANTHROPIC_API_KEY
      timeout: 60
  - model_name: gemini
    litellm_params:
      model: gemini/gemini-2.0-flash
      api_base: os.environ/MOCK_BASE
      api_key: os.environ/GEMINI_API_KEY
  - model_name: gpt-4o-long
    litellm_params:
      model: openai/gpt-4o-longctx
      api_base: os.environ/MOCK_OPENAI_BASE
      api_key: sk-local-test
  - model_name: smollm2
    litellm_params:
      model: local/smollm2

router_settings:
  routing_strategy: usage-based-routing-v2
  routing_strategy_args:
    lowest_latency_buffer: 0.1
  num_retries: 2
  timeout: 45
  fallbacks: [{"gpt-4o": ["claude-3", "gemini"]}]
  context_window_fallbacks: [{"gpt-4o": ["gpt-4o-long"]}]
  content_policy_fallbacks: [{"claude-3": ["gpt-4o"]}]
  allowed_fails: 2
  cooldown_time: 10
  retry_policy:
    BadRequestErrorRetries: 0
    AuthenticationErrorRetries: 0
    TimeoutErrorRetries: 2
    RateLimitErrorRetries: 1
    ContentPolicyViolationErrorRetries: 0
    InternalServerErrorRetries: 0
  a_key_from_the_future: 1

litellm_settings:
  drop_params: true
  num_retries: 1
  request_timeout: 120
  fallbacks: [{"gemini": ["smollm2"]}]
  context_window_fallbacks: [{"claude-3": ["gemini"]}]
  content_policy_fallbacks: [{"gemini": ["claude-3"]}]

general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY

environment_variables:
  GEMINI_API_KEY: gemini-key-from-file
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("litellm-config")
    mock = Aimock(FIXTURES, log=tmp / "aimock.log")
    env = {"MOCK_BASE": mock.url, "MOCK_OPENAI_BASE": f"{mock.url}/v1",
           "OPENAI_API_KEY": "sk-openai", "AZURE_API_KEY": "az-key",
           "ANTHROPIC_API_KEY": "sk-ant", "LITELLM_MASTER_KEY": "sk-master"}
    gw = Gateway(CONFIG, tmp, env=env)
    yield gw
    gw.stop()
    mock.stop()


@pytest.fixture(scope="module")
def client(gateway):
    from openai import OpenAI
    return OpenAI(base_url=f"{gateway.base}/v1", api_key="sk-master", max_retries=0, timeout=120)


def ask(client, model, text, **kw):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=16, **kw)
    return r.choices[0].message.content


def test_every_model_name_is_served(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == ["gpt-4o", "claude-3", "gemini", "gpt-4o-long", "smollm2"]


def test_remote_groups_route(client):
    for model in ("gpt-4o", "claude-3", "gemini", "gpt-4o-long"):
        assert ask(client, model, "say hello") == "Hello from the mock upstream!"


def test_drop_params_from_litellm_settings(client):
    # Anthropic takes no logit_bias; litellm_settings.drop_params drops it.
    assert ask(client, "claude-3", "say hello", logit_bias={"1": 1}) == \
        "Hello from the mock upstream!"


def test_generic_fallback_in_order(client):
    # gpt-4o's deployments answer 500 (no retries for it in retry_policy):
    # the first fallback, claude-3, answers.
    assert ask(client, "gpt-4o", "fallback please") == "Claude took over."


def test_context_window_fallback(client):
    assert ask(client, "gpt-4o", "a very long prompt") == "The long-context model answered."


def test_content_policy_fallback(client):
    assert ask(client, "claude-3", "policy test") == "GPT answered instead."


def test_local_model_entry_is_served_by_the_engine(client):
    r = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "What is 2+2?"}],
        max_tokens=8, temperature=0)
    assert r.model == "smollm2"
    assert r.usage.completion_tokens > 0
    assert r.choices[0].finish_reason in ("stop", "length")


def test_unknown_key_warns_and_secrets_stay_out_of_the_log(gateway, client):
    ask(client, "gpt-4o", "say hello")
    log = gateway.log.read_text()
    assert "a_key_from_the_future" in log
    for secret in ("sk-openai", "az-key", "sk-ant", "sk-master", "gemini-key-from-file"):
        assert secret not in log


def test_a_config_with_an_unknown_provider_fails_at_startup_with_strict_config(tmp_path):
    import subprocess
    from conftest import ENGINE
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model_list:\n  - model_name: x\n    litellm_params:\n      model: llama3\n")
    out = subprocess.run([str(ENGINE), "serve", "--config", str(cfg), "--port", "0",
                          "--strict-config"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "llama3" in out.stderr and "prefix" in out.stderr, out.stderr[-2000:]


# --- LiteLLM's config as LiteLLM users write it (issue 13) -----------------
#
# YAML 1.1 numbers and booleans, Redis from REDIS_HOST/REDIS_PORT, fallbacks
# to names only wildcard entries serve, and one entry that cannot be served.

LITELLM_STYLE = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: os.environ/MOCK_OPENAI_BASE
      api_key: sk-openai
      rpm: 20_000
      tpm: 1_000_000
      timeout: 0x3c
      drop_params: yes
  - model_name: broken
    litellm_params:
      model: llama3
  - model_name: "anthropic/*"
    litellm_params:
      model: "anthropic/*"
      api_base: os.environ/MOCK_BASE
      api_key: sk-ant
  - model_name: "*"
    litellm_params:
      model: "openai/*"
      api_base: os.environ/MOCK_OPENAI_BASE
      api_key: sk-openai

router_settings:
  num_retries: 0
  cooldown_time: 0
  fallbacks: [{"gpt-4o": ["anthropic/claude-3-5-sonnet-20240620"]}]
  context_window_fallbacks: [{"gpt-4o": ["gpt-4o-longctx"]}]

litellm_settings:
  drop_params: on
  cache: true
  cache_params:
    type: redis
    namespace: "NAMESPACE"
"""


def redis_keys(pattern: str) -> list:
    """`KEYS pattern` over RESP on 127.0.0.1:6379 (no client library needed)."""
    import socket
    arg = pattern.encode()
    with socket.create_connection(("127.0.0.1", 6379), timeout=5) as s:
        s.sendall(b"*2\r\n$4\r\nKEYS\r\n$%d\r\n%s\r\n" % (len(arg), arg))
        f = s.makefile("rb")
        count = int(f.readline()[1:])
        keys = []
        for _ in range(max(count, 0)):
            size = int(f.readline()[1:])
            keys.append(f.read(size + 2)[:-2].decode())
        return keys


def redis_up() -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def litellm_style(tmp_path_factory):
    import os
    import uuid
    if not redis_up():
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but Redis is not reachable on 127.0.0.1:6379")
        pytest.skip("needs Redis on 127.0.0.1:6379")
    tmp = tmp_path_factory.mktemp("litellm-style")
    mock = Aimock(FIXTURES, log=tmp / "aimock.log")
    namespace = f"engine-fc-config-{uuid.uuid4().hex[:8]}:"
    env = {"MOCK_BASE": mock.url, "MOCK_OPENAI_BASE": f"{mock.url}/v1",
           # Only the environment says where Redis is, as LiteLLM reads it.
           "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6379"}
    gw = Gateway(LITELLM_STYLE.replace("NAMESPACE", namespace), tmp, env=env)
    gw.namespace = namespace
    yield gw
    gw.stop()
    mock.stop()


def test_litellm_style_config_loads_and_names_the_unservable_entry_once(litellm_style):
    import httpx
    ids = [m["id"] for m in httpx.get(f"{litellm_style.base}/v1/models").json()["data"]]
    assert ids == ["gpt-4o", "broken"]
    log = litellm_style.log.read_text()
    warnings = [l for l in log.splitlines() if "WARN" in l and "broken" in l]
    assert len(warnings) == 1, warnings
    assert "llama3" in warnings[0]


def test_the_unservable_model_answers_503_and_the_others_serve(litellm_style):
    import httpx
    body = {"model": "broken", "messages": [{"role": "user", "content": "say hello"}]}
    r = httpx.post(f"{litellm_style.base}/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 503, r.text
    err = r.json()["error"]
    assert err["code"] == "model_not_servable" and "`broken`" in err["message"], err
    from openai import OpenAI
    client = OpenAI(base_url=f"{litellm_style.base}/v1", api_key="none", max_retries=0)
    assert ask(client, "gpt-4o", "say hello") == "Hello from the mock upstream!"


def test_wildcard_entries_serve_any_name_they_match(litellm_style):
    from openai import OpenAI
    client = OpenAI(base_url=f"{litellm_style.base}/v1", api_key="none", max_retries=0)
    r = client.chat.completions.create(
        model="anthropic/claude-3-5-sonnet-20240620",
        messages=[{"role": "user", "content": "say hello"}], max_tokens=16)
    assert r.choices[0].message.content == "Hello from the mock upstream!"
    assert r.model == "anthropic/claude-3-5-sonnet-20240620"
    assert ask(client, "some-new-model", "say hello") == "Hello from the mock upstream!"


def test_fallbacks_to_wildcard_served_names(litellm_style):
    from openai import OpenAI
    client = OpenAI(base_url=f"{litellm_style.base}/v1", api_key="none", max_retries=0)
    # gpt-4o answers 500: the fallback only `anthropic/*` serves answers.
    assert ask(client, "gpt-4o", "fallback please") == "Claude took over."
    # gpt-4o's context is too small: `*` serves gpt-4o-longctx.
    assert ask(client, "gpt-4o", "a very long prompt") == "The long-context model answered."


def test_the_cache_is_in_the_redis_the_environment_names(litellm_style):
    import httpx
    import uuid
    body = {"model": "gpt-4o", "max_tokens": 16,
            "messages": [{"role": "user", "content": f"say hello {uuid.uuid4()}"}]}
    url = f"{litellm_style.base}/v1/chat/completions"
    first = httpx.post(url, json=body, timeout=30)
    assert first.status_code == 200, first.text
    assert "x-litellm-cache-hit" not in first.headers
    assert httpx.post(url, json=body, timeout=30).headers["x-litellm-cache-hit"] == "True"
    assert redis_keys(f"{litellm_style.namespace}*"), "no cache key in Redis"
