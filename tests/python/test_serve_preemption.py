"""End to end: preemption by recompute gives the same greedy outputs.

With the KV cache forced tiny, 16 concurrent long generations all complete,
and each one's text, token count and finish reason are exactly what the
large-cache session server gives for the same request. The tiny server's
`vllm:num_preemptions_total` must have grown, so preemption really ran.

Why these numbers force preemption. SmolLM2-135M keeps, per token,
30 layers x 2 (K, V) x 3 KV heads x 64 head_dim x 4 bytes (f32) = 46,080
bytes of KV, so a 16-token block is 737,280 bytes. The chat prompts below
are ~38 tokens (SmolLM2's template adds its default system prompt), and
every request generates exactly MAX_TOKENS = 112 tokens (`ignore_eos`,
`min_tokens` = `max_tokens`), so each sequence ends at ~150 tokens, 10
blocks. The tiny server gets `--kv-cache-memory-gb` worth TINY_BLOCKS = 36
blocks (the test checks the server's own count): one sequence fits alone
(10 <= 36, so the server must accept every request), but only ~3.6 fit at
full length while 16 x 10 = 160 blocks are wanted. Prefix caching does
not close the gap: the prompts differ from their 30th token on, so they
share only their first block, and 1 + 16 x 9 = 145 blocks are still
wanted. The 16 prompts (3 blocks each: all 16 admitted when the first
block is shared, 1 + 16 x 2 = 33 blocks; 12 of them when not) grow by a
block every 16 tokens until the scheduler must preempt the latest
arrival, drop its blocks and later recompute its prompt + output so far.
The large-cache server (1 GiB, ~1,450 blocks) runs the same 16 with no
preemption at all.

It runs twice: with prefix caching on (the default), where a resumed
request may find part of its own old KV still cached, and off, where every
preemption recomputes everything. Greedy decoding (temperature 0) in
`--batch-invariant` mode makes the outputs a function of the prompt alone
(the default's bf16 activations let a recomputed prefix differ from the
decoded one in rounding, which can flip a near tie), so any KV lost, stale or
misplaced across a preemption shows up as a different text (checked: a
worker that keeps its old block table on resume fails both runs). Run
time: ~70 s on 2 idle CPU cores with the debug build (~100 s with other
load; ~12 s of it starts the session server).
"""
import concurrent.futures
import re
import time

import httpx
import pytest

from conftest import Server

MODEL = "smollm2"
MAX_TOKENS = 112
BLOCK_SIZE = 16
KV_BYTES_PER_TOKEN = 30 * 2 * 3 * 64 * 4  # layers x (K, V) x kv heads x head_dim x f32
BLOCK_BYTES = KV_BYTES_PER_TOKEN * BLOCK_SIZE  # 737,280
TINY_BLOCKS = 36
# Half a block of slack so float rounding cannot lose the last block.
TINY_KV_GB = (TINY_BLOCKS + 0.5) * BLOCK_BYTES / (1 << 30)
TOPICS = ["the ocean", "a dragon", "the moon", "coffee", "a robot", "winter", "a lighthouse",
          "jazz", "a desert", "volcanoes", "a library", "trains", "a forest", "chess",
          "the wind", "a castle"]


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def generate_all(client):
    """The 16 requests at once; (prompt tokens, completion tokens, finish
    reason, text) of each, in TOPICS order."""
    def one(topic):
        messages = [{"role": "user", "content": f"Write a long story about {topic}."}]
        r = client.chat.completions.create(
            model=MODEL, messages=messages, max_tokens=MAX_TOKENS, temperature=0,
            extra_body={"ignore_eos": True, "min_tokens": MAX_TOKENS})
        c = r.choices[0]
        return r.usage.prompt_tokens, r.usage.completion_tokens, c.finish_reason, c.message.content

    with concurrent.futures.ThreadPoolExecutor(len(TOPICS)) as pool:
        return list(pool.map(one, TOPICS))


@pytest.fixture(scope="module")
def reference(batch_invariant_server, batch_invariant_client):
    """The 16 outputs of the large-cache batch-invariant session server,
    which must not preempt: the preemption-free reference."""
    server = batch_invariant_server
    before = metric(server.base, "vllm:num_preemptions_total")
    want = generate_all(batch_invariant_client)
    assert metric(server.base, "vllm:num_preemptions_total") == before
    for topic, w in zip(TOPICS, want):
        assert w[1:3] == (MAX_TOKENS, "length"), (topic, w)
    # The prompts lead to different stories (the comparison is not vacuous).
    assert len({text for *_, text in want}) == len(TOPICS)
    return want


# Prefix caching on (the default): a resumed request may find part of its
# own old KV still cached. Off: every preemption recomputes all of it.
@pytest.mark.parametrize("prefix_caching", ["true", "false"])
def test_tiny_kv_cache_preempts_and_keeps_greedy_outputs(reference, prefix_caching, tmp_path):
    from openai import OpenAI

    # max_model_len = the whole tiny cache (576 tokens), as the server
    # refuses a cache that cannot hold one max_model_len sequence.
    tiny = Server(["--batch-invariant",
                   "--kv-cache-memory-gb", repr(TINY_KV_GB), "--block-size", str(BLOCK_SIZE),
                   "--max-model-len", str(TINY_BLOCKS * BLOCK_SIZE),
                   "--enable-prefix-caching", prefix_caching], tmp=tmp_path)
    try:
        m = re.search(r"engine: (\d+) KV blocks of (\d+) tokens", tiny.log.read_text())
        assert m, tiny.log.read_text()
        assert (int(m.group(1)), int(m.group(2))) == (TINY_BLOCKS, BLOCK_SIZE)
        tiny_client = OpenAI(base_url=f"{tiny.base}/v1", api_key="unused", max_retries=0,
                             timeout=600)
        try:
            got = generate_all(tiny_client)
        except Exception as e:
            raise AssertionError(f"{e!r}\n{tiny.log.read_text()[-4000:]}") from e
        preemptions = metric(tiny.base, "vllm:num_preemptions_total")
        print(f"\ntiny cache ({TINY_BLOCKS} blocks, prefix caching {prefix_caching}): "
              f"{preemptions:.0f} preemptions")
        assert preemptions > 0
        queried = metric(tiny.base, "vllm:prefix_cache_queries_total")
        assert (queried > 0) == (prefix_caching == "true"), queried
        # Everything done and every block given back after the churn (the
        # gauges are set at the end of the step that sent the last token).
        idle = ("vllm:num_requests_running", "vllm:num_requests_waiting",
                "vllm:kv_cache_usage_perc")
        deadline = time.time() + 10
        while any(metric(tiny.base, g) for g in idle) and time.time() < deadline:
            time.sleep(0.2)
        assert {g: metric(tiny.base, g) for g in idle} == dict.fromkeys(idle, 0)
    finally:
        tiny.stop()

    # The scenario really needs preemption: each fits alone, not all together.
    per_seq = [-(-(p + MAX_TOKENS) // BLOCK_SIZE) for p, *_ in got]
    assert max(per_seq) <= TINY_BLOCKS < sum(per_seq) / 3, per_seq

    for topic, g, w in zip(TOPICS, got, reference):
        assert g == w, f"{topic}: tiny cache gave\n{g}\nlarge cache gave\n{w}"
