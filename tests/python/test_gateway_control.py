"""The gateway's control plane end to end: `engine serve --config` with a
master key, virtual keys in SQLite (PostgreSQL for the two-replica test),
aimock as the upstream, and real clients (the OpenAI SDK, httpx).

Shows: 401 without a key or with a wrong one, with a stored key hash
(`token`) or the master key's hash, and for the keys of a deleted team;
403 for a model outside a key's list and for admin calls without the
master key; no key in the log; 503s that name no internal URL but a
request id;
the LiteLLM admin API (keys, teams, users, spend); budgets refused with
`budget_exceeded`; after 1,000 concurrent requests the recorded spend
equals the sum of the `x-litellm-response-cost` headers; the response
cache; guardrails; rpm and tpm limits holding across two replicas that
share Redis; `kill -9` under load loses no key, team or user and at most
the documented interval of spend, also while PostgreSQL is down (the spend
journal); the gateway metrics, per key only with the master key."""
import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid

import httpx
import openai
import pytest

from conftest import ROOT, Aimock, Gateway, reachable

FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "control.json"
MASTER = "sk-test-master-7f3a"
UPSTREAM_KEY = "sk-upstream-secret-9b1c"
BATCH_S = 1.0
# gpt-4o-mini in frontend/data/model_prices.json.
PRICED = "openai/gpt-4o-mini"


def config(mock: str, database_url: str, extra: str = "",
           cache: str = "{type: local, ttl: 600}") -> str:
    return f"""
model_list:
  - model_name: gpt-4o-mini
    litellm_params: {{model: {PRICED}, api_base: {mock}/v1, api_key: {UPSTREAM_KEY}}}
  - model_name: premium
    litellm_params: {{model: openai/gpt-4o, api_base: {mock}/v1, api_key: {UPSTREAM_KEY}}}
    model_info: {{access_groups: [premium-group]}}
  - model_name: guarded
    litellm_params: {{model: {PRICED}, api_base: {mock}/v1, api_key: {UPSTREAM_KEY}, guardrails: [pii-mask]}}
  - model_name: unreachable
    litellm_params: {{model: openai/x, api_base: "http://127.0.0.1:9/internal-route-3e1f/v1", api_key: {UPSTREAM_KEY}}}
litellm_settings:
  cache: true
  cache_params: {cache}
guardrails:
  - guardrail_name: pii-mask
    litellm_params: {{guardrail: presidio, mode: pre_call}}
  - guardrail_name: no-codenames
    litellm_params: {{guardrail: banned_keywords, mode: pre_call, default_on: true, banned_keywords_list: [project-zeus]}}
general_settings:
  master_key: {MASTER}
  database_url: {database_url}
  proxy_batch_write_at: {BATCH_S}
{extra}
"""


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    m = Aimock(FIXTURES, log=tmp_path_factory.mktemp("aimock") / "aimock.log")
    yield m
    m.stop()


@pytest.fixture(scope="module")
def gw(mock, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("control")
    g = Gateway(config(mock.url, f"sqlite://{tmp}/gw.db"), tmp)
    yield g
    g.stop()


def admin(gw, method: str, path: str, **kw):
    r = httpx.request(method, f"{gw.base}{path}", headers={"Authorization": f"Bearer {MASTER}"},
                      timeout=30, **kw)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
    return r.json()


def new_key(gw, **fields):
    fields.setdefault("key_alias", f"k-{uuid.uuid4().hex[:8]}")
    return admin(gw, "POST", "/key/generate", json=fields)


def chat(gw, key: str, model="gpt-4o-mini", content="Say hello", **extra):
    return httpx.post(f"{gw.base}/v1/chat/completions",
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": content}],
                            **extra}, timeout=30)


def sdk(gw, key):
    return openai.OpenAI(base_url=f"{gw.base}/v1", api_key=key, max_retries=0, timeout=30)


def test_keys_are_required_and_checked(gw):
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-wrong").chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(f"{gw.base}/v1/chat/completions",
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
    # Open routes stay open.
    assert httpx.get(f"{gw.base}/health").status_code == 200
    # The master key and a virtual key both work.
    assert chat(gw, MASTER).status_code == 200
    key = new_key(gw, models=["gpt-4o-mini"])
    out = sdk(gw, key["key"]).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert out.choices[0].message.content == "Hello from the mock upstream."


def test_stored_hashes_are_not_keys(gw):
    key = new_key(gw)
    listed = admin(gw, "GET", "/key/list")["keys"]
    assert key["token"] in listed
    # The token /key/list shows (also in spend logs and Redis keys) is no key.
    r = chat(gw, key["token"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
    assert chat(gw, key["key"]).status_code == 200
    # Nor is the master key's hash the master key.
    master_hash = hashlib.sha256(MASTER.encode()).hexdigest()
    r = httpx.get(f"{gw.base}/key/list", headers={"Authorization": f"Bearer {master_hash}"})
    assert r.status_code == 401, r.text
    # The admin API still takes the token as a handle.
    assert admin(gw, "GET", "/key/info", params={"key": key["token"]})["key"] == key["token"]


def test_deleting_a_team_deletes_its_keys(gw):
    team = admin(gw, "POST", "/team/new", json={"team_alias": "doomed", "models": ["gpt-4o-mini"],
                                                 "max_budget": 1})
    key = new_key(gw, team_id=team["team_id"])
    assert chat(gw, key["key"]).status_code == 200
    assert chat(gw, key["key"], model="premium").status_code == 403
    deleted = admin(gw, "POST", "/team/delete", json={"team_ids": [team["team_id"]]})
    # Refused, not widened to every model without a budget.
    assert chat(gw, key["key"], model="premium").status_code == 401
    assert chat(gw, key["key"]).status_code == 401
    assert deleted["deleted_keys"] == [key["token"]]


def test_errors_carry_a_request_id_not_internals(gw):
    r = chat(gw, MASTER, model="unreachable")
    assert r.status_code == 503, r.text
    for leak in ("127.0.0.1", "internal-route", "http://", "error sending request"):
        assert leak not in r.text, r.text
    request_id = r.headers["x-request-id"]
    assert request_id in r.json()["error"]["message"]
    # The details are in the log, under the same id.
    log = gw.log.read_text()
    assert any(request_id in line and "internal-route-3e1f" in line for line in log.splitlines())


def test_model_lists_wildcards_and_access_groups(gw):
    only_mini = new_key(gw, models=["gpt-4o-mini"])["key"]
    with pytest.raises(openai.PermissionDeniedError) as e:
        sdk(gw, only_mini).chat.completions.create(
            model="premium", messages=[{"role": "user", "content": "hi"}])
    assert "premium" in str(e.value)
    wildcard = new_key(gw, models=["openai/*"])["key"]
    assert chat(gw, wildcard, model="premium").status_code == 200
    group = new_key(gw, models=["premium-group"])["key"]
    assert chat(gw, group, model="premium").status_code == 200
    assert chat(gw, group, model="gpt-4o-mini").status_code == 403


def test_admin_api_needs_the_master_key(gw):
    key = new_key(gw)["key"]
    for path in ("/key/list", "/team/list", "/global/spend", "/spend/logs"):
        r = httpx.get(f"{gw.base}{path}", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403, (path, r.text)
        assert httpx.get(f"{gw.base}{path}").status_code == 401
    r = httpx.post(f"{gw.base}/key/generate", headers={"Authorization": f"Bearer {key}"}, json={})
    assert r.status_code == 403


def test_key_team_user_lifecycle(gw):
    team = admin(gw, "POST", "/team/new", json={"team_alias": "search", "max_budget": 10,
                                                 "models": ["gpt-4o-mini"]})
    user = admin(gw, "POST", "/user/new", json={"user_email": "ana@example.com"})
    assert user["key"].startswith("sk-")
    key = new_key(gw, team_id=team["team_id"], user_id=user["user_id"], max_budget=5,
                  budget_duration="30d", rpm_limit=100, metadata={"env": "test"})
    assert key["key"].startswith("sk-") and key["token"] != key["key"]
    info = admin(gw, "GET", "/key/info", params={"key": key["key"]})["info"]
    assert info["key_alias"] == key["key_alias"] and info["max_budget"] == 5
    assert "key" not in info, "the secret is shown once, at creation"
    listed = admin(gw, "GET", "/key/list", params={"team_id": team["team_id"],
                                                   "return_full_object": "true"})
    assert [k["token"] for k in listed["keys"]] == [key["token"]]
    admin(gw, "POST", "/key/update", json={"key": key["key"], "max_budget": 7})
    assert admin(gw, "GET", "/key/info", params={"key": key["token"]})["info"]["max_budget"] == 7
    team_info = admin(gw, "GET", "/team/info", params={"team_id": team["team_id"]})
    assert team_info["team_info"]["team_alias"] == "search"
    assert admin(gw, "GET", "/user/info", params={"user_id": user["user_id"]})["user_id"] == user["user_id"]
    assert chat(gw, key["key"]).status_code == 200
    # The team's model list binds its keys too.
    assert chat(gw, key["key"], model="premium").status_code == 403
    deleted = admin(gw, "POST", "/key/delete", json={"keys": [key["key"]]})
    assert deleted["deleted_keys"] == [key["token"]]
    assert chat(gw, key["key"]).status_code == 401
    r = httpx.get(f"{gw.base}/team/info", params={"team_id": "nope"},
                  headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 404
    r = httpx.post(f"{gw.base}/key/generate", json={"budget_duration": "fortnightly"},
                   headers={"Authorization": f"Bearer {MASTER}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "budget_duration"


def test_exceeded_budget_is_refused(gw):
    first = chat(gw, MASTER, content="question 0", cache={"no-cache": True})
    assert "x-litellm-cache-hit" not in first.headers
    one = float(first.headers["x-litellm-response-cost"])
    assert one > 0
    key = new_key(gw, max_budget=one * 3.5)["key"]
    codes = [chat(gw, key, content=f"question {i}", cache={"no-cache": True}).status_code
             for i in range(8)]
    assert codes[:4] == [200] * 4 and set(codes[4:]) == {400}, codes
    r = chat(gw, key)
    body = r.json()["error"]
    assert body["type"] == "budget_exceeded" and "Budget has been exceeded" in body["message"]


def test_spend_equals_sum_of_costs_after_1000_concurrent_requests(gw):
    key = new_key(gw)
    secret, token = key["key"], key["token"]

    async def run():
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            async def one(i):
                r = await client.post(
                    f"{gw.base}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {secret}"},
                    json={"model": "gpt-4o-mini", "cache": {"no-cache": True, "no-store": True},
                          "messages": [{"role": "user", "content": "count " + "x" * (i % 37)}]})
                assert r.status_code == 200, r.text
                return float(r.headers["x-litellm-response-cost"])
            return await asyncio.gather(*(one(i) for i in range(1000)))

    costs = asyncio.run(run())
    expected = sum(costs)
    assert expected > 0
    total = admin(gw, "GET", "/global/spend", params={"api_key": token})["spend"]
    assert abs(total - expected) < 1e-9, (total, expected)
    info = admin(gw, "GET", "/key/info", params={"key": token})["info"]
    assert abs(info["spend"] - expected) < 1e-9
    logs = admin(gw, "GET", "/spend/logs", params={"api_key": token})
    assert len(logs) == 1000 and all(l["model"] == "gpt-4o-mini" for l in logs)


def test_response_cache(gw):
    key = new_key(gw)["key"]
    content = f"cache me {uuid.uuid4()}"
    a = chat(gw, key, content=content)
    b = chat(gw, key, content=content)
    assert a.status_code == b.status_code == 200
    assert "x-litellm-cache-hit" not in a.headers
    assert b.headers["x-litellm-cache-hit"] == "True"
    assert float(b.headers["x-litellm-response-cost"]) == 0.0
    assert b.json()["choices"] == a.json()["choices"]
    # A different parameter is a different entry; no-cache skips the lookup.
    assert "x-litellm-cache-hit" not in chat(gw, key, content=content, temperature=0.5).headers
    assert "x-litellm-cache-hit" not in chat(gw, key, content=content,
                                             cache={"no-cache": True}).headers
    bad = chat(gw, key, content=content, cache={"ttl": "soon"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cache"
    metrics = httpx.get(f"{gw.base}/metrics").text
    assert 'gateway_cache_total{model="gpt-4o-mini",result="hit"}' in metrics


def test_streams_are_charged_from_their_usage_chunk(gw):
    key = new_key(gw)
    client = sdk(gw, key["key"])
    # The client does not ask for usage: the gateway does, charges it, and
    # drops the usage chunk again.
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "stream it"}]))
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "Hello from the mock upstream."
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "stream it"}]))
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens > 0
    admin(gw, "GET", "/global/spend")  # writes the queue
    logs = admin(gw, "GET", "/spend/logs", params={"api_key": key["token"]})
    assert len(logs) == 2 and all(l["completion_tokens"] > 0 and l["cost"] > 0 for l in logs)
    assert all(l["status"] == "success" for l in logs)


def test_anthropic_sdk_uses_virtual_keys_too(gw):
    import anthropic
    key = new_key(gw)["key"]
    client = anthropic.Anthropic(base_url=gw.base, api_key=key, max_retries=0)
    msg = client.messages.create(model="gpt-4o-mini", max_tokens=20,
                                 messages=[{"role": "user", "content": "hi from anthropic"}])
    assert msg.content[0].text == "Hello from the mock upstream."
    with pytest.raises(anthropic.AuthenticationError) as e:
        anthropic.Anthropic(base_url=gw.base, api_key="sk-wrong", max_retries=0).messages.create(
            model="gpt-4o-mini", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["type"] == "error"


def last_upstream_user_text(mock) -> str:
    journal = httpx.get(f"{mock.url}/__aimock/journal").json()
    entries = journal if isinstance(journal, list) else journal.get("entries", journal)
    body = entries[-1]["body"]
    return body["messages"][-1]["content"]


def test_guardrails(gw, mock):
    key = new_key(gw)["key"]
    text = ("Mail ana.lopez@example.com or call +1 415-555-0132 from 10.20.30.40, "
            "card 4111 1111 1111 1111, order 1234 5678 9012 3456.")
    r = chat(gw, key, model="guarded", content=text, cache={"no-cache": True})
    assert r.status_code == 200, r.text
    sent = last_upstream_user_text(mock)
    for secret in ("ana.lopez@example.com", "415-555-0132", "10.20.30.40", "4111 1111 1111 1111"):
        assert secret not in sent, sent
    assert "<EMAIL_ADDRESS>" in sent and "<CREDIT_CARD>" in sent
    # Fails the Luhn check: not a card number, left alone.
    assert "1234 5678 9012 3456" in sent
    # The model without the guardrail sends text unchanged.
    chat(gw, key, content=text, cache={"no-cache": True})
    assert "ana.lopez@example.com" in last_upstream_user_text(mock)
    # default_on banned keywords apply to every model.
    r = chat(gw, key, content="status of Project-Zeus?")
    assert r.status_code == 400 and r.json()["error"]["type"] == "guardrail_violation"
    assert "no-codenames" in r.json()["error"]["message"]
    # A key can carry guardrails of its own.
    masked_key = new_key(gw, guardrails=["pii-mask"])["key"]
    chat(gw, masked_key, content="write to bob@example.org", cache={"no-cache": True})
    assert "bob@example.org" not in last_upstream_user_text(mock)


def test_metrics_and_no_secret_in_the_log(gw):
    key = new_key(gw, key_alias="metrics-alias")
    assert chat(gw, key["key"]).status_code == 200
    metrics = httpx.get(f"{gw.base}/metrics",
                        headers={"Authorization": f"Bearer {MASTER}"}).text
    for needle in ('gateway_requests_total{key_alias="metrics-alias",model="gpt-4o-mini",status="success"}',
                   "gateway_spend_usd_total", "gateway_tokens_total",
                   "gateway_request_duration_seconds_bucket", "gateway_auth_failures_total",
                   "gateway_rejections_total", "gateway_spend_log_batches_total"):
        assert needle in metrics, needle
    # Without the master key: totals, but no key aliases or teams.
    for headers in ({}, {"Authorization": f"Bearer {key['key']}"}):
        public = httpx.get(f"{gw.base}/metrics", headers=headers).text
        assert "metrics-alias" not in public and "key_alias=" not in public
        assert 'gateway_requests_total{model="gpt-4o-mini",status="success"}' in public
        assert "gateway_spend_usd_total" in public
    assert httpx.get(f"{gw.base}/metrics",
                     headers={"Authorization": "Bearer sk-wrong"}).status_code == 401
    assert sdk(gw, MASTER).models.retrieve("gpt-4o-mini").id == "gpt-4o-mini"
    # One access line per request, naming the key by alias, never by secret.
    deadline = time.time() + 10
    while time.time() < deadline and "key=master" not in gw.log.read_text():
        time.sleep(0.2)
    log = gw.log.read_text()
    assert re.search(r'"POST /v1/chat/completions" 200 model=gpt-4o-mini tokens_in=\d+ '
                     r'tokens_out=\d+ latency_ms=\d+ key=metrics-alias request_id=', log), log[-3000:]
    assert '"GET /v1/models/gpt-4o-mini" 200' in log and "key=master" in log
    for secret in (MASTER, UPSTREAM_KEY, key["key"]):
        assert secret not in log


def test_models_retrieve_needs_a_key_and_knows_the_models(gw):
    key = new_key(gw)["key"]
    card = sdk(gw, key).models.retrieve("premium")
    assert card.id == "premium" and card.object == "model"
    with pytest.raises(openai.NotFoundError) as e:
        sdk(gw, key).models.retrieve("openai/no-such-model")
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.AuthenticationError):
        sdk(gw, "sk-wrong").models.retrieve("premium")


def bench(base: str, model: str, key: str = None, endpoint="/v1/chat/completions"):
    from conftest import ENGINE
    env = {**os.environ, "OPENAI_API_KEY": key or ""}
    out = subprocess.run(
        [str(ENGINE), "bench", "serve", "--base-url", base, "--model", model,
         "--endpoint", endpoint, "--num-prompts", "8", "--random-input-len", "8",
         "--random-output-len", "8", "--request-rate", "50", "--seed", "2"],
        capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"Successful requests:\s+8\s", out.stdout), out.stdout
    assert key is None or key not in out.stdout + out.stderr
    print(out.stdout)
    return out.stdout


def test_bench_serve_against_aimock_and_through_the_gateway(mock, gw):
    bench(mock.url, "gpt-4o-mini")
    bench(gw.base, "gpt-4o-mini", key=new_key(gw)["key"])


def two_replicas(mock, tmp, extra):
    """Two gateways sharing PostgreSQL (keys), Redis (limits, cache)."""
    db = "postgres://postgres@127.0.0.1:5432/test"
    namespace = f"engine-test-{uuid.uuid4().hex[:8]}:"
    text = config(mock.url, db, extra, cache="{type: redis, host: 127.0.0.1, port: 6379, "
                  f"namespace: '{namespace}'}}")
    return Gateway(text, tmp), Gateway(text, tmp)


@pytest.mark.needs("REQUIRE_REDIS",
                   None if reachable("127.0.0.1", 6379) else "no Redis on 127.0.0.1:6379")
@pytest.mark.needs("REQUIRE_POSTGRES",
                   None if reachable("127.0.0.1", 5432) else "no PostgreSQL on 127.0.0.1:5432")
def test_limits_and_cache_are_shared_by_two_replicas_over_redis(mock, tmp_path):
    a, b = two_replicas(mock, tmp_path, "router_settings: {redis_host: 127.0.0.1, redis_port: 6379}")
    try:
        key = new_key(a, rpm_limit=10)["key"]
        results = []
        for i in range(30):
            gw = (a, b)[i % 2]
            results.append(chat(gw, key, content=f"rpm {i}", cache={"no-cache": True}))
        ok = [r for r in results if r.status_code == 200]
        limited = [r for r in results if r.status_code == 429]
        assert len(ok) == 10 and len(limited) == 20, [r.status_code for r in results]
        assert int(limited[0].headers["retry-after"]) >= 1
        assert "rpm" in limited[0].json()["error"]["message"]
        # tpm from actual usage: one answer's tokens, times 2.5.
        first = chat(b, MASTER, content="measure tokens", cache={"no-cache": True}).json()
        per_request = first["usage"]["total_tokens"]
        key = new_key(b, tpm_limit=int(per_request * 2.5))["key"]
        codes = []
        for i in range(8):
            gw = (a, b)[i % 2]
            codes.append(chat(gw, key, content="measure tokens", cache={"no-cache": True}).status_code)
            time.sleep(1.0)  # the tokens are counted just after each answer (later under load)
        assert codes[:3] == [200, 200, 200] and set(codes[3:]) == {429}, codes
        # The response cache is shared too: stored by one, hit on the other.
        content = f"shared cache {uuid.uuid4()}"
        assert "x-litellm-cache-hit" not in chat(a, MASTER, content=content).headers
        assert chat(b, MASTER, content=content).headers["x-litellm-cache-hit"] == "True"
    finally:
        a.stop()
        b.stop()


def test_kill_9_under_load_loses_at_most_the_batch_interval(mock, tmp_path):
    db = f"sqlite://{tmp_path}/crash.db"
    text = config(mock.url, db)
    gw = Gateway(text, tmp_path)
    team = admin(gw, "POST", "/team/new", json={"team_alias": "crash-team"})
    user = admin(gw, "POST", "/user/new", json={"user_email": "crash@example.com",
                                                 "auto_create_key": False})
    keys = [new_key(gw, team_id=team["team_id"], user_id=user["user_id"]) for _ in range(5)]
    done = []  # (finish time, cost)
    stop = threading.Event()

    def load(secret):
        with httpx.Client(timeout=30) as client:
            i = 0
            while not stop.is_set():
                try:
                    r = client.post(f"{gw.base}/v1/chat/completions",
                                    headers={"Authorization": f"Bearer {secret}"},
                                    json={"model": "gpt-4o-mini", "cache": {"no-cache": True},
                                          "messages": [{"role": "user", "content": f"load {i}"}]})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    done.append((time.monotonic(), float(r.headers["x-litellm-response-cost"])))
                i += 1

    threads = [threading.Thread(target=load, args=(k["key"],)) for k in keys]
    for t in threads:
        t.start()
    time.sleep(4)
    killed_at = time.monotonic()
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait()
    stop.set()
    for t in threads:
        t.join()
    answered = sum(c for _, c in done)
    # Everything answered more than one batch interval (plus the time a
    # batch write takes, bounded generously) before the kill must be there.
    settled = sum(c for t, c in done if t < killed_at - BATCH_S - 0.5)
    assert len(done) > 50, "the load did not run"

    gw = Gateway(text, tmp_path)
    try:
        for k in keys:
            assert admin(gw, "GET", "/key/info", params={"key": k["key"]})["info"]["team_id"] == team["team_id"]
        assert admin(gw, "GET", "/team/info", params={"team_id": team["team_id"]})["team_id"] == team["team_id"]
        assert admin(gw, "GET", "/user/info", params={"user_id": user["user_id"]})["user_id"] == user["user_id"]
        stored = admin(gw, "GET", "/global/spend", params={"team_id": team["team_id"]})["spend"]
        assert settled - 1e-9 <= stored <= answered + 1e-9, (settled, stored, answered)
        lost = answered - stored
        print(f"kill -9: answered {answered:.6f} USD, stored {stored:.6f}, lost {lost:.6f} "
              f"({lost / answered:.1%}) with proxy_batch_write_at={BATCH_S}")
    finally:
        gw.stop()


class TcpProxy:
    """A TCP proxy to PostgreSQL that a test can cut: the database seems to
    go away (new connections refused, open ones reset)."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.was_cut = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                inbound, _ = self.listener.accept()
            except OSError:
                return
            try:
                outbound = socket.create_connection(self.target)
            except OSError:
                inbound.close()
                continue
            with self.lock:
                if self.was_cut:
                    # Accepted in the race with `cut`: it must not reach
                    # the database, or the outage has a way through.
                    inbound.close()
                    outbound.close()
                    return
                self.conns += [inbound, outbound]
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        # `close` alone does not wake a thread blocked in `accept` on Linux:
        # the socket would keep listening (and let one connection through to
        # the database) until that accept returned. `shutdown` wakes it.
        with self.lock:
            self.was_cut = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def psql(sql: str):
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-q",
                    "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True)


@pytest.mark.needs("REQUIRE_POSTGRES",
                   "no PostgreSQL on 127.0.0.1:5432" if not reachable("127.0.0.1", 5432)
                   else "psql missing" if not shutil.which("psql") else None)
def test_kill_9_while_postgres_is_down_loses_at_most_the_batch_interval(mock, tmp_path):
    """The database goes away under load, the gateway keeps answering
    (cached keys) and journals the spend; a `kill -9` then loses at most
    the last batch interval, as with the database up: the next start
    replays the journal."""
    schema = f"gw_kill9_{uuid.uuid4().hex[:12]}"
    psql(f'CREATE SCHEMA "{schema}"')
    proxy = TcpProxy(("127.0.0.1", 5432))
    url = "postgres://postgres@127.0.0.1:{port}/test?options[search_path]=" + schema
    gw = Gateway(config(mock.url, url.format(port=proxy.port)), tmp_path)
    try:
        team = admin(gw, "POST", "/team/new", json={"team_alias": "outage-team"})
        keys = [new_key(gw, team_id=team["team_id"]) for _ in range(5)]
        done = []  # (finish time, cost)
        stop = threading.Event()

        def load(secret):
            with httpx.Client(timeout=30) as client:
                i = 0
                while not stop.is_set():
                    try:
                        r = client.post(f"{gw.base}/v1/chat/completions",
                                        headers={"Authorization": f"Bearer {secret}"},
                                        json={"model": "gpt-4o-mini", "cache": {"no-cache": True},
                                              "messages": [{"role": "user", "content": f"outage {i}"}]})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        done.append((time.monotonic(), float(r.headers["x-litellm-response-cost"])))
                    i += 1

        threads = [threading.Thread(target=load, args=(k["key"],)) for k in keys]
        for t in threads:
            t.start()
        time.sleep(1.5)
        proxy.cut()
        cut_at = time.monotonic()
        # Keys stay cached for up to 5 s after the last written batch. A
        # batch write fails at once on a connection the cut broke, or after
        # the pool's 3 s acquire timeout on a fresh one: wait for that
        # failure (the journal's reason to exist), within the cache window.
        time.sleep(2.5)
        deadline = cut_at + 4.5
        while "writing spend logs failed" not in gw.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        killed_at = time.monotonic()
        gw.proc.send_signal(signal.SIGKILL)
        gw.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        answered = sum(c for _, c in done)
        settled = sum(c for t, c in done if t < killed_at - BATCH_S - 0.5)
        during_outage = sum(c for t, c in done if cut_at < t < killed_at - BATCH_S - 0.5)
        assert during_outage > 0, "no request was answered while the database was down"
        assert "writing spend logs failed" in gw.log.read_text()
    finally:
        if gw.proc.poll() is None:
            gw.proc.kill()
    # Restart with the database back (same journal folder, beside the config).
    gw = Gateway(config(mock.url, url.format(port=5432)), tmp_path)
    try:
        stored = admin(gw, "GET", "/global/spend", params={"team_id": team["team_id"]})["spend"]
        assert settled - 1e-9 <= stored <= answered + 1e-9, (settled, stored, answered)
        assert "replaying spend journal" in gw.log.read_text()
        lost = answered - stored
        print(f"kill -9 with PostgreSQL down: answered {answered:.6f} USD "
              f"({during_outage:.6f} during the outage), stored {stored:.6f}, lost {lost:.6f}")
    finally:
        gw.stop()
        psql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
