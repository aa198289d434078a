#!/usr/bin/env python3
"""The fused-MoE operation (workers/src/layers/moe.rs, timed by the
`bench_moe` binary) against transformers' `MixtralSparseMoeBlock` on the
same CPU, shapes and torch thread count, in one run.

Shapes: Mixtral-like at reduced width (8 experts, top-2, hidden 1024,
expert intermediate 3584: Mixtral-8x7B's 4096/14336 divided by 4), f32,
random weights, at several token counts (1 is a decode step, 512 a prefill
chunk). Both sides route with a softmax over the experts and renormalized
top-2; transformers gathers each expert's tokens through a one-hot mask and
loops over the experts hit, ours sorts (token, slot) pairs by expert and runs
one product per active expert. Prints a table of median milliseconds per
call with the ratio and writes bench/results/moe_cpu.json.

Usage: python scripts/bench_moe.py [--tokens 1,16,128,512] [--iters 20]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_decode import machine  # noqa: E402


def hf_block(hidden, inter, experts, top_k):
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
    config = MixtralConfig(hidden_size=hidden, intermediate_size=inter,
                           num_local_experts=experts, num_experts_per_tok=top_k)
    return MixtralSparseMoeBlock(config).eval()


def time_hf(block, tokens, hidden, iters, warmup):
    x = torch.randn(1, tokens, hidden)
    with torch.no_grad():
        for _ in range(warmup):
            block(x)
        ms = []
        for _ in range(iters):
            start = time.perf_counter()
            block(x)
            ms.append((time.perf_counter() - start) * 1e3)
    return statistics.median(ms)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="1,16,128,512")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=3584)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench/results/moe_cpu.json"))
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "workers", "--bin", "bench_moe"],
                   cwd=ROOT, check=True)
    threads = torch.get_num_threads()
    ours_out = subprocess.run(
        [str(ROOT / "target/release/bench_moe"), "--tokens", args.tokens,
         "--hidden", str(args.hidden), "--inter", str(args.inter),
         "--experts", str(args.experts), "--top-k", str(args.top_k),
         "--iters", str(args.iters), "--warmup", str(args.warmup),
         "--threads", str(threads)],
        cwd=ROOT, check=True, capture_output=True, text=True).stdout
    ours = {r["tokens"]: r for r in map(json.loads, ours_out.split())}
    torch.manual_seed(0)
    block = hf_block(args.hidden, args.inter, args.experts, args.top_k)
    rows = []
    print(f"fused MoE vs transformers MixtralSparseMoeBlock: {args.experts} experts, "
          f"top-{args.top_k}, hidden {args.hidden}, expert intermediate {args.inter}, "
          f"f32, {threads} torch threads")
    print(f"{'tokens':>7} {'ours ms':>9} {'transformers ms':>16} {'speed-up':>9}")
    for t in (int(x) for x in args.tokens.split(",")):
        hf = time_hf(block, t, args.hidden, args.iters, args.warmup)
        mine = ours[t]["median_ms"]
        rows.append({"tokens": t, "ours_median_ms": mine, "transformers_median_ms": hf,
                     "speedup": hf / mine})
        print(f"{t:>7} {mine:>9.2f} {hf:>16.2f} {hf / mine:>8.2f}x")
    result = {"benchmark": "fused_moe_cpu", "shapes": vars(args), "machine": machine("cpu"),
              "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
