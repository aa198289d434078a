#!/usr/bin/env python3
"""What structured outputs cost: TPOT with a JSON schema on every request
against the same requests unconstrained, in one run on one server.

Starts `engine serve --model smollm2` (release build), then at concurrency
32 streams fixed-length greedy completions (`ignore_eos`, so both arms
decode the same number of tokens) twice each, alternating free and
constrained so drift hits both, each run on its own prompts (no prefix-cache
hits). The schema is an open-ended array of
records, so the grammar is live for every token rather than finished
early. Reads per step from /metrics the time spent computing bitmasks
(`engine:grammar_bitmask_seconds_total`: beside the forward pass on an
accelerator, before the step on CPU, where a second thread slows the
forward by what it hides) and the `grammar` step phase (the part on the
step's critical path: bitmasks computed before the step or waited for
after the forward pass, and advancing the grammars).

Goal (issue 17): constrained TPOT within 10% of unconstrained.

Usage: python scripts/bench_structured.py [--output-len 64] [--binary PATH]
       [--device cpu|cuda] [--dtype f32|bf16|f16] [--out PATH]
Writes bench/results/structured_<device>.json (scripts/gpu_check.sh runs it
on a lent GPU in bf16, where the bitmasks overlap the forward pass).
"""
import argparse
import json
import random
import statistics
import sys

import httpx
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_decode import machine  # noqa: E402
import bench_serve  # noqa: E402
from bench_serve_hf import drive, free_port, start_server  # noqa: E402
from step_breakdown import counters  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"records": {"type": "array", "items": {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 24},
                       "score": {"type": "integer", "minimum": 0, "maximum": 1000},
                       "kind": {"enum": ["alpha", "beta", "gamma"]}},
        "required": ["name", "score", "kind"], "additionalProperties": False}}},
    "required": ["records"], "additionalProperties": False,
}
CONSTRAINED = {"response_format": {"type": "json_schema",
                                   "json_schema": {"name": "records", "schema": SCHEMA}}}


def bitmask_seconds(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("engine:grammar_bitmask_seconds_total"):
            return float(line.split()[-1])
    sys.exit("/metrics lacks engine:grammar_bitmask_seconds_total: is the build current?")


def arm(args, port, texts, extra_body):
    before = counters(port)
    masks_before = bitmask_seconds(port)
    report = drive(args, port, args.concurrency, texts, extra_body)
    after = counters(port)
    masks_after = bitmask_seconds(port)
    steps = after["steps"] - before["steps"]
    return {"tpot_ms": report["tpot_s"]["mean"] * 1e3,
            "tpot_median_ms": report["tpot_s"]["median"] * 1e3,
            "output_throughput": report["output_throughput"],
            "failed": report["failed"], "errors": report["errors"],
            "steps": steps,
            "bitmask_ms_per_step": (masks_after - masks_before) / steps * 1e3,
            "grammar_ms_per_step": (after["grammar"] - before["grammar"]) / steps * 1e3,
            "forward_ms_per_step": (after["forward"] - before["forward"]) / steps * 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-prompts", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=["f32", "bf16", "f16"])
    ap.add_argument("--out", help="result JSON (default bench/results/structured_<device>.json)")
    args = ap.parse_args()
    device_args = ["--device", args.device, "--dtype", args.dtype]
    if args.device == "cuda":
        device_args += ["--gpu-memory-utilization", "0.5"]
    # Disjoint prompts per run: a repeated prompt would hit the prefix
    # cache and favour whichever arm runs second.
    texts = [p for p, _ in bench_serve.make_requests(
        random.Random(args.seed), 4 * args.num_prompts + 2, args.input_len, args.output_len, 0.0)]
    warmup, sets = texts[:2], [texts[2 + i * args.num_prompts:2 + (i + 1) * args.num_prompts]
                               for i in range(4)]
    port = free_port()
    server = start_server(Path(args.binary), port, device_args)
    runs = {"free": [], "json_schema": []}
    try:
        drive(args, port, 2, warmup, CONSTRAINED)
        for i in range(2):
            runs["free"].append(arm(args, port, sets[2 * i], {}))
            runs["json_schema"].append(arm(args, port, sets[2 * i + 1], CONSTRAINED))
    finally:
        server.terminate()
        server.wait(timeout=30)
    failed = sum(r["failed"] for rs in runs.values() for r in rs)
    mean = {k: {m: statistics.fmean(r[m] for r in rs) for m in rs[0] if m not in ("errors",)}
            for k, rs in runs.items()}
    ratio = mean["json_schema"]["tpot_ms"] / mean["free"]["tpot_ms"]
    print(f"SmolLM2 on {args.device} ({args.dtype}), {args.concurrency} concurrent, "
          f"{args.output_len} tokens each, "
          f"{args.num_prompts} requests per run, 2 runs per arm, disjoint prompts")
    print(f"{'':14}{'TPOT ms':>10}{'tok/s':>10}{'bitmask ms/step':>17}"
          f"{'grammar ms/step':>17}{'forward ms/step':>17}")
    for k, m in mean.items():
        print(f"{k:14}{m['tpot_ms']:10.1f}{m['output_throughput']:10.1f}"
              f"{m['bitmask_ms_per_step']:17.2f}{m['grammar_ms_per_step']:17.2f}"
              f"{m['forward_ms_per_step']:17.2f}")
    print("bitmask: computing the masks (beside the forward pass on an accelerator, before "
          "the step on CPU); grammar: the part on the step's critical path")
    print(f"constrained / free TPOT: {ratio:.3f} (goal <= 1.10); failed requests: {failed}")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"structured_{args.device}.json"
    out.write_text(json.dumps({
        "benchmark": "TPOT with a JSON schema on every request vs unconstrained, same server "
                     "and run (scripts/bench_structured.py)",
        "machine": machine(args.device), "params": vars(args),
        "schema": SCHEMA, "runs": runs, "mean": mean, "tpot_ratio": ratio,
        "failed": failed,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    if failed:
        sys.exit("some requests failed")
    if mean["json_schema"]["bitmask_ms_per_step"] <= 0:
        sys.exit("the constrained arm spent no time in grammars: was the schema sent?")


if __name__ == "__main__":
    main()
