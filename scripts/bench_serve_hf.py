#!/usr/bin/env python3
"""Serving SmolLM2, ours against HF transformers and llama.cpp in the same run.

Starts `engine serve --model smollm2` (release build), drives it with
scripts/bench_serve.py at concurrency 1 and 32 (greedy, fixed output
length), then runs transformers on the same GGUF, device and dtype: one
request at a time (single stream: how a plain transformers server serves)
and all 32 as one padded `generate` batch (its best case for throughput:
static batching, no arrivals). On the CPU, llama.cpp's server
(`llama-cpp-python[server]`, scripts/setup_llama_cpp.sh; its rows are left
out when it is not installed) serves the same file and prompts at 1 and 32
concurrent clients; it answers one request at a time. Prints a table of output tokens/s and TTFT
with ratios and writes bench/results/serve_<device>.json.

Both sides get the same prompts (`prompt_sets`: one list from the seed, cut
into a warm-up set and the two measured sets), and no measured prompt was
sent before: prefix caching stays on (the server's default), but the
warm-up and the single-stream run use prompts the 32-concurrent run never
sees, so nothing it measures comes from the cache. Prompts are
`--input-len` words (about 1.2 tokens each), not tokens.

Usage: python scripts/bench_serve_hf.py [--num-prompts 32] [--output-len 64]
       [--device cpu|cuda] [--dtype f32|bf16|f16]
"""
import argparse
import asyncio
import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_serve  # noqa: E402
from bench_decode import TORCH_DTYPES, machine, smollm2_gguf  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary: Path, port: int, extra_args: list) -> subprocess.Popen:
    """`engine serve --model smollm2` on `port` with `extra_args`, once
    healthy; ends the script if it exits or never turns healthy."""
    log_path = f"/tmp/bench-serve-{port}.log"
    cmd = [str(binary), "serve", "--model", "smollm2", "--host", "127.0.0.1",
           "--port", str(port), "--max-model-len", "2048", *extra_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    return wait_until_answering(proc, f"http://127.0.0.1:{port}/health", 180, "engine", log_path)


def wait_until_answering(proc, url: str, seconds: float, what: str, log_path: str):
    """`proc` once `url` answers 200; ends the script if `proc` exits or
    `seconds` pass first."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited: see {log_path}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    sys.exit(f"{what} did not answer within {seconds} s: see {log_path}")


WARMUP_PROMPTS = 2


def prompt_sets(args):
    """(warm-up, single stream, concurrent): disjoint prompt lists cut from
    one list drawn from `args.seed`, of 2, num_prompts // 4 and num_prompts
    prompts. Ours and transformers are given the same lists."""
    singles = max(1, args.num_prompts // 4)
    requests = bench_serve.make_requests(random.Random(args.seed),
                                         WARMUP_PROMPTS + singles + args.num_prompts,
                                         args.input_len, args.output_len, 0.0)
    texts = [prompt for prompt, _ in requests]
    return (texts[:WARMUP_PROMPTS], texts[WARMUP_PROMPTS:WARMUP_PROMPTS + singles],
            texts[WARMUP_PROMPTS + singles:])


def drive(args, port, concurrency, texts, extra_body=None):
    """bench_serve.run against the server on `port` (ours or llama.cpp's)
    at `concurrency` over `texts`, each asking for exactly
    `args.output_len` tokens, with `extra_body`'s fields added."""
    ns = argparse.Namespace(base_url=f"http://127.0.0.1:{port}", model="smollm2",
                            num_prompts=len(texts), concurrency=concurrency,
                            request_rate=float("inf"), input_len=args.input_len,
                            output_len=args.output_len, range_ratio=0.0, seed=args.seed,
                            result=None, extra_body=extra_body or {})
    requests = [(text, args.output_len) for text in texts]
    return asyncio.run(bench_serve.run(ns, requests))


def start_llama_cpp(port: int) -> subprocess.Popen:
    """llama.cpp's OpenAI server (`llama-cpp-python[server]`, installed by
    scripts/setup_llama_cpp.sh) on the same GGUF, 2048 context, one thread
    per core, once it answers; None where it is not installed."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    import os
    log_path = f"/tmp/bench-llama-cpp-{port}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
         "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", str(os.cpu_count()),
         # By default a new request cuts the one in flight short: 32
         # concurrent clients then get a few tokens each. Queue them.
         "--interrupt_requests", "False"],
        cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    return wait_until_answering(proc, f"http://127.0.0.1:{port}/v1/models", 120,
                                "llama.cpp's server", log_path)


def serve_runs(args, server, port, warmup, singles, concurrent):
    """The warm-up, then the single-stream and the 32-concurrent runs
    against `server` (a started process serving on `port`), which is
    stopped after: (single, concurrent) bench_serve reports."""
    try:
        drive(args, port, 1, warmup)
        return drive(args, port, 1, singles), drive(args, port, 32, concurrent)
    finally:
        server.terminate()
        server.wait(timeout=30)


def intact(report: dict, args) -> bool:
    """Every request of a bench_serve run completed with all its tokens."""
    return (report["failed"] == 0
            and report["total_output_tokens"] == report["num_prompts"] * args.output_len)


def synchronize(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def hf_runs(args, warmup, singles, texts):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if tok.pad_token is None:  # some transformers versions read none from the GGUF
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=TORCH_DTYPES[args.dtype]).to(args.device).eval()
    n = args.output_len
    gen_kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id or 0)
    with torch.no_grad():  # warm up (CUDA context, kernels) on the warm-up prompts
        for t in warmup:
            model.generate(**tok(t, return_tensors="pt", add_special_tokens=False).to(args.device),
                           max_new_tokens=4, do_sample=False, pad_token_id=gen_kw["pad_token_id"])
    # Single stream: each prompt alone, sequentially.
    synchronize(args.device)
    ttfts, start = [], time.perf_counter()
    with torch.no_grad():
        for t in singles:
            ids = tok(t, return_tensors="pt", add_special_tokens=False).to(args.device)
            t0 = time.perf_counter()
            model.generate(**ids, max_new_tokens=1, do_sample=False, pad_token_id=gen_kw["pad_token_id"])
            synchronize(args.device)
            ttfts.append(time.perf_counter() - t0)
            model.generate(**ids, **gen_kw)
            synchronize(args.device)
    # generate() ran twice per prompt (TTFT probe + full); count the full runs only.
    single_secs = time.perf_counter() - start - sum(ttfts)
    single = {"output_throughput": len(singles) * n / single_secs,
              "ttft_median_s": sorted(ttfts)[len(ttfts) // 2], "requests": len(singles)}
    # Static batch: all prompts padded left in one generate call.
    tok.padding_side = "left"
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(args.device)
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(**batch, **gen_kw)
        synchronize(args.device)
        secs = time.perf_counter() - t0
    batched = {"output_throughput": len(texts) * n / secs, "duration_s": secs, "requests": len(texts)}
    return single, batched


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=64)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--binary", default=str(ROOT / "target/release/engine"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="f32", choices=sorted(TORCH_DTYPES))
    ap.add_argument("--quantization", default="auto", choices=["auto", "none", "gguf", "int8"],
                    help="ours: how linear weights are held (auto: the GGUF's Q4_1 stays packed "
                         "int4 on the CPU; none: dequantized to --dtype)")
    ap.add_argument("--out", help="result JSON (default bench/results/serve_<device>.json)")
    args = ap.parse_args()
    port = free_port()
    device_args = ["--device", args.device, "--dtype", args.dtype,
                   "--quantization", args.quantization]
    if args.device == "cuda":
        device_args += ["--gpu-memory-utilization", "0.5"]
    warmup, singles, concurrent = prompt_sets(args)
    ours1, ours32 = serve_runs(args, start_server(Path(args.binary), port, device_args), port,
                               warmup, singles, concurrent)
    llama1 = llama32 = None
    if args.device == "cpu":
        llama_port = free_port()
        llama = start_llama_cpp(llama_port)
        if llama is None:
            print("llama.cpp: llama-cpp-python is not installed (bash scripts/setup_llama_cpp.sh); "
                  "its rows are left out")
        else:
            llama1, llama32 = serve_runs(args, llama, llama_port, warmup, singles, concurrent)
    hf1, hf32 = hf_runs(args, warmup, singles, concurrent)
    result = {
        "benchmark": f"SmolLM2-135M-Instruct (Q4_1 GGUF; ours --dtype {args.dtype} "
                     f"--quantization {args.quantization}, transformers dequantized to "
                     f"{args.dtype}) on {args.device}, greedy, fixed output length",
        "prompts": f"{args.input_len}-word prompts from seed {args.seed}, the same on both sides: "
                   f"{len(warmup)} warm-up, {len(singles)} single-stream and {len(concurrent)} "
                   "concurrent, no prompt sent twice (prefix caching on, nothing measured cached)",
        "machine": machine(args.device),
        "params": vars(args),
        "ours_single_stream": {"output_throughput": ours1["output_throughput"],
                               "ttft_median_s": ours1["ttft_s"]["median"],
                               "tpot_median_s": ours1["tpot_s"]["median"]},
        "ours_32_concurrent": {"output_throughput": ours32["output_throughput"],
                               "total_output_tokens": ours32["total_output_tokens"],
                               "streams_intact": intact(ours32, args),
                               "ttft_median_s": ours32["ttft_s"]["median"],
                               "ttft_p99_s": ours32["ttft_s"]["p99"],
                               "tpot_median_s": ours32["tpot_s"]["median"],
                               "itl_p99_s": ours32["itl_s"]["p99"],
                               "failed": ours32["failed"]},
        "transformers_single_stream": hf1,
        "transformers_static_batch_32": hf32,
    }
    if llama1 is not None:
        import llama_cpp
        for name, r in (("llama_cpp_single_stream", llama1), ("llama_cpp_32_concurrent", llama32)):
            result[name] = {"output_throughput": r["output_throughput"],
                            "ttft_median_s": r["ttft_s"]["median"],
                            "tpot_median_s": r["tpot_s"]["median"],
                            "failed": r["failed"],
                            "total_output_tokens": r["total_output_tokens"],
                            "streams_intact": intact(r, args)}
        result["llama_cpp_version"] = llama_cpp.__version__
        result["ratio_single_stream_vs_llama_cpp"] = (ours1["output_throughput"]
                                                      / llama1["output_throughput"])
        result["ratio_32_concurrent_vs_llama_cpp"] = (ours32["output_throughput"]
                                                      / llama32["output_throughput"])
    result["ratio_single_stream_throughput"] = ours1["output_throughput"] / hf1["output_throughput"]
    result["ratio_single_stream_ttft"] = ours1["ttft_s"]["median"] / hf1["ttft_median_s"]
    result["ratio_32_vs_single_stream_throughput"] = ours32["output_throughput"] / hf1["output_throughput"]
    result["ratio_32_vs_static_batch_throughput"] = ours32["output_throughput"] / hf32["output_throughput"]
    print(f"{'':34} {'out tok/s':>10} {'TTFT ms':>9}")
    print(f"{'ours, 1 at a time (HTTP)':34} {ours1['output_throughput']:10.1f} {ours1['ttft_s']['median']*1e3:9.1f}")
    print(f"{'transformers, 1 at a time':34} {hf1['output_throughput']:10.1f} {hf1['ttft_median_s']*1e3:9.1f}")
    print(f"{'ours, 32 concurrent (HTTP)':34} {ours32['output_throughput']:10.1f} {ours32['ttft_s']['median']*1e3:9.1f}"
          f"  streams intact: {intact(ours32, args)}")
    print(f"{'transformers, static batch of 32':34} {hf32['output_throughput']:10.1f} {'-':>9}")
    if llama1 is not None:
        print(f"{'llama.cpp server, 1 at a time':34} {llama1['output_throughput']:10.1f} {llama1['ttft_s']['median']*1e3:9.1f}")
        print(f"{'llama.cpp server, 32 concurrent':34} {llama32['output_throughput']:10.1f} {llama32['ttft_s']['median']*1e3:9.1f}"
              f"  streams intact: {intact(llama32, args)}")
        print(f"ratios ours/llama.cpp: single-stream {result['ratio_single_stream_vs_llama_cpp']:.2f}x, "
              f"32 concurrent {result['ratio_32_concurrent_vs_llama_cpp']:.2f}x")
    print(f"ratios ours/transformers: single-stream {result['ratio_single_stream_throughput']:.2f}x "
          f"(TTFT {result['ratio_single_stream_ttft']:.2f}x); ours 32 concurrent vs transformers "
          f"one at a time {result['ratio_32_vs_single_stream_throughput']:.2f}x, "
          f"vs its static batch {result['ratio_32_vs_static_batch_throughput']:.2f}x")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"serve_{args.device}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
