"""End to end, tensor parallel on CPU: `engine serve --model smollm2 --tp 3`
(three worker processes joined by the TCP communicator) answers greedy chat
requests exactly as `--tp 1` does; `--tp 2` cannot split SmolLM2's 3 K/V
heads and the server exits non-zero saying which sizes work;
`--tp-communicator nccl` on the CPU exits non-zero naming the flag; killing
one rank mid-stream ends the stream with an error, the server reports
unhealthy, and nothing hangs."""
import json
import os
import signal
import subprocess
import time

import httpx

from conftest import ENGINE, ROOT, Server, free_port
from test_serve_resilience import long_stream_body, worker_pids

MODEL = "smollm2"
PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Explain gravity in one sentence.",
]


def greedy_chat(base: str, prompt: str) -> str:
    r = httpx.post(f"{base}/v1/chat/completions", timeout=300, json={
        "model": MODEL, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 32, "temperature": 0})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_tp3_greedy_equals_tp1(tmp_path):
    # --batch-invariant (f32 weights) on both sides: the quantized path's
    # int4 products round to bf16 before the all-reduce, so its TP sums
    # differ from one rank's in more than f32 ulps.
    tp1 = Server(["--batch-invariant"], tmp=tmp_path)
    try:
        want = [greedy_chat(tp1.base, p) for p in PROMPTS]
    finally:
        tp1.stop()
    tp3 = Server(["--tp", "3", "--batch-invariant"], tmp=tmp_path)
    try:
        assert len(worker_pids(tp3.proc)) == 3
        got = [greedy_chat(tp3.base, p) for p in PROMPTS]
    finally:
        tp3.stop()
    assert got == want


def test_tp2_is_refused_with_a_clear_error(tmp_path):
    log = tmp_path / "tp2.log"
    proc = subprocess.run(
        [str(ENGINE), "serve", "--model", MODEL, "--host", "127.0.0.1",
         "--port", str(free_port()), "--tp", "2"],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, timeout=180)
    out = log.read_text()
    assert proc.returncode != 0, out[-2000:]
    assert "tensor parallel size 2 cannot split this model" in out, out[-2000:]
    assert "num_key_value_heads (3)" in out, out[-2000:]
    assert "sizes that work: 1, 3" in out, out[-2000:]


def test_nccl_on_cpu_is_refused_naming_the_flag(tmp_path):
    log = tmp_path / "nccl.log"
    proc = subprocess.run(
        [str(ENGINE), "serve", "--model", MODEL, "--host", "127.0.0.1",
         "--port", str(free_port()), "--device", "cpu", "--tp-communicator", "nccl"],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT, timeout=60)
    out = log.read_text()
    assert proc.returncode != 0, out[-2000:]
    assert "--tp-communicator nccl" in out, out[-2000:]
    assert "CUDA devices only" in out, out[-2000:]
    assert "panicked" not in out, out[-2000:]
    # Refused before any worker starts.
    assert "starting" not in out, out[-2000:]


def test_killed_rank_fails_the_group(tmp_path):
    server = Server(["--tp", "3"], tmp=tmp_path)
    try:
        pids = sorted(worker_pids(server.proc))
        assert len(pids) == 3, pids
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", f"{server.base}/v1/completions",
                               json=long_stream_body()) as r:
                assert r.status_code == 200
                lines = r.iter_lines()
                for line in lines:
                    if line.startswith("data: {"):
                        break
                # Not rank 0: the one whose tokens the engine reads.
                os.kill(pids[1], signal.SIGKILL)
                start = time.time()
                tail = list(lines)  # must end, not hang (client timeout is 30 s)
                assert time.time() - start < 20
            errors = [json.loads(l[6:]) for l in tail
                      if l.startswith("data: {") and '"error"' in l]
            assert errors, tail[-3:]
            assert "data: [DONE]" not in tail
            start = time.time()
            r = client.post(f"{server.base}/v1/chat/completions", json={
                "model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 503, r.text
            assert time.time() - start < 5
            assert client.get(f"{server.base}/health").status_code == 503
        # The other ranks do not linger: the executor kills the group.
        deadline = time.time() + 20
        while time.time() < deadline and any(alive(p) for p in pids):
            time.sleep(0.2)
        assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]
        # Then the server exits non-zero, for a supervisor to restart it.
        assert server.proc.wait(timeout=60) != 0
    finally:
        server.stop()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def generate(*extra: str) -> subprocess.CompletedProcess:
    """`engine generate` (greedy by default): the text on stdout, logs on stderr."""
    out = subprocess.run(
        [str(ENGINE), "generate", "--model", MODEL, "--max-tokens", "24",
         "--prompt", PROMPTS[2], *extra],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out


def test_generate_tp3_prints_what_tp1_prints():
    """`engine generate --tp 3` runs three worker processes, as `engine serve
    --tp 3` does, and greedy decoding gives the same text as one rank (both
    `--batch-invariant`, as in test_tp3_greedy_equals_tp1)."""
    one = generate("--batch-invariant")
    three = generate("--tp", "3", "--batch-invariant")
    assert one.stdout.strip(), one
    assert "over 3 ranks" in three.stderr, three.stderr
    assert three.stdout == one.stdout
