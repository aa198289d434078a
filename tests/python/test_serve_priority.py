"""End to end: `--scheduling-policy priority` admits waiting requests by the
request's `priority` field (lower first, as vLLM), and a server on the
default fcfs policy refuses a nonzero priority with a 400 naming it."""
import threading
import time

import httpx

from conftest import Server

MODEL = "smollm2"


def body(prompt, max_tokens, priority, stream=False):
    return {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True,
            "temperature": 0, "priority": priority, "stream": stream}


def test_waiting_requests_run_in_priority_order(tmp_path):
    # One sequence at a time, so B and C wait behind A and the policy alone
    # decides which of them runs next.
    server = Server(["--scheduling-policy", "priority", "--max-num-seqs", "1"], tmp=tmp_path)
    try:
        finished = {}

        def run(name, payload):
            r = httpx.post(f"{server.base}/v1/completions", json=payload, timeout=300)
            assert r.status_code == 200, r.text
            finished[name] = time.monotonic()

        with httpx.Client(timeout=300) as client:
            with client.stream("POST", f"{server.base}/v1/completions",
                               json=body("Tell me a long story.", 48, 0, stream=True)) as a:
                lines = a.iter_lines()
                next(line for line in lines if line.startswith("data: {"))  # A is running
                b = threading.Thread(target=run, args=("b", body("Count to ten.", 8, 5)))
                b.start()
                time.sleep(0.5)  # B arrives first ...
                c = threading.Thread(target=run, args=("c", body("Name a color.", 8, -1)))
                c.start()  # ... C later, with a lower (earlier) priority value
                time.sleep(0.5)
                for _ in lines:  # let A finish
                    pass
        b.join(timeout=300)
        c.join(timeout=300)
        assert set(finished) == {"b", "c"}
        assert finished["c"] < finished["b"], "priority -1 should run before priority 5"
    finally:
        server.stop()


def test_fcfs_server_refuses_nonzero_priority(server):
    r = httpx.post(f"{server.base}/v1/completions", json=body("Hi", 4, 3), timeout=60)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "priority" and "scheduling-policy" in err["message"]
    ok = httpx.post(f"{server.base}/v1/completions", json=body("Hi", 4, 0), timeout=60)
    assert ok.status_code == 200
