"""End to end: the official `openai` SDK against `engine serve --model smollm2`."""
import concurrent.futures
import json
import re
import subprocess
import time

import httpx
import openai
import pytest

from conftest import Server

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
    assert r.choices[0].finish_reason == "length"
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


COUNT_PROMPTS = [f"Count from {i} to {i + 5}." for i in range(32)]
# A greedy step whose top two logits are this close may flip with rounding
# (the same bound as workers/tests/common.rs: two bf16 logit steps).
TIE_GAP = 0.25
# SmolLM2's end of sequence as top_logprobs names it.
EOS = "<|im_end|>"


def greedy_steps(client, prompt):
    """One greedy chat answer as (token, {top-2 token: logprob}) steps and
    its finish reason."""
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], max_tokens=16,
        temperature=0, logprobs=True, top_logprobs=2)
    c = r.choices[0]
    steps = [(t.token, {x.token: x.logprob for x in t.top_logprobs}) for t in c.logprobs.content]
    return steps, c.finish_reason


def test_32_concurrent_greedy_requests_equal_alone(batch_invariant_client):
    """`--batch-invariant`: a request's greedy output does not depend on
    what runs beside it, bit for bit."""
    client = batch_invariant_client

    def ask(p):
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": p}], max_tokens=16,
            temperature=0).choices[0].message.content

    alone = [ask(p) for p in COUNT_PROMPTS[:4]]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, COUNT_PROMPTS))
    assert together[:4] == alone
    # And the rest equal their solo runs too (spot check two more).
    assert together[10] == ask(COUNT_PROMPTS[10])
    assert together[31] == ask(COUNT_PROMPTS[31])


def test_32_concurrent_greedy_requests_equal_alone_up_to_near_ties(client):
    """The default (quantized weights, bf16 activations, batched attention)
    promises less: a concurrent request's greedy tokens equal its solo run's
    until a step where the solo run's top two tokens nearly tie; past such
    a flip the contexts differ and nothing more is compared."""
    spot = [0, 1, 2, 3, 10, 31]
    alone = {i: greedy_steps(client, COUNT_PROMPTS[i]) for i in spot}
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = list(pool.map(lambda p: greedy_steps(client, p), COUNT_PROMPTS))
    assert all(steps for steps, _ in together)
    flips = []
    for i in spot:
        (want, want_finish), (got, got_finish) = alone[i], together[i]
        for n, ((w, top), (g, _)) in enumerate(zip(want, got)):
            if w != g:
                assert g in top and top[w] - top[g] <= TIE_GAP, \
                    f"prompt {i} step {n}: {g!r} alone gave {w!r} with top-2 {top}"
                flips.append((i, n))
                break
        else:
            if (len(got), got_finish) != (len(want), want_finish):
                # A flip to the end of sequence: its token is not among
                # the returned ones, so the step it took is the one after
                # the last, and the solo run had to nearly tie it there.
                n = len(got)
                assert got_finish == "stop" and n < len(want), (i, got_finish, n)
                w, top = want[n]
                assert EOS in top and top[w] - top[EOS] <= TIE_GAP, \
                    f"prompt {i} step {n}: stopped where alone gave {w!r} with top-2 {top}"
                flips.append((i, n))
    print(f"near-tie flips (prompt, step): {flips}")


def test_greedy_equals_transformers(expected_smollm2, batch_invariant_client):
    """The f32 path (`--batch-invariant` picks `--quantization none`: every
    weight dequantized, as transformers loads the file) gives transformers'
    greedy text exactly. The default quantized path's accuracy is pinned,
    with its stated tolerance, by workers/tests/smollm2_parity.rs."""
    client = batch_invariant_client
    for case in expected_smollm2["cases"]:
        r = client.completions.create(model=MODEL, prompt=case["prompt_ids"], max_tokens=32,
                                      temperature=0, extra_body={"ignore_eos": True,
                                                                 "skip_special_tokens": False})
        # Compare through the chat endpoint too: same tokens, same text.
        chat = client.chat.completions.create(
            model=MODEL, messages=case["messages"], max_tokens=32, temperature=0,
            extra_body={"ignore_eos": True, "skip_special_tokens": False})
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


# A 1x1 red PNG.
PNG_DATA_URL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
                "2mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def test_an_image_for_a_text_only_model_is_refused_not_dropped(server, client):
    """An image part would otherwise vanish from the prompt and the model
    answer a question the user did not ask."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, max_tokens=4, messages=[{
            "role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": PNG_DATA_URL}}]}])
    assert "messages[0].content[1]" in str(refused.value) and "image_url" in str(refused.value)
    # Anthropic's image block, through /v1/messages.
    r = httpx.post(f"{server.base}/v1/messages", timeout=30, json={
        "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": PNG_DATA_URL.split(",", 1)[1]}},
            {"type": "text", "text": "What is in this picture?"}]}]})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and "image" in r.json()["error"]["message"]


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


def step_counters(base):
    """`engine:steps_total` and `engine:step_phase_seconds_total` by phase."""
    got = {}
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        m = re.match(r'engine:step_phase_seconds_total\{.*phase="(\w+)".*\} (\S+)', line)
        if m:
            got[m.group(1)] = float(m.group(2))
        elif line.startswith("engine:steps_total"):
            got["steps"] = float(line.split()[-1])
    return got


def test_step_phase_counters_account_for_a_request(server):
    """A request's steps show in the phase counters: one step per output
    token at least, forward and transport time, and no more time than the
    request took (the tests run one at a time, so the server is idle
    otherwise)."""
    before = step_counters(server.base)
    assert set(before) == {"schedule", "grammar", "transport", "prepare", "forward", "sample",
                           "output", "steps"}, before
    started = time.perf_counter()
    r = httpx.post(f"{server.base}/v1/completions", timeout=120, json={
        "model": MODEL, "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0,
        "ignore_eos": True})
    wall = time.perf_counter() - started
    assert r.status_code == 200, r.text
    after = step_counters(server.base)
    grew = {k: after[k] - before[k] for k in after}
    assert grew["steps"] >= 8, grew
    assert all(v >= 0 for v in grew.values()), grew
    assert grew["forward"] > 0 and grew["transport"] > 0, grew
    assert sum(v for k, v in grew.items() if k != "steps") <= wall, (grew, wall)


def test_tokenize_and_detokenize(server):
    r = httpx.post(f"{server.base}/tokenize", json={"model": MODEL, "prompt": "Hello world"}).json()
    assert r["count"] == len(r["tokens"]) > 0
    d = httpx.post(f"{server.base}/detokenize", json={"model": MODEL, "tokens": r["tokens"]}).json()
    assert d["prompt"] == "Hello world"


# A prompt SmolLM2 answers in a short sentence that ends with EOS.
SHORT = [{"role": "user", "content": "What is the capital of France?"}]


def readme_request():
    """The first `curl ... -d '{...}'` of the README, as written."""
    from conftest import ROOT
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"curl (http://localhost:8000(/v1/chat/completions)) .*?-d '(\{.*?\})'", readme)
    assert m, "no curl example in the README"
    return m.group(2), json.loads(m.group(3))


def test_the_readme_request_gets_a_short_sensible_answer(server):
    path, body = readme_request()
    assert body.get("max_tokens"), "the README request must bound its answer"
    start = time.time()
    r = httpx.post(f"{server.base}{path}", json=body, timeout=60)
    took = time.time() - start
    assert r.status_code == 200, r.text
    answer = r.json()["choices"][0]["message"]["content"]
    assert "Tokyo" in answer, answer
    assert r.json()["usage"]["completion_tokens"] <= body["max_tokens"]
    print(f"README request answered in {took:.1f} s: {answer!r}")


def test_startup_prints_phases_url_and_a_working_request(server):
    log = server.log.read_text()
    for phase in ("model loaded in", "KV cache profiled and allocated in", "engine ready in"):
        assert phase in log, phase
    assert f"serving on http://127.0.0.1:{server.port}" in log
    m = re.search(r"engine: try: curl (\S+) -H 'content-type: application/json' -d '(.*)'", log)
    assert m, log[-2000:]
    r = httpx.post(m.group(1), json=json.loads(m.group(2)), timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"], r.text
    assert "default sampling parameters" in log and "temperature=0.2, top_p=0.9" in log


def test_stats_line_and_access_log_appear(server, client):
    client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0)
    list(client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=8, temperature=0,
                                        stream=True))
    deadline = time.time() + 20
    stats = access = []
    while time.time() < deadline:
        log = server.log.read_text()
        stats = re.findall(r"Engine 000: Avg prompt throughput: [\d.]+ tokens/s, Avg generation "
                           r"throughput: [\d.]+ tokens/s, Running: \d+ reqs, Waiting: \d+ reqs, "
                           r"KV cache usage: [\d.]+%, Prefix cache hit rate: [\d.]+%", log)
        access = re.findall(r'"POST /v1/chat/completions" 200 model=smollm2 tokens_in=(\d+) '
                            r'tokens_out=(\d+) latency_ms=\d+ key=\S+ request_id=\S+', log)
        if stats and len(access) >= 2:
            break
        time.sleep(0.5)
    assert stats, "no stats line"
    assert len(access) >= 2, "no access line for both requests"
    # The stream's line has its token counts too (usage asked for by the route).
    assert all(int(i) > 0 and 0 < int(o) <= 8 for i, o in access[-2:]), access


def test_models_retrieve(client, server):
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model" and m.owned_by == "engine"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.body["code"] == "model_not_found"
    assert httpx.get(f"{server.base}/v1/models/a/b").json()["error"]["code"] == "model_not_found"


# "Par" ends the answer inside the token " Paris": the logprobs must stop
# where the content does.
STOPS = [None, ["Par"]]


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("stream", [False, True])
def test_chat_logprob_tokens_spell_the_content(client, stream, stop):
    kw = dict(model=MODEL, messages=SHORT, max_tokens=40, temperature=0, logprobs=True,
              top_logprobs=2, stop=stop)
    if stream:
        text, tokens, finish = "", [], None
        for chunk in client.chat.completions.create(stream=True, **kw):
            for c in chunk.choices:
                text += c.delta.content or ""
                if c.logprobs and c.logprobs.content:
                    tokens += [t.token for t in c.logprobs.content]
                finish = c.finish_reason or finish
    else:
        r = client.chat.completions.create(**kw)
        text, finish = r.choices[0].message.content, r.choices[0].finish_reason
        tokens = [t.token for t in r.choices[0].logprobs.content]
    assert finish == "stop", "the answer should end with EOS, which must not show"
    assert "".join(tokens) == text
    assert "<|im_end|>" not in tokens
    if stop:
        assert text and "Paris" not in text, text


@pytest.mark.parametrize("stop", STOPS)
@pytest.mark.parametrize("stream", [False, True])
def test_completion_logprob_tokens_spell_the_text(client, stream, stop):
    kw = dict(model=MODEL, prompt="<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
              "<|im_start|>assistant\n", max_tokens=40, temperature=0, logprobs=1, stop=stop)
    if stream:
        text, tokens, finish = "", [], None
        for chunk in client.completions.create(stream=True, **kw):
            for c in chunk.choices:
                text += c.text
                if c.logprobs:
                    tokens += c.logprobs.tokens
                finish = c.finish_reason or finish
    else:
        r = client.completions.create(**kw)
        text, finish, tokens = r.choices[0].text, r.choices[0].finish_reason, r.choices[0].logprobs.tokens
    assert finish == "stop"
    assert "".join(tokens) == text
    if stop:
        assert text and "Paris" not in text, text


def test_bench_serve_against_this_server(server, tmp_path):
    from conftest import ENGINE
    out = subprocess.run(
        [str(ENGINE), "bench", "serve", "--base-url", server.base, "--model", MODEL,
         "--endpoint", "/v1/completions", "--num-prompts", "4", "--random-input-len", "16",
         "--random-output-len", "8", "--ignore-eos", "--max-concurrency", "2", "--seed", "1",
         "--save-result", "--result-dir", str(tmp_path), "--result-filename", "r.json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout)
    assert re.search(r"Successful requests:\s+4\s", out.stdout), out.stdout
    for line in ("Request throughput (req/s):",
                 "Output token throughput (tok/s):", "Mean TTFT (ms):", "P99 TPOT (ms):",
                 "Median ITL (ms):", "P90 ITL (ms):"):
        assert line in out.stdout, line
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["completed"] == 4 and result["total_output_tokens"] == 32
    assert result["model_id"] == MODEL and result["mean_ttft_ms"] > 0
