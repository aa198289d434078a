#!/usr/bin/env python3
"""Soak benchmark of the gateway with the control plane on (not part of CI).

`engine serve --config` with a master key, virtual keys (two teams, budgets,
rpm/tpm limits checked on every request, one key with a budget so small it
runs out) and batched spend logs in SQLite and/or PostgreSQL, in front of
`--upstreams` `@copilotkit/aimock` upstreams with chaos on (500s, 429 with
Retry-After, malformed JSON bodies, dropped connections) and a fixture whose
streams the upstream cuts after a few chunks. The client mix, per request:
5% bad bodies (invalid JSON, wrong types, no messages, unknown model), 10%
streams the client drops after the first content chunk, 2% streams the
upstream cuts, 1% on the tiny-budget key, the rest ordinary chat
completions (30% streamed).

Reports, per store:
- the gateway's RSS (VmRSS of /proc/PID/status) at start, after warm-up,
  at 10% of the run and at the end, and the growth after warm-up
  (goal: < 5%);
- spend rows against settled requests. "Settled" is the gateway's own
  rule (frontend/src/control/gate.rs): every request that passed
  admission (key, model access, budget, rate limits) is charged exactly
  once, when it finishes, fails upstream (after retries and fallbacks),
  is cut, or is dropped by the client; each charge is one `spend_logs`
  row (status success or failure). Requests refused before admission (bad
  body, unknown model, budget exceeded) write no row. So expected rows =
  requests sent - bad bodies - `budget_exceeded` refusals; the rate limits
  are set high enough never to trip, so every 429 a client sees is an
  upstream one (admitted, charged). The gateway's own
  `gateway_requests_total` (one increment per settlement) is shown too;
- p99 latency per window (20 windows, by completion order).

And once per invocation, a local-engine phase (`engine serve --model
smollm2`, small max_tokens, some streams dropped mid-way): the KV cache
usage gauge (`vllm:kv_cache_usage_perc`) once idle again must equal its
start value (no block leaked).

Prints a table and writes bench/results/soak_<store>.json (the engine phase
also to bench/results/soak_engine.json). Uses target/debug/engine unless
ENGINE_BIN names another build; the build is named in the output.

With two upstreams the chaos keeps both in cooldown often enough (a 429
cools a deployment at once) that requests wait for one and the run is
bound by that wait, not by the CPU; eight keep one free nearly always.

Usage: python scripts/soak.py [--requests 1000000] [--store sqlite|postgres|both|none]
       [--concurrency 48] [--upstreams 2] [--engine-requests 300] [--skip-engine]
(`--store none` runs only the local-engine phase; `--skip-engine` only the
gateway.)
"""
import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parents[1]
ENGINE = Path(os.environ.get("ENGINE_BIN", ROOT / "target" / "debug" / "engine"))
AIMOCK_CLI = ROOT / "tests" / "node_modules" / "@copilotkit" / "aimock" / "dist" / "cli.js"
RESULTS = ROOT / "bench" / "results"
MASTER = "sk-soak-master-5d1e"
PG_URL = "postgres://postgres@127.0.0.1:5432/test"
TIMEOUT_S = 10
WINDOWS = 20
CHAOS = ["--chaos-drop", "0.01", "--chaos-malformed", "0.01",
         "--chaos-ratelimit", "0.01", "--chaos-disconnect", "0.01"]
# Matched in order: "cut me" streams stop after 2 chunks; everything else
# gets a 60-character answer in 8-character chunks, 2 ms apart.
FIXTURES = {"fixtures": [
    {"match": {"userMessage": "cut me"}, "truncateAfterChunks": 2, "chunkSize": 8,
     "latency": 2, "response": {"content": "This answer is cut by the upstream before its end."}},
    {"match": {"userMessage": ""}, "chunkSize": 8, "latency": 2,
     "response": {"content": "Hello from the soak upstream, in a few chunks of eight chars."}},
]}
BAD_BODIES = [
    b"{not json",
    b'{"model": "soak", "messages": "nope"}',
    b'{"model": "soak"}',
    b'{"model": "soak", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
    b'{"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}',
    b"",
]


def build_name() -> str:
    """The binary used, relative to the repository when it is inside it."""
    return str(ENGINE.relative_to(ROOT) if ENGINE.is_relative_to(ROOT) else ENGINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout=180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"engine exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"engine not healthy:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_aimock(fixtures: Path, log: Path) -> tuple:
    proc = subprocess.Popen(
        ["node", str(AIMOCK_CLI), "--port", "0", "--log-level", "info", "--journal-max", "100",
         "--fixtures", str(fixtures), *CHAOS],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    with open(log, "a") as f:
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            f.write(line)
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].strip().rstrip("/")
                # Keep draining so aimock never blocks on a full pipe.
                threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
                return proc, url
    proc.kill()
    raise RuntimeError(f"aimock did not start: see {log}")


def gateway_config(mocks, database_url: str) -> str:
    deployments = "".join(f"""
  - model_name: soak
    litellm_params: {{model: openai/gpt-4o-mini, api_base: {url}/v1, api_key: sk-up-{i}}}
    model_info: {{id: soak-{i}}}""" for i, url in enumerate(mocks))
    return f"""
model_list:{deployments}
router_settings:
  routing_strategy: simple-shuffle
  num_retries: 2
  timeout: {TIMEOUT_S}
  cooldown_time: 1
general_settings:
  master_key: {MASTER}
  database_url: {database_url}
  proxy_batch_write_at: 1
"""


class Store:
    """Where spend rows are counted, and the URL the gateway gets."""

    def __init__(self, kind: str, tmp: Path):
        self.kind = kind
        if kind == "sqlite":
            self.path = tmp / "soak.db"
            self.url = f"sqlite://{self.path}"
        else:
            if not shutil.which("psql"):
                raise RuntimeError("psql not found")
            self.schema = f"soak_{uuid.uuid4().hex[:12]}"
            self._psql(f'CREATE SCHEMA "{self.schema}"')
            self.url = f"{PG_URL}?options[search_path]={self.schema}"

    def _psql(self, sql: str) -> str:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qAt",
                              "-v", "ON_ERROR_STOP=1", "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout

    def rows(self) -> dict:
        sql = "SELECT status, count(*) FROM spend_logs GROUP BY status"
        if self.kind == "sqlite":
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as db:
                return dict(db.execute(sql).fetchall())
        out = self._psql(sql.replace("spend_logs", f'"{self.schema}".spend_logs'))
        return {s: int(n) for s, n in (line.split("|") for line in out.splitlines() if line)}

    def drop(self) -> None:
        if self.kind == "postgres":
            self._psql(f'DROP SCHEMA "{self.schema}" CASCADE')


def p99(xs):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


def metric_sum(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in
               re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


async def one(session, base: str, kind: str, key: str, i: int):
    """(category, status, seconds) of request `i` of `kind`."""
    url = f"{base}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    start = time.monotonic()
    if kind == "bad":
        async with session.post(url, data=BAD_BODIES[i % len(BAD_BODIES)], headers=headers) as r:
            await r.read()
            return kind, r.status, time.monotonic() - start
    stream = kind in ("drop", "cut") or (kind == "ok" and i % 10 < 3)
    text = "cut me" if kind == "cut" else f"soak {i}"
    body = json.dumps({"model": "soak", "max_tokens": 32, "stream": stream,
                       "messages": [{"role": "user", "content": text}]})
    async with session.post(url, data=body, headers=headers) as r:
        if r.status != 200 or not stream:
            answer = await r.text()
            refused = r.status != 200 and "budget_exceeded" in answer
            return ("budget_refused" if refused else kind), r.status, time.monotonic() - start
        async for line in r.content:
            if kind == "drop" and line.startswith(b"data: ") and b'"content"' in line:
                r.close()  # closes the connection mid-stream
                break
    return kind, 200, time.monotonic() - start


def pick(rng: random.Random) -> str:
    x = rng.random()
    if x < 0.05:
        return "bad"
    if x < 0.15:
        return "drop"
    if x < 0.17:
        return "cut"
    if x < 0.18:
        return "poor"
    return "ok"


async def load(base: str, pid: int, keys, poor_key: str, n: int, concurrency: int, warmup: int):
    rng = random.Random(12)
    plan = [pick(rng) for _ in range(n)]
    results = []  # (category, status, seconds, error, finished at [s into the run])
    marks = {}
    next_i = 0
    ten_pct = max(warmup, n // 10)
    started = time.monotonic()
    # aiohttp rather than httpx here: a third of httpx's CPU per request,
    # and this client shares the cores with the gateway and the upstreams.
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S * 4)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def worker():
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                kind = plan[i]
                key = poor_key if kind == "poor" else keys[i % len(keys)]
                t0 = time.monotonic()
                try:
                    cat, status, secs = await one(session, base, kind, key, i)
                    results.append((cat, status, secs, None, time.monotonic() - started))
                except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                    results.append((kind, None, time.monotonic() - t0, type(e).__name__,
                                    time.monotonic() - started))
                done = len(results)
                if done in (warmup, ten_pct, n):
                    marks.setdefault(done, (rss_kib(pid), round(time.monotonic() - started, 1)))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, marks, time.monotonic() - started


def run_store(kind: str, args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"soak-{kind}-"))
    fixtures = tmp / "fixtures.json"
    fixtures.write_text(json.dumps(FIXTURES))
    mocks = [start_aimock(fixtures, tmp / f"aimock-{i}.log") for i in range(args.upstreams)]
    store = Store(kind, tmp)
    config = tmp / "config.yaml"
    config.write_text(gateway_config([u for _, u in mocks], store.url))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "gateway.log"
    gw = subprocess.Popen([str(ENGINE), "serve", "--config", str(config), "--host", "127.0.0.1",
                           "--port", str(port)], cwd=ROOT, stdout=open(log, "w"),
                          stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
    try:
        wait_healthy(base, gw, log)
        rss_start = rss_kib(gw.pid)
        admin = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {MASTER}"},
                             timeout=30)
        teams = [admin.post("/team/new", json={"team_alias": f"soak-team-{t}",
                                               "max_budget": 1e6}).json()["team_id"]
                 for t in range(2)]
        keys = [admin.post("/key/generate", json={
            "key_alias": f"soak-{k}", "team_id": teams[k % 2], "max_budget": 1e5,
            "budget_duration": "30d", "rpm_limit": 10_000_000, "tpm_limit": 1_000_000_000,
        }).json()["key"] for k in range(16)]
        poor = admin.post("/key/generate", json={"key_alias": "soak-poor",
                                                  "max_budget": 2e-5}).json()["key"]
        warmup = max(1, min(args.requests // 20, 5000))
        results, marks, wall = asyncio.run(
            load(base, gw.pid, keys, poor, args.requests, args.concurrency, warmup))
        counts = {r[0]: 0 for r in results}
        for r in results:
            counts[r[0]] += 1
        errors = sum(1 for r in results if r[3] is not None)
        expected = args.requests - counts.get("bad", 0) - counts.get("budget_refused", 0)
        # Poll until every settled request has its row, or 30 s (a
        # mismatch then stays in the report).
        deadline = time.time() + 30
        while True:
            rows = store.rows()
            if sum(rows.values()) == expected or time.time() > deadline:
                break
            time.sleep(1.5)
        metrics = admin.get("/metrics").text
        settled_metric = metric_sum(metrics, "gateway_requests_total")
        upstream = {"retries": metric_sum(metrics, "gateway_retries_total"),
                    "upstream_errors": metric_sum(metrics, "gateway_upstream_errors_total"),
                    "cooldowns": metric_sum(metrics, "gateway_deployment_cooldowns_total")}
        rss_end_idle = rss_kib(gw.pid)
    finally:
        stop(gw)
        for p, _ in mocks:
            p.kill()
            p.wait()
    store.drop()
    if sum(rows.values()) == expected:
        shutil.rmtree(tmp)  # else its logs and the SQLite file stay for a look
    else:
        print(f"spend rows mismatch: gateway log and store kept in {tmp}")

    win = max(1, len(results) // WINDOWS)
    windows = []
    for w in range(0, len(results), win):
        chunk = results[w:w + win]
        windows.append({"requests": f"{w}-{w + len(chunk)}",
                        "ended_at_s": round(chunk[-1][4], 1),
                        "p99_ms": round(1000 * p99([r[2] for r in chunk]), 1)})
    n = args.requests
    ten_pct = max(warmup, n // 10)
    rss_warm = marks.get(warmup, (None,))[0]
    rss_10 = marks.get(ten_pct, (None,))[0]
    rss_end = marks.get(n, (None,))[0]
    statuses = {}
    for _, st, _, err, _ in results:
        k = str(st) if err is None else err
        statuses[k] = statuses.get(k, 0) + 1
    return {
        "store": kind, "build": build_name(),
        "host": platform.node(), "cpus": os.cpu_count(),
        "requests": n, "concurrency": args.concurrency, "wall_s": round(wall, 1),
        "requests_per_s": round(n / wall, 1),
        "mix": counts, "statuses": statuses, "client_errors": errors,
        "rss_kib": {"start": rss_start, "after_warmup": rss_warm, "at_10pct": rss_10,
                    "end": rss_end, "end_idle": rss_end_idle,
                    "warmup_requests": warmup, "ten_pct_requests": ten_pct},
        "rss_growth_after_warmup_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2)
        if rss_warm and rss_end else None,
        "spend_rows": rows, "spend_rows_total": sum(rows.values()),
        "settled_expected": expected, "gateway_requests_total": settled_metric,
        "spend_rows_match": sum(rows.values()) == expected,
        "upstream_faults": upstream,
        "p99_windows": windows,
    }


async def engine_load(base: str, n: int, concurrency: int):
    """Outcome counts and the peak KV usage seen while the load ran."""
    rng = random.Random(7)
    next_i = 0
    outcome = {"ok": 0, "dropped": 0, "errors": 0}
    peak = 0.0
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        async def sampler():
            nonlocal peak
            while next_i < n:
                try:
                    text = (await client.get("/metrics")).text
                    peak = max(peak, gauge(text, "vllm:kv_cache_usage_perc"))
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)

        async def worker():
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                drop = rng.random() < 0.10
                stream = drop or i % 2 == 0
                body = {"model": "smollm2", "prompt": f"Soak request {i}: the capital of France is",
                        "max_tokens": 8, "temperature": 0.8, "stream": stream}
                try:
                    if not stream:
                        r = await client.post("/v1/completions", json=body)
                        outcome["ok" if r.status_code == 200 else "errors"] += 1
                        continue
                    async with client.stream("POST", "/v1/completions", json=body) as r:
                        async for line in r.aiter_lines():
                            if drop and line.startswith("data: ") and '"text"' in line:
                                break
                    outcome["dropped" if drop else "ok"] += 1
                except httpx.HTTPError:
                    outcome["errors"] += 1

        await asyncio.gather(sampler(), *(worker() for _ in range(concurrency)))
    return outcome, peak


def gauge(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(m.group(1)) if m else float("nan")


def run_engine(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="soak-engine-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp / "engine.log"
    proc = subprocess.Popen([str(ENGINE), "serve", "--model", "smollm2", "--host", "127.0.0.1",
                             "--port", str(port), "--max-model-len", "2048"], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        wait_healthy(base, proc, log)
        before = httpx.get(f"{base}/metrics").text
        start = time.monotonic()
        outcome, peak = asyncio.run(engine_load(base, args.engine_requests, 8))
        wall = time.monotonic() - start
        # Idle again: nothing running or waiting (a dropped stream is
        # aborted asynchronously).
        deadline = time.time() + 30
        while time.time() < deadline:
            after = httpx.get(f"{base}/metrics").text
            if (gauge(after, "vllm:num_requests_running") == 0
                    and gauge(after, "vllm:num_requests_waiting") == 0):
                break
            time.sleep(0.5)
    finally:
        stop(proc)
    log_text = log.read_text()
    shutil.rmtree(tmp)
    usage_before = gauge(before, "vllm:kv_cache_usage_perc")
    usage_after = gauge(after, "vllm:kv_cache_usage_perc")
    # The gauge is 1 - free/total blocks; the total is in the start log.
    m = re.search(r"(\d+) KV blocks of", log_text)
    total = int(m.group(1)) if m else None
    free = (lambda u: round(total * (1 - u)) if total else None)  # noqa: E731
    return {
        "kv_blocks_total": total, "kv_free_blocks_start": free(usage_before),
        "kv_free_blocks_min": free(peak), "kv_free_blocks_end": free(usage_after),
        "kv_cache_usage_perc_peak": peak,
        "build": build_name(), "requests": args.engine_requests, "wall_s": round(wall, 1),
        "outcome": outcome,
        "kv_cache_usage_perc_start": usage_before, "kv_cache_usage_perc_end": usage_after,
        "running_end": gauge(after, "vllm:num_requests_running"),
        "waiting_end": gauge(after, "vllm:num_requests_waiting"),
        "kv_blocks_returned": usage_after == usage_before,
    }


def print_store(r: dict) -> None:
    rss = r["rss_kib"]
    mib = lambda k: f"{k / 1024:.1f}" if k else "-"  # noqa: E731
    print(f"\n== {r['store']}: {r['requests']} requests, concurrency {r['concurrency']}, "
          f"{r['wall_s']} s ({r['requests_per_s']}/s), build {r['build']}")
    print(f"mix {r['mix']}  statuses {r['statuses']}")
    print(f"{'RSS MiB':<10}{'start':>8}{'warm-up':>9}{'10%':>8}{'end':>8}{'growth':>9}")
    print(f"{'':<10}{mib(rss['start']):>8}{mib(rss['after_warmup']):>9}{mib(rss['at_10pct']):>8}"
          f"{mib(rss['end']):>8}{str(r['rss_growth_after_warmup_pct']) + '%':>9}"
          f"   (warm-up = first {rss['warmup_requests']})")
    print(f"spend rows {r['spend_rows_total']} {r['spend_rows']} vs settled {r['settled_expected']}"
          f" (gateway_requests_total {r['gateway_requests_total']:.0f}): "
          f"{'MATCH' if r['spend_rows_match'] else 'MISMATCH'}")
    print(f"upstream faults seen by the router: {r['upstream_faults']}")
    print("p99 ms per window: " + " ".join(str(w["p99_ms"]) for w in r["p99_windows"]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--store", choices=["sqlite", "postgres", "both", "none"], default="both")
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--engine-requests", type=int, default=300)
    ap.add_argument("--skip-engine", action="store_true")
    ap.add_argument("--upstreams", type=int, default=2,
                    help="aimock upstreams (deployments of the one model name)")
    args = ap.parse_args()
    if not ENGINE.exists():
        sys.exit(f"{ENGINE} missing: cargo build -p engine -p workers --bins")
    RESULTS.mkdir(parents=True, exist_ok=True)
    engine = None
    if not args.skip_engine:
        engine = run_engine(args)
        (RESULTS / "soak_engine.json").write_text(json.dumps(engine, indent=2) + "\n")
        print(f"== local engine: {engine['requests']} requests {engine['outcome']} in "
              f"{engine['wall_s']} s; KV usage {engine['kv_cache_usage_perc_start']} -> "
              f"{engine['kv_cache_usage_perc_end']} (peak {engine['kv_cache_usage_perc_peak']:.4f}); "
              f"free blocks {engine['kv_free_blocks_start']} -> min {engine['kv_free_blocks_min']}"
              f" -> {engine['kv_free_blocks_end']} of {engine['kv_blocks_total']} "
              f"({'returned' if engine['kv_blocks_returned'] else 'LEAKED'})")
    ok = engine is None or engine["kv_blocks_returned"]
    stores = {"both": ["sqlite", "postgres"], "none": []}.get(args.store, [args.store])
    for kind in stores:
        r = run_store(kind, args)
        r["local_engine"] = engine
        (RESULTS / f"soak_{kind}.json").write_text(json.dumps(r, indent=2) + "\n")
        print_store(r)
        ok = ok and r["spend_rows_match"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
