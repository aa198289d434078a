#!/usr/bin/env python3
"""The gateway's overhead: `engine serve --config` in front of a fast static
upstream (nginx from Debian answering a fixed OpenAI chat completion)
against calling that upstream directly, in the same run, with `oha` as the
load tool.

Each mode is a gateway configuration: `plain` (routing only) and `control`
(a master key, a virtual key with rpm/tpm limits checked on every request,
spend computed and logged in SQLite in batches). Both run in one
invocation against the same upstream, each measured against the direct
path:
- latency at a fixed rate (--rate, default 1,000 requests/s, with oha's
  latency correction so a stall is not hidden by coordinated omission):
  p50 and p99, and the added latency (gateway minus direct);
- maximum throughput: requests/s with --connections open connections and no
  rate limit.

Prints a table and writes bench/results/gateway_cpu.json (or --out).

Needs: `nginx` (Debian: apt-get install nginx-light) and `oha` (cargo
install oha --locked; found on PATH or in .tools/bin), and the release
engine (cargo build --release -p engine). Extra gateway flags after `--`.

Usage: python scripts/bench_gateway.py [--duration 10] [--rate 1000]
       [--connections 64] [--modes plain,control] [--config-extra FILE.yaml]
"""
import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

UPSTREAM_BODY = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
})
REQUEST_BODY = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}],
                           "max_tokens": 1})


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tool(name, extra_dirs):
    for d in extra_dirs:
        p = Path(d) / name
        if p.exists():
            return str(p)
    return shutil.which(name)


def start_nginx(tmp: Path, port: int) -> subprocess.Popen:
    """nginx (one worker, no access log) answering the static completion."""
    nginx = find_tool("nginx", ["/usr/sbin"])
    if not nginx:
        sys.exit("nginx not found: apt-get install nginx-light")
    body = UPSTREAM_BODY.replace("'", "\\'")
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location /v1/chat/completions {{
      default_type application/json;
      return 200 '{body}';
    }}
  }}
}}
""")
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    wait_port(port, proc, "nginx")
    return proc


def start_gateway(binary: Path, tmp: Path, port: int, upstream_port: int, extra_yaml: str,
                  extra_args) -> subprocess.Popen:
    """`engine serve --config` with one deployment: the nginx upstream."""
    config = tmp / "gateway.yaml"
    config.write_text(f"""
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-bench
      input_cost_per_token: 0.00000015
      output_cost_per_token: 0.0000006
{extra_yaml}
""")
    log = tmp / "gateway.log"
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(config), "--host", "127.0.0.1",
         "--port", str(port), *extra_args],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    wait_port(port, proc, f"the gateway (log: {log})")
    return proc


MASTER_KEY = "sk-bench-master"


def control_yaml(tmp: Path) -> str:
    """The control plane on: master key, SQLite store, 1 s spend batches."""
    return f"""
general_settings:
  master_key: {MASTER_KEY}
  database_url: sqlite://{tmp}/bench.db
  proxy_batch_write_at: 1
"""


def create_key(port: int) -> str:
    """A virtual key with limits high enough never to refuse the benchmark
    but checked (and counted in memory) on every request."""
    body = json.dumps({"key_alias": "bench", "rpm_limit": 10_000_000,
                       "tpm_limit": 1_000_000_000, "max_budget": 1_000_000}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/key/generate", data=body,
                                 headers={"Authorization": f"Bearer {MASTER_KEY}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["key"]


def spend_recorded(port: int) -> dict:
    """What the control plane logged during the runs: total spend and the
    number of spend-log rows (proof that logging was on)."""
    def get(path):
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": f"Bearer {MASTER_KEY}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())
    report = get("/global/spend/report?group_by=api_key")
    return {"spend_usd": get("/global/spend")["spend"],
            "logged_requests": sum(row["requests"] for row in report)}


def wait_port(port, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    proc.kill()
    sys.exit(f"{what} did not start listening on {port}")


def oha(tool, url, duration, connections, rate=None, headers=()):
    """One oha run; returns (requests/s, p50 ms, p99 ms, success rate, non-200 count)."""
    cmd = [tool, "-z", f"{duration}s", "-c", str(connections), "--no-tui",
           "--output-format", "json", "-m", "POST",
           "-H", "content-type: application/json", "-d", REQUEST_BODY]
    for h in headers:
        cmd += ["-H", h]
    if rate:
        cmd += ["-q", str(rate), "--latency-correction"]
    out = subprocess.run(cmd + [url], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    codes = r.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    total = sum(int(v) for v in codes.values())
    return {
        "requests_per_s": r["summary"]["requestsPerSec"],
        "p50_ms": r["latencyPercentiles"]["p50"] * 1e3,
        "p99_ms": r["latencyPercentiles"]["p99"] * 1e3,
        "success_rate": r["summary"]["successRate"],
        "non_200": total - ok,
        "status_codes": codes,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "engine")
    ap.add_argument("--duration", type=int, default=10, help="seconds per oha run")
    ap.add_argument("--rate", type=int, default=1000, help="requests/s of the latency runs")
    ap.add_argument("--connections", type=int, default=64, help="connections of the max runs")
    ap.add_argument("--config-extra", type=Path,
                    help="YAML appended to the gateway config (auth, limits, logging)")
    ap.add_argument("--header", action="append", default=[],
                    help="extra request header for the gateway runs (e.g. an API key)")
    ap.add_argument("--modes", default="plain,control",
                    help="comma list of gateway configurations: plain, control")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gateway_cpu.json")
    ap.add_argument("gateway_args", nargs="*")
    args = ap.parse_args()

    tool = find_tool("oha", [ROOT / ".tools" / "bin"])
    if not tool:
        sys.exit("oha not found: cargo install oha --locked --root .tools")
    if not args.binary.exists():
        sys.exit(f"{args.binary} missing: cargo build --release -p engine")
    extra_yaml = args.config_extra.read_text() if args.config_extra else ""

    modes = [m for m in args.modes.split(",") if m]
    results = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        nginx = start_nginx(tmp, up_port)
        direct_url = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        try:
            oha(tool, direct_url, 2, 8)
            direct = {
                "direct_fixed_rate": oha(tool, direct_url, args.duration, 16, args.rate),
                "direct_max": oha(tool, direct_url, args.duration, args.connections),
            }
            for mode in modes:
                results[mode] = run_mode(mode, args, tool, tmp, up_port, extra_yaml, direct)
        finally:
            nginx.terminate()
            nginx.wait(timeout=20)

    print(f"\ngateway overhead, {args.rate} req/s for {args.duration} s, "
          f"then max with {args.connections} connections ({os.cpu_count()} CPUs)")
    print(f"| {'run':<30} | {'req/s':>9} | {'p50 ms':>7} | {'p99 ms':>7} | {'non-200':>7} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 9}|{'-' * 9}|{'-' * 9}|")
    rows = dict(direct)
    for mode, r in results.items():
        rows.update({f"{mode}: gateway_fixed_rate": r["runs"]["gateway_fixed_rate"],
                     f"{mode}: gateway_max": r["runs"]["gateway_max"]})
    for name, r in rows.items():
        print(f"| {name:<30} | {r['requests_per_s']:>9.0f} | {r['p50_ms']:>7.3f} | "
              f"{r['p99_ms']:>7.3f} | {r['non_200']:>7} |")
    print()
    for mode, r in results.items():
        if r["spend_recorded"]:
            print(f"{mode}: spend logs hold {r['spend_recorded']['logged_requests']} requests, "
                  f"{r['spend_recorded']['spend_usd']:.6f} USD")
        sm = r["summary"]
        print(f"{mode}: added latency at {args.rate} req/s p50 {sm['added_p50_ms']:.3f} ms, "
              f"p99 {sm['added_p99_ms']:.3f} ms (goal: p99 < 1 ms); max "
              f"{sm['gateway_max_rps']:.0f} req/s = {sm['max_rps_ratio']:.2f}x direct")
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "binary": str(args.binary),
        "rate": args.rate, "duration_s": args.duration, "connections": args.connections,
        "direct": direct, "modes": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def run_mode(mode, args, tool, tmp, up_port, extra_yaml, direct):
    """One gateway configuration against the shared upstream."""
    headers = list(args.header)
    yaml = extra_yaml
    mode_tmp = tmp / mode
    mode_tmp.mkdir()
    if mode == "control":
        yaml += control_yaml(mode_tmp)
    elif mode != "plain":
        sys.exit(f"unknown mode {mode}: plain or control")
    gw_port = free_port()
    gateway = start_gateway(args.binary, mode_tmp, gw_port, up_port, yaml, args.gateway_args)
    try:
        if mode == "control":
            headers.append(f"Authorization: Bearer {create_key(gw_port)}")
        gateway_url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        oha(tool, gateway_url, 2, 8, headers=headers)
        runs = {
            "gateway_fixed_rate": oha(tool, gateway_url, args.duration, 16, args.rate,
                                      headers=headers),
            "gateway_max": oha(tool, gateway_url, args.duration, args.connections,
                               headers=headers),
        }
        recorded = spend_recorded(gw_port) if mode == "control" else None
    finally:
        gateway.terminate()
        gateway.wait(timeout=20)
    d, g = direct["direct_fixed_rate"], runs["gateway_fixed_rate"]
    dm, gm = direct["direct_max"], runs["gateway_max"]
    return {"runs": runs, "spend_recorded": recorded, "summary": {
        "added_p50_ms": g["p50_ms"] - d["p50_ms"],
        "added_p99_ms": g["p99_ms"] - d["p99_ms"],
        "gateway_max_rps": gm["requests_per_s"],
        "direct_max_rps": dm["requests_per_s"],
        "max_rps_ratio": gm["requests_per_s"] / dm["requests_per_s"],
    }}


if __name__ == "__main__":
    main()
