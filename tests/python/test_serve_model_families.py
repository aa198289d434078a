"""`engine serve` on the tiny Qwen3 and Mistral checkpoints
(scripts/fixtures/model_families.py), found as users name models: an HF
repo id in a local HF cache folder (`HF_HUB_CACHE`, as `vllm serve` finds
one offline), an HF folder with `--hf-overrides`; and a repo id that is not
in the cache refused with a message saying where it looked; and the short
name `llama4` (Scout's config, shrunk with `--hf-overrides`, dummy weights)
at tensor parallel 4 on the CPU."""
import json
import shutil
import subprocess

import openai
import pytest

from conftest import ENGINE, ROOT, Server

FIXTURES = ROOT / "tests" / "fixtures" / "generated"


def hf_cache_with(tmp_path, repo: str, folder: str):
    """An HF hub cache holding `repo` at one snapshot, as huggingface_hub
    lays it out (refs/main names the snapshot)."""
    cache = tmp_path / "hub"
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / "0123456789abcdef"
    shutil.copytree(FIXTURES / folder, snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0123456789abcdef")
    return cache


def ask(server, model: str):
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="none")
    out = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi there"}],
        max_tokens=8, temperature=0)
    assert out.model == model
    assert out.choices[0].finish_reason in ("stop", "length")
    assert 1 <= out.usage.completion_tokens <= 8
    assert out.usage.prompt_tokens == 28  # the chat template's characters
    return out.choices[0].message.content


def test_a_repo_id_is_served_from_the_local_hf_cache(tmp_path):
    if not (FIXTURES / "tiny_qwen3" / "tokenizer.json").exists():
        pytest.fail("run scripts/fixtures/model_families.py")
    cache = hf_cache_with(tmp_path, "test-org/tiny-qwen3", "tiny_qwen3")
    server = Server(model="test-org/tiny-qwen3", tmp=tmp_path,
                    env={"HF_HUB_CACHE": str(cache)}, extra_args=["--max-model-len", "256"])
    try:
        first = ask(server, "test-org/tiny-qwen3")
        assert ask(server, "test-org/tiny-qwen3") == first, "greedy is deterministic"
    finally:
        server.stop()


def generate(folder, *extra):
    """`engine generate --json` greedy ids for a raw prompt."""
    out = subprocess.run(
        [str(ENGINE), "generate", "--model", str(folder), "--raw", "--prompt", "Hi there",
         "--max-tokens", "8", "--ignore-eos", "--json", *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    return out


def test_hf_overrides_reach_the_model_config(tmp_path):
    folder = FIXTURES / "tiny_mistral"
    full = generate(folder)
    assert full.returncode == 0, full.stderr
    one_layer = generate(folder, "--hf-overrides", '{"num_hidden_layers": 1}')
    assert one_layer.returncode == 0, one_layer.stderr
    ids = lambda out: json.loads(out.stdout.strip().splitlines()[-1])["output_ids"]
    assert len(ids(full)) == len(ids(one_layer)) == 8
    assert ids(full) != ids(one_layer), "one layer of two must change the output"
    # Overrides are validated like the file: 3 heads cannot split 128.
    bad = generate(folder, "--hf-overrides", '{"num_attention_heads": 3}')
    assert bad.returncode != 0 and "head" in bad.stderr, bad.stderr
    bad = generate(folder, "--hf-overrides", "[1]")
    assert bad.returncode != 0 and "JSON object" in bad.stderr, bad.stderr
    # And `engine serve` takes the flag.
    server = Server(model=str(folder), tmp=tmp_path,
                    extra_args=["--max-model-len", "256",
                                "--hf-overrides", '{"num_hidden_layers": 1}'])
    try:
        ask(server, str(folder))
    finally:
        server.stop()


def test_a_repo_id_missing_from_the_cache_says_where_it_looked(tmp_path):
    cache = tmp_path / "empty-hub"
    cache.mkdir()
    out = subprocess.run(
        [str(ENGINE), "serve", "--model", "test-org/not-here", "--port", "1"],
        env={"HF_HUB_CACHE": str(cache), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"{cache}/models--test-org--not-here" in out.stderr, out.stderr
    assert "never downloaded" in out.stderr, out.stderr


# Llama 4 Scout's published config with fewer layers and a smaller width
# (its vocabulary, chunked/NoPE layer pattern and experts stay), as a user
# shrinks it with --hf-overrides; the overrides go under text_config.
LLAMA4_SMALL = {"text_config": {
    "num_hidden_layers": 4, "hidden_size": 256, "intermediate_size": 128,
    "intermediate_size_mlp": 256, "num_attention_heads": 8,
    "num_key_value_heads": 4, "head_dim": 32, "num_local_experts": 4,
    "attention_chunk_size": 16}}


def test_llama4_dummy_at_tp_4_answers_the_openai_sdk(tmp_path):
    server = Server(model="llama4", tmp=tmp_path,
                    extra_args=["--load-format", "dummy", "--tp", "4", "--device", "cpu",
                                "--max-model-len", "256",
                                "--hf-overrides", json.dumps(LLAMA4_SMALL)])
    try:
        client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="none")
        out = client.chat.completions.create(
            model="llama4", messages=[{"role": "user", "content": "Hi there"}],
            max_tokens=40, temperature=0)
        assert out.model == "llama4"
        # 40 tokens cross the 16-token attention chunks of the prompt's end.
        assert out.usage.completion_tokens == 40 or out.choices[0].finish_reason == "stop"
        assert out.usage.prompt_tokens > 16
        stream = client.completions.create(
            model="llama4", prompt="Hello", max_tokens=4, temperature=0, stream=True)
        assert sum(1 for _ in stream) >= 1
        log = server.log.read_text()
        assert "starting 4 worker(s) for llama4" in log, log[-2000:]
    finally:
        server.stop()


def test_llama4_without_dummy_weights_is_refused_naming_the_flag(tmp_path):
    out = subprocess.run(
        [str(ENGINE), "serve", "--model", "llama4", "--port", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode != 0
    assert "--load-format dummy" in out.stderr, out.stderr[-2000:]


# A tiny KV cache (blocks of 4 tokens) too small for 6 concurrent requests
# of ~130 tokens with full attention on every layer (Mistral: 64 blocks,
# 256 tokens; Llama 4: 80 blocks, 320 tokens), so the server must preempt;
# the hybrid KV cache keeps only what the windows see (Mistral's 8-token
# window on both layers; Llama 4's 8-token chunks on three layers beside
# one full one) and holds them all. Greedy outputs must not change.
TINY_KV = {"tiny_mistral": (2, 64), "tiny_llama4": (4, 80)}


def served_greedy(tmp_path, folder: str, *extra):
    from concurrent.futures import ThreadPoolExecutor
    import urllib.request

    layers, blocks = TINY_KV[folder]
    bytes_per_block = 2 * layers * 4 * 2 * 16 * 4  # K+V, layers, tokens, heads, dim, f32
    model = str(FIXTURES / folder)
    server = Server(model=model, tmp=tmp_path,
                    extra_args=["--max-model-len", "192", "--block-size", "4",
                                "--max-num-seqs", "6", "--kv-cache-memory-gb",
                                repr(blocks * bytes_per_block / 2 ** 30), *extra])
    try:
        client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="none", timeout=300)
        prompts = [f"Request {i}: the quick brown fox" for i in range(6)]
        with ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda p: client.completions.create(
                model=model, prompt=p, max_tokens=100, temperature=0,
                extra_body={"ignore_eos": True}), prompts))
        metrics = urllib.request.urlopen(f"{server.base}/metrics").read().decode()
        preemptions = next(float(line.split()[-1]) for line in metrics.splitlines()
                           if line.startswith("vllm:num_preemptions_total"))
        return [o.choices[0].text for o in outs], preemptions, server.log.read_text()
    finally:
        server.stop()


@pytest.mark.parametrize("folder", ["tiny_mistral", "tiny_llama4"])
def test_hybrid_kv_cache_holds_windowed_models_without_preempting(tmp_path, folder):
    if not (FIXTURES / folder / "tokenizer.json").exists():
        pytest.fail("run scripts/fixtures/model_families.py")
    hybrid, hybrid_preemptions, log = served_greedy(tmp_path, folder)
    assert "KV cache groups (hybrid)" in log, log[-2000:]
    uniform, uniform_preemptions, _ = served_greedy(tmp_path, folder,
                                                    "--disable-hybrid-kv-cache-manager")
    assert uniform_preemptions > 0, "the uniform cache should have had to preempt"
    assert hybrid_preemptions == 0, f"hybrid preempted {hybrid_preemptions} times"
    assert hybrid == uniform, "greedy outputs differ between the hybrid and the uniform cache"
