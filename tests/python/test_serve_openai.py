"""End to end: the official `openai` SDK against `engine serve --model smollm2`."""
import concurrent.futures

import httpx
import openai
import pytest

MODEL = "smollm2"
CHAT = [{"role": "user", "content": "Name three colors."}]


def test_models_lists_the_served_model(client):
    ids = [m.id for m in client.models.list().data]
    assert ids == [MODEL]


def test_chat_non_streaming(client):
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=16, temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 16
    assert r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streaming_matches_non_streaming(client):
    full = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=24, temperature=0)
    stream = client.chat.completions.create(
        model=MODEL, messages=CHAT, max_tokens=24, temperature=0, stream=True,
        stream_options={"include_usage": True})
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == full.choices[0].message.content
    assert finish == full.choices[0].finish_reason
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_completions(client):
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8,
                                  temperature=0)
    assert r.choices[0].text
    assert r.usage.completion_tokens == 8
    assert r.choices[0].finish_reason == "length"


def test_completions_streaming(client):
    full = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0)
    text = "".join(c.choices[0].text for c in client.completions.create(
        model=MODEL, prompt="Once upon a time", max_tokens=12, temperature=0, stream=True) if c.choices)
    assert text == full.choices[0].text


def test_n_2_gives_two_choices(client):
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12, n=2,
                                       temperature=1.0, seed=5)
    assert sorted(c.index for c in r.choices) == [0, 1]
    assert all(c.message.content for c in r.choices)


def test_logprobs(client):
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=5, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for tok in content:
        assert tok.logprob <= 0
        assert len(tok.top_logprobs) == 3
        # Greedy: the sampled token is the most likely one.
        assert tok.top_logprobs[0].logprob == pytest.approx(tok.logprob, abs=1e-4)


def test_stop_string_cuts_the_output(client):
    free = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0)
    text = free.choices[0].text
    assert " 7" in text, text
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0,
                                  stop=[" 7"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[: text.index(" 7")]


def test_finish_reason_length_and_stop(client):
    r = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=2, temperature=0)
    assert r.choices[0].finish_reason == "length"
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say just: yes"}], max_tokens=64,
        temperature=0)
    assert r.choices[0].finish_reason == "stop"


def test_same_seed_same_text(client):
    kw = dict(model=MODEL, messages=CHAT, max_tokens=20, temperature=1.0, top_p=0.95)
    a = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    b = client.chat.completions.create(seed=1234, **kw).choices[0].message.content
    c = client.chat.completions.create(seed=4321, **kw).choices[0].message.content
    assert a == b
    assert a != c


def test_32_concurrent_greedy_requests_equal_alone(client):
    prompts = [f"Count from {i} to {i + 5}." for i in range(32)]

    def ask(p):
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": p}], max_tokens=16,
            temperature=0).choices[0].message.content

    alone = [ask(p) for p in prompts[:4]]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, prompts))
    assert together[:4] == alone
    # And the rest equal their solo runs too (spot check two more).
    assert together[10] == ask(prompts[10])
    assert together[31] == ask(prompts[31])


def test_greedy_equals_transformers(client, expected_smollm2):
    for case in expected_smollm2["cases"]:
        r = client.completions.create(model=MODEL, prompt=case["prompt_ids"], max_tokens=32,
                                      temperature=0, extra_body={"ignore_eos": True,
                                                                 "skip_special_tokens": False})
        # Compare through the chat endpoint too: same tokens, same text.
        chat = client.chat.completions.create(model=MODEL, messages=case["messages"], max_tokens=32,
                                              temperature=0, extra_body={"ignore_eos": True,
                                                                         "skip_special_tokens": False})
        assert chat.choices[0].message.content == r.choices[0].text
        assert r.choices[0].text == case["greedy_text"], case["messages"]


@pytest.mark.parametrize("body,status", [
    ({"model": MODEL, "messages": []}, 400),
    ({"model": MODEL, "messages": CHAT, "max_tokens": -1}, 400),
    ({"model": MODEL, "messages": CHAT, "temperature": 5}, 400),
    ({"model": "no-such-model", "messages": CHAT}, 404),
    ({"model": MODEL, "messages": [{"role": "user", "content": "word " * 3000}]}, 400),
    ({"model": MODEL}, 400),
])
def test_bad_requests_get_openai_errors(server, body, status):
    r = httpx.post(f"{server.base}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]


def test_malformed_json_and_server_keeps_serving(server, client):
    r = httpx.post(f"{server.base}/v1/chat/completions", content=b"{not json",
                   headers={"content-type": "application/json"}, timeout=10)
    assert r.status_code == 400
    assert "error" in r.json()
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=-5)
    ok = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=4, temperature=0)
    assert ok.choices[0].message.content


def test_prefix_cache_hits_show_in_metrics(server, client):
    def hits():
        text = httpx.get(f"{server.base}/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("vllm:prefix_cache_hits_total"):
                return float(line.split()[-1])
        raise AssertionError("no vllm:prefix_cache_hits_total in /metrics")

    system = "You are a meticulous assistant. " * 40
    before = hits()
    for q in ("What is 2+2?", "What is 3+3?"):
        client.chat.completions.create(
            model=MODEL, max_tokens=2, temperature=0,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": q}])
    assert hits() - before >= 128


def test_tokenize_and_detokenize(server):
    r = httpx.post(f"{server.base}/tokenize", json={"model": MODEL, "prompt": "Hello world"}).json()
    assert r["count"] == len(r["tokens"]) > 0
    d = httpx.post(f"{server.base}/detokenize", json={"model": MODEL, "tokens": r["tokens"]}).json()
    assert d["prompt"] == "Hello world"
