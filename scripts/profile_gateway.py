#!/usr/bin/env python3
"""Where the gateway's CPU goes: `engine serve --config` in front of nginx
(as `bench_gateway.py` sets it up), loaded by `oha` at full speed while
`perf record` samples the gateway process; prints the requests/s, the
gateway's CPU per request (user and system, from /proc) and the shares of
the samples by part (kernel, allocator, HTTP server, HTTP client, JSON,
SQLite, spend writer), then the innermost `frontend::` frames.

Needs perf (Debian: linux-perf), nginx, oha and a release engine built
with debug info (the release profile has `debug = 1`).

Usage: python scripts/profile_gateway.py [--mode control|plain]
       [--binary target/release/engine] [--seconds 6] [--keep perf.data]
"""
import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gateway as bench  # noqa: E402

PARTS = [
    ("sqlite", r"sqlite3|sqlx_sqlite"),
    ("spend writer and journal", r"spend_writer|journal"),
    ("json", r"serde_json|serde_path_to_error"),
    ("http client (reqwest, hyper)", r"reqwest::|hyper_util::client|hyper::client|role::Client"),
    ("http server (hyper)", r"role::Server|hyper::server|hyper_util::server"),
    ("allocator", r"mi_|malloc|free"),
    ("prometheus", r"prometheus::"),
]


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def shares(data: Path):
    out = subprocess.run(["perf", "script", "-i", str(data), "--no-inline", "-F", "comm,ip,sym"],
                         capture_output=True, text=True, check=True).stdout
    parts, ours = collections.Counter(), collections.Counter()
    for sample in out.split("\n\n"):
        frames = [f.strip() for f in sample.strip().split("\n")[1:] if f.strip()]
        if not frames:
            continue
        top = "\n".join(frames[:12])
        parts[next((name for name, pat in PARTS if re.search(pat, top)), "other (kernel, tokio)")] += 1
        own = next((f for f in frames if "frontend::" in f), None)
        if own:
            ours[re.sub(r"\+0x[0-9a-f]+.*", "", re.sub(r"^\S+\s+", "", own))[:110]] += 1
    return parts, ours


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mode", default="control", choices=["control", "plain"])
    ap.add_argument("--binary", type=Path, default=bench.ROOT / "target" / "release" / "engine")
    ap.add_argument("--seconds", type=int, default=6)
    ap.add_argument("--keep", type=Path, help="keep perf.data here")
    args = ap.parse_args()
    oha = bench.find_tool("oha", [bench.ROOT / ".tools" / "bin"]) or sys.exit("oha not found")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        up = bench.free_port()
        nginx = bench.start_nginx(tmp, up)
        port = bench.free_port()
        yaml = bench.control_yaml(tmp) if args.mode == "control" else ""
        gateway = bench.start_gateway(args.binary, tmp, port, up, yaml, [])
        try:
            headers = [f"Authorization: Bearer {bench.create_key(port)}"] if args.mode == "control" else []
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            bench.oha(oha, url, 2, 8, headers=headers)
            data = args.keep or tmp / "perf.data"
            perf = subprocess.Popen(
                ["perf", "record", "-F", "999", "-g", "--call-graph", "dwarf,16384",
                 "-p", str(gateway.pid), "-o", str(data), "--", "sleep", str(args.seconds)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (u0, s0), t0 = cpu_seconds(gateway.pid), time.time()
            run = bench.oha(oha, url, args.seconds, 16, headers=headers)
            (u1, s1), t1 = cpu_seconds(gateway.pid), time.time()
            perf.wait()
        finally:
            gateway.terminate()
            nginx.terminate()
            gateway.wait(timeout=20)
            nginx.wait(timeout=20)
        rps = run["requests_per_s"]
        n = rps * (t1 - t0)
        print(f"{args.mode}: {rps:.0f} req/s; gateway {((u1 - u0) + (s1 - s0)) / (t1 - t0):.2f} cores, "
              f"{1e6 * (u1 - u0) / n:.0f} us user + {1e6 * (s1 - s0) / n:.0f} us system a request")
        parts, ours = shares(data)
        total = sum(parts.values())
        for name, count in parts.most_common():
            print(f"{100 * count / total:5.1f}%  {name}")
        print("innermost frontend frames:")
        for name, count in ours.most_common(15):
            print(f"{100 * count / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
