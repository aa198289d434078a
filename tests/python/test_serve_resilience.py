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
