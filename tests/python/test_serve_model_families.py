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
