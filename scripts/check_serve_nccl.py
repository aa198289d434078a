#!/usr/bin/env python3
"""End to end on a GPU: `engine serve --tp 1 --device cuda --tp-communicator
nccl` (every all-reduce and all-gather of the model through a one-rank NCCL
group) answers greedy chat requests exactly as the default `--tp 1` (no
communicator) does, in float32 by default (in bf16 the two paths round
differently: the default fuses the residual add into the GEMM).

Each worker logs the communicator it joined: it must be `nccl` for the NCCL
server and `none` for the default. Both run with NCCL_DEBUG=INFO, and NCCL's
init lines are kept in the report. Writes a JSON report (--out) and exits
non-zero on any difference.

Usage: python scripts/check_serve_nccl.py [--binary target/release/engine]
       [--dtype float32] [--max-tokens 32] [--out nccl_serve.json]
"""
import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_serve_hf import free_port, start_server  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Explain gravity in one sentence.",
    "Give me a short recipe for pancakes.",
]


def greedy(port: int, prompt: str, max_tokens: int) -> str:
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=300, json={
        "model": "smollm2", "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens, "temperature": 0})
    r.raise_for_status()
    return r.json()["choices"][0]["message"]["content"]


def serve(args, label: str, extra: list) -> dict:
    """Starts the server, asks every prompt, stops it; its log is kept as
    /tmp/nccl-serve-<label>.log (printed in part if it fails to start)."""
    port = free_port()
    log_path = Path(f"/tmp/bench-serve-{port}.log")
    kept = Path(f"/tmp/nccl-serve-{label}.log")
    try:
        server = start_server(Path(args.binary), port,
                              ["--device", args.device, "--dtype", args.dtype, "--tp", "1", *extra])
    except SystemExit as e:
        if log_path.exists():
            log_path.rename(kept)
            print("\n".join(kept.read_text(errors="replace").splitlines()[-30:]))
        sys.exit(f"{label} server ({' '.join(extra) or 'default flags'}): {e}")
    try:
        start = time.time()
        outputs = [greedy(port, p, args.max_tokens) for p in PROMPTS]
        seconds = time.time() - start
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_path.rename(kept)
    log = kept.read_text(errors="replace")
    nccl_lines = [line for line in log.splitlines() if "NCCL INFO" in line]
    found = re.search(r"worker: rank 0 of 1 on \S+, communicator (\w+)", log)
    return {
        "flags": extra,
        "outputs": outputs,
        "seconds": round(seconds, 2),
        "communicator": found.group(1) if found else None,
        "nccl_info_lines": len(nccl_lines),
        "nccl_init": [line.strip() for line in nccl_lines
                      if re.search(r"NCCL version|Init COMPLETE", line)][:4],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--device", default="cuda",
                    help="cuda; cpu only to smoke-test this script (the NCCL server must refuse)")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "nccl_serve.json"))
    args = ap.parse_args()
    os.environ["NCCL_DEBUG"] = "INFO"
    default = serve(args, "default", [])
    nccl = serve(args, "nccl", ["--tp-communicator", "nccl"])
    same = [a == b for a, b in zip(default["outputs"], nccl["outputs"])]
    result = {
        "check": f"engine serve --tp 1 --device {args.device}: --tp-communicator nccl against the default, "
                 f"greedy chat, {args.max_tokens} tokens, {args.dtype}",
        "dtype": args.dtype,
        "prompts": PROMPTS,
        "default": default,
        "nccl": nccl,
        "outputs_equal": sum(same),
        "ok": all(same) and nccl["communicator"] == "nccl" and default["communicator"] == "none",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"nccl serve: {sum(same)}/{len(PROMPTS)} greedy outputs equal to the default; "
          f"worker communicator: {nccl['communicator']} (default server: {default['communicator']}); "
          f"NCCL INFO lines {nccl['nccl_info_lines']}; {'ok' if result['ok'] else 'FAILED'}")
    for line in nccl["nccl_init"]:
        print(f"  {line}")
    for prompt, a, b in zip(PROMPTS, default["outputs"], nccl["outputs"]):
        if a != b:
            print(f"  differs on {prompt!r}:\n    default: {a!r}\n    nccl:    {b!r}")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
