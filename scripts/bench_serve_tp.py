#!/usr/bin/env python3
"""Serving SmolLM2 at tensor-parallel sizes side by side (default 1 and 3).

For each size starts `engine serve --model smollm2 --tp N` (release build),
drives it with scripts/bench_serve.py one request at a time and at 32
concurrent (same prompts, greedy, fixed output length), stops it. Prints a
table of output tokens/s, TTFT and TPOT, and each size's extra time per
decode step over the first size: on a CPU with fewer cores than ranks no
speed-up is expected, so this measures what the communicator costs per
step (SmolLM2 runs 2 collectives per layer plus the embedding's and the LM
head's: 62 a step). Writes bench/results/serve_cpu_tp.json.

Usage: python scripts/bench_serve_tp.py [--sizes 1 3] [--num-prompts 32]
       [--output-len 64]
"""
import argparse
import json
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_decode import machine  # noqa: E402
from bench_serve_hf import free_port, ours, prompt_sets, start_server  # noqa: E402

# 30 layers x (o_proj + down_proj all-reduce) + embedding all-reduce +
# LM head all-gather.
COLLECTIVES_PER_STEP = 62


def measure(args, tp: int) -> dict:
    port = free_port()
    server = start_server(Path(args.binary), port, ["--tp", str(tp)])
    # The same prompt sets as bench_serve_hf.py: nothing measured was sent before.
    warmup, singles, concurrent = prompt_sets(args)
    try:
        ours(args, port, 1, warmup)
        single = ours(args, port, 1, singles)
        many = ours(args, port, 32, concurrent)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "single_stream": {"output_throughput": single["output_throughput"],
                          "ttft_median_s": single["ttft_s"]["median"],
                          "tpot_median_s": single["tpot_s"]["median"],
                          "failed": single["failed"]},
        "32_concurrent": {"output_throughput": many["output_throughput"],
                          "ttft_median_s": many["ttft_s"]["median"],
                          "tpot_median_s": many["tpot_s"]["median"],
                          "failed": many["failed"]},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve_cpu_tp.json"))
    args = ap.parse_args()
    runs = {tp: measure(args, tp) for tp in args.sizes}
    base = runs[args.sizes[0]]
    print(f"{'':26} {'out tok/s':>10} {'TTFT ms':>9} {'TPOT ms':>9} {'+ms/step':>9} {'us/coll':>8}")
    for tp, r in runs.items():
        for mode in ("single_stream", "32_concurrent"):
            m = r[mode]
            extra = m["tpot_median_s"] - base[mode]["tpot_median_s"]
            m["extra_step_s_vs_first_size"] = extra
            m["extra_per_collective_s"] = extra / COLLECTIVES_PER_STEP
            print(f"{f'--tp {tp}, {mode}':26} {m['output_throughput']:10.1f} "
                  f"{m['ttft_median_s']*1e3:9.1f} {m['tpot_median_s']*1e3:9.1f} "
                  f"{extra*1e3:9.1f} {extra/COLLECTIVES_PER_STEP*1e6:8.0f}")
    result = {
        "benchmark": "SmolLM2-135M-Instruct (Q4_1 GGUF as f32) on cpu at tensor-parallel sizes "
                     f"{args.sizes}, greedy, fixed output length; TCP communicator on loopback",
        "machine": machine("cpu"),
        "params": vars(args),
        "collectives_per_step": COLLECTIVES_PER_STEP,
        "runs": {f"tp{tp}": r for tp, r in runs.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
