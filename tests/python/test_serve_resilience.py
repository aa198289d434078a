"""End to end: a client that disconnects frees its KV blocks; a worker that
dies makes the server answer 503 at once, in-flight streams end with an
error, nothing hangs, and the server then exits non-zero (as vLLM does when
its engine dies; a supervisor restarts it)."""
import json
import os
import signal
import subprocess
import time

import httpx
import pytest

from conftest import Server

MODEL = "smollm2"


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def long_stream_body():
    return {"model": MODEL, "prompt": "Tell me a long story.", "max_tokens": 1500,
            "ignore_eos": True, "stream": True, "temperature": 0}


def test_client_disconnect_aborts_and_frees_blocks(server):
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{server.base}/v1/completions", json=long_stream_body()) as r:
            assert r.status_code == 200
            chunks = 0
            # A named iterator stays open after `break`: a temporary one is
            # closed at once, and closing it closes the connection.
            lines = r.iter_lines()
            for line in lines:
                if line.startswith("data: {"):
                    chunks += 1
                    if chunks == 3:
                        break
            assert metric(server.base, "vllm:num_requests_running") == 1
            assert metric(server.base, "vllm:kv_cache_usage_perc") > 0
        # Leaving the block closes the connection mid-stream.
    deadline = time.time() + 10
    while time.time() < deadline:
        if (metric(server.base, "vllm:num_requests_running") == 0
                and metric(server.base, "vllm:kv_cache_usage_perc") == 0):
            break
        time.sleep(0.2)
    assert metric(server.base, "vllm:num_requests_running") == 0
    assert metric(server.base, "vllm:kv_cache_usage_perc") == 0


def worker_pids(proc: subprocess.Popen) -> list:
    out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_dead_worker_gives_503_and_nothing_hangs(tmp_path):
    server = Server(tmp=tmp_path)
    try:
        pids = worker_pids(server.proc)
        assert len(pids) == 1, pids
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", f"{server.base}/v1/completions", json=long_stream_body()) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data: {"):
                        break
                os.kill(pids[0], signal.SIGKILL)
                start = time.time()
                tail = list(lines)  # must end, not hang (client timeout is 30 s)
                assert time.time() - start < 20
            errors = [json.loads(l[6:]) for l in tail if l.startswith("data: {") and '"error"' in l]
            assert errors, tail[-3:]
            assert "data: [DONE]" not in tail
            start = time.time()
            r = client.post(f"{server.base}/v1/chat/completions",
                            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 503, r.text
            assert r.json()["error"]["message"]
            assert time.time() - start < 5
            assert client.get(f"{server.base}/health").status_code == 503
            # The HTTP server itself keeps answering.
            assert client.get(f"{server.base}/v1/models").status_code == 200
        # Then it exits non-zero, for a supervisor to restart it.
        assert server.proc.wait(timeout=60) != 0
    finally:
        server.stop()


def test_hung_worker_fails_requests_at_the_step_deadline(tmp_path):
    """SIGSTOP the worker (alive, socket open, never answers: a stuck kernel
    or an NCCL wait looks the same): the step in flight fails at its
    deadline (`--step-timeout` plus the measured time per token), the
    stream ends with an error, and `/health` turns 503."""
    server = Server(["--step-timeout", "3"], tmp=tmp_path)
    pids = []
    try:
        pids = worker_pids(server.proc)
        assert len(pids) == 1, pids
        with httpx.Client(timeout=60) as client:
            with client.stream("POST", f"{server.base}/v1/completions", json=long_stream_body()) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data: {"):
                        break
                os.kill(pids[0], signal.SIGSTOP)
                start = time.time()
                tail = list(lines)  # ends at the deadline, not never
                took = time.time() - start
            assert took < 15, took
            errors = [l for l in tail if l.startswith("data: {") and '"error"' in l]
            assert errors, tail[-3:]
            r = client.post(f"{server.base}/v1/completions",
                            json={"model": MODEL, "prompt": "hi", "max_tokens": 2})
            assert r.status_code == 503, r.text
            assert client.get(f"{server.base}/health").status_code == 503
        assert "--step-timeout" in server.log.read_text()
        assert server.proc.wait(timeout=60) != 0
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        server.stop()


def test_full_queue_answers_429_with_retry_after(tmp_path):
    """One running and one waiting sequence at most: a request that needs
    more, or one that arrives while both places are taken, gets 429 with
    `Retry-After` at once, and the server serves again when they free."""
    server = Server(["--max-num-seqs", "1", "--max-waiting", "1"], tmp=tmp_path)
    try:
        with httpx.Client(timeout=60) as client:
            body = {"model": MODEL, "prompt": "Hello", "max_tokens": 2, "n": 3}
            r = client.post(f"{server.base}/v1/completions", json=body)
            assert r.status_code == 429, r.text
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
            body["n"] = 2
            r = client.post(f"{server.base}/v1/completions", json=body)
            assert r.status_code == 200, r.text
            assert len(r.json()["choices"]) == 2
            # Two long streams take both places; a third request is refused.
            stream = dict(long_stream_body(), n=2)
            with client.stream("POST", f"{server.base}/v1/completions", json=stream) as s:
                assert s.status_code == 200
                lines = s.iter_lines()
                for line in lines:
                    if line.startswith("data: {"):
                        break
                start = time.time()
                r = client.post(f"{server.base}/v1/chat/completions",
                                json={"model": MODEL, "max_tokens": 2,
                                      "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 429, r.text
                assert int(r.headers["retry-after"]) >= 1
                assert time.time() - start < 5
            # The stream is gone: its places are free again.
            deadline = time.time() + 10
            while True:
                r = client.post(f"{server.base}/v1/completions",
                                json={"model": MODEL, "prompt": "Hello", "max_tokens": 2})
                if r.status_code == 200 or time.time() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text
            assert client.get(f"{server.base}/health").status_code == 200
    finally:
        server.stop()


def test_bad_token_ids_fail_one_request_and_the_engine_keeps_serving(server):
    with httpx.Client(timeout=60) as client:
        for prompt in ([49152], [1, 2, 4_000_000_000], [[5, 6], [49153]]):
            r = client.post(f"{server.base}/v1/completions",
                            json={"model": MODEL, "prompt": prompt, "max_tokens": 2})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "prompt"
            assert "vocabulary" in r.json()["error"]["message"]
        r = client.post(f"{server.base}/v1/completions",
                        json={"model": MODEL, "prompt": [1, 2, 3], "max_tokens": 2})
        assert r.status_code == 200, r.text
        assert client.get(f"{server.base}/health").status_code == 200


def test_sampling_edge_cases(server):
    with httpx.Client(timeout=120) as client:
        url = f"{server.base}/v1/completions"
        # No max_tokens: 16, as OpenAI and vLLM default for completions.
        r = client.post(url, json={"model": MODEL, "prompt": "Once upon a time",
                                   "ignore_eos": True, "temperature": 0})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 16
        assert r.json()["choices"][0]["finish_reason"] == "length"
        # Temperatures below 1e-5, subnormals included, are greedy.
        greedy = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 8,
                  "temperature": 0}
        want = client.post(url, json=greedy).json()["choices"][0]["text"]
        for t in (1e-40, 1e-6):
            got = client.post(url, json=dict(greedy, temperature=t))
            assert got.status_code == 200, got.text
            assert got.json()["choices"][0]["text"] == want, t


def test_a_kv_cache_smaller_than_one_sequence_is_refused_at_startup(tmp_path):
    from conftest import ENGINE, ROOT, free_port
    # 36 blocks of 16 tokens (576 tokens) against max_model_len 2048.
    kv_gb = 36.5 * 30 * 2 * 3 * 64 * 4 * 16 / (1 << 30)
    proc = subprocess.run(
        [str(ENGINE), "serve", "--model", MODEL, "--host", "127.0.0.1",
         "--port", str(free_port()), "--max-model-len", "2048",
         "--kv-cache-memory-gb", repr(kv_gb)],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode != 0
    for flag in ("--max-model-len", "--kv-cache-memory-gb", "--gpu-memory-utilization"):
        assert flag in proc.stderr, proc.stderr[-2000:]
