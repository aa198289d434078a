"""The router under aimock's chaos modes: two deployments of one model and
a fallback group, every upstream failing about 20% of calls (500s, 429s
with Retry-After, malformed JSON bodies, connections dropped before the
response), 2,000 requests (a quarter of them streamed): at least 99.5%
succeed, cooldowns show in /metrics, and no request outlives its timeout.

Plus what chaos cannot retry: a stream cut after its first bytes reaches
the client as an error event, and is not retried."""
import asyncio
import json
import re
import time

import httpx
import pytest

from conftest import ROOT, Aimock, Gateway

FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "gateway.json"
CUT_FIXTURES = ROOT / "tests" / "fixtures" / "aimock" / "openai.json"  # has "cut me"
# Each action is drawn in turn (drop, malformed, rate limit, disconnect):
# 1 - (1 - 0.055)^4 = 20.2% of calls fail.
CHAOS = ["--chaos-drop", "0.055", "--chaos-malformed", "0.055",
         "--chaos-ratelimit", "0.055", "--chaos-disconnect", "0.055"]
TIMEOUT_S = 10
REQUESTS = 2000
CONCURRENCY = 32


@pytest.fixture(scope="module")
def chaotic_gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chaos")
    mocks = [Aimock(FIXTURES, CHAOS, log=tmp / f"aimock-{i}.log") for i in range(3)]
    a, b, backup = (m.url for m in mocks)
    config = f"""
model_list:
  - model_name: chaotic
    litellm_params: {{model: openai/gpt-4o, api_base: {a}/v1, api_key: sk-a}}
    model_info: {{id: chaotic-a}}
  - model_name: chaotic
    litellm_params: {{model: openai/gpt-4o, api_base: {b}/v1, api_key: sk-b}}
    model_info: {{id: chaotic-b}}
  - model_name: backup
    litellm_params: {{model: anthropic/claude-3-5-sonnet-20241022, api_base: {backup}, api_key: sk-c}}
    model_info: {{id: backup-claude}}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 3
  timeout: {TIMEOUT_S}
  cooldown_time: 1
  fallbacks: [{{chaotic: [backup]}}]
"""
    gw = Gateway(config, tmp)
    yield gw
    gw.stop()
    for m in mocks:
        m.stop()


async def one_request(client: httpx.AsyncClient, i: int):
    """(ok, seconds, detail) of request `i`; every fourth one streams."""
    stream = i % 4 == 0
    body = {"model": "chaotic", "max_tokens": 20, "stream": stream,
            "messages": [{"role": "user", "content": "say hello"}]}
    start = time.monotonic()
    try:
        if not stream:
            r = await client.post("/v1/chat/completions", json=body)
            ok = (r.status_code == 200 and
                  r.json()["choices"][0]["message"]["content"] == "Hello from the mock upstream!")
            return ok, time.monotonic() - start, f"{r.status_code} {r.text[:200]}"
        text, done, events = "", False, []
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return False, time.monotonic() - start, f"{r.status_code} {(await r.aread())[:200]}"
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                events.append(data[:120])
                if data == "[DONE]":
                    done = True
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    break
                for c in chunk["choices"]:
                    text += c["delta"].get("content") or ""
        ok = done and text == "Hello from the mock upstream!"
        return ok, time.monotonic() - start, f"stream {events[-2:]}"
    except httpx.HTTPError as e:
        return False, time.monotonic() - start, repr(e)


async def run_load(base: str):
    sem = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S * 3, limits=limits) as client:
        async def guarded(i):
            async with sem:
                return await one_request(client, i)
        return await asyncio.gather(*(guarded(i) for i in range(REQUESTS)))


def metric_sum(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


def test_two_thousand_requests_through_twenty_percent_chaos(chaotic_gateway):
    results = asyncio.run(run_load(chaotic_gateway.base))
    failures = [(i, d) for i, (ok, _, d) in enumerate(results) if not ok]
    rate = 1 - len(failures) / REQUESTS
    print(f"success {rate:.2%} ({REQUESTS - len(failures)}/{REQUESTS}); failures: {failures[:5]}")
    assert rate >= 0.995, failures[:10]
    slowest = max(s for _, s, _ in results)
    assert slowest < TIMEOUT_S + 1.0, f"a request took {slowest:.1f} s (timeout {TIMEOUT_S} s)"

    metrics = httpx.get(f"{chaotic_gateway.base}/metrics").text
    assert metric_sum(metrics, "gateway_deployment_cooldowns_total") > 0, "no cooldown recorded"
    assert metric_sum(metrics, "gateway_retries_total") > 0
    for status in ("500", "429"):
        assert re.search(rf'gateway_upstream_errors_total{{[^}}]*status="{status}"', metrics), \
            f"no upstream {status} counted"
    log = chaotic_gateway.log.read_text()
    assert "cooldown" in log.lower(), "cooldowns are logged"
    assert "sk-a" not in log and "sk-b" not in log, "keys never appear in the log"


def test_stream_cut_after_first_bytes_is_an_error_event_not_a_retry(tmp_path):
    mock = Aimock(CUT_FIXTURES, log=tmp_path / "aimock.log")
    config = f"""
model_list:
  - model_name: cut
    litellm_params: {{model: openai/gpt-4o, api_base: {mock.url}/v1, api_key: sk}}
router_settings: {{num_retries: 3, timeout: {TIMEOUT_S}}}
"""
    gw = Gateway(config, tmp_path)
    try:
        body = {"model": "cut", "stream": True,
                "messages": [{"role": "user", "content": "cut me"}]}
        with httpx.stream("POST", f"{gw.base}/v1/chat/completions", json=body,
                          timeout=TIMEOUT_S * 2) as r:
            assert r.status_code == 200
            datas = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
        assert datas[-1] != "[DONE]"
        assert "error" in json.loads(datas[-1])
        assert any("content" in json.dumps(json.loads(d)) for d in datas[:-1]), datas
        journal = httpx.get(f"{mock.url}/__aimock/journal").json()
        entries = journal if isinstance(journal, list) else journal.get("entries", journal)
        calls = [e for e in entries if "chat/completions" in json.dumps(e)]
        assert len(calls) == 1, f"a stream cut after its first bytes was retried: {len(calls)}"
    finally:
        gw.stop()
        mock.stop()
