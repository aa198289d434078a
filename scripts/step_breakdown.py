#!/usr/bin/env python3
"""Where a decode step's time goes, served over HTTP.

Starts `engine serve --model smollm2` (release build, the flags after `--`
added), streams fixed-length greedy completions at concurrency 1 and 32
with scripts/bench_serve.py, and reads the engine's per-phase step counters
(`engine:step_phase_seconds_total{phase}`, `engine:steps_total`) from
/metrics before and after each run. Per step it prints:

  schedule   the engine core: scheduling and building the step request
  grammar    structured outputs: waiting for the bitmasks after the forward
             pass (they are computed beside it) and advancing the grammars
  transport  gRPC to the worker and back (the round trip less the worker's
             own phases)
  prepare    the worker: applying the step's deltas, building the batch
  forward    the model's forward pass
  sample     sampling, logprobs and building the step's result
  output     the engine core: scheduler update, detokenizing hand-off,
             metrics, sending each stream its tokens
  outside    wall time per step not spent in the engine loop's step: the
             HTTP layer, waiting for requests, the loop's own overhead

Writes bench/results/step_breakdown_<label>.json.

Usage: python scripts/step_breakdown.py [--label cpu] [--output-len 64]
       [-- extra engine serve flags]
"""
import argparse
import asyncio
import json
import re
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_serve  # noqa: E402
from bench_decode import machine  # noqa: E402
from bench_serve_hf import drive, free_port, prompt_sets, start_server  # noqa: E402

PHASES = ["schedule", "grammar", "transport", "prepare", "forward", "sample", "output"]


def counters(port: int) -> dict:
    """The step counters now: {phase: seconds} and "steps"."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    got = {}
    for line in text.splitlines():
        m = re.match(r'engine:step_phase_seconds_total\{.*phase="(\w+)".*\} (\S+)', line)
        if m:
            got[m.group(1)] = float(m.group(2))
        elif line.startswith("engine:steps_total"):
            got["steps"] = float(line.split()[-1])
    missing = [p for p in PHASES + ["steps"] if p not in got]
    if missing:
        sys.exit(f"/metrics lacks the step counters {missing}: is the build current?")
    return got


def measured(args, port, concurrency, texts) -> dict:
    before = counters(port)
    report = drive(args, port, concurrency, texts)
    after = counters(port)
    steps = after["steps"] - before["steps"]
    per_step = {p: (after[p] - before[p]) / steps * 1e3 for p in PHASES}
    wall = report["duration_s"] / steps * 1e3
    per_step["outside"] = wall - sum(per_step[p] for p in PHASES)
    return {"concurrency": concurrency, "steps": steps, "wall_ms_per_step": wall,
            "ms_per_step": per_step, "output_throughput": report["output_throughput"],
            "failed": report["failed"]}


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="cpu")
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    args = ap.parse_args(argv)
    warmup, singles, concurrent = prompt_sets(args)
    port = free_port()
    server = start_server(Path(args.binary), port, extra)
    try:
        drive(args, port, 1, warmup)
        runs = [measured(args, port, 1, singles), measured(args, port, 32, concurrent)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"ms per step, engine serve {' '.join(extra) or '(defaults)'}")
    print(f"{'':12}" + "".join(f"{'c=' + str(r['concurrency']):>10}" for r in runs))
    for p in PHASES + ["outside"]:
        print(f"{p:12}" + "".join(f"{r['ms_per_step'][p]:10.2f}" for r in runs))
    print(f"{'wall':12}" + "".join(f"{r['wall_ms_per_step']:10.2f}" for r in runs))
    print(f"{'out tok/s':12}" + "".join(f"{r['output_throughput']:10.1f}" for r in runs))
    out = ROOT / "bench" / "results" / f"step_breakdown_{args.label}.json"
    out.write_text(json.dumps({
        "benchmark": "SmolLM2 over HTTP, greedy, fixed output length: engine time per decode "
                     "step by phase (engine:step_phase_seconds_total)",
        "engine_args": extra, "machine": machine("cpu"), "params": vars(args), "runs": runs,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
