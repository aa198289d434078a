#!/usr/bin/env python3
"""Serving benchmark in the spirit of `vllm bench serve`.

Sends N requests to any OpenAI-compatible server (ours, vLLM, a peer) with
prompt and output lengths drawn from a seed, at a request rate (Poisson) or
a fixed concurrency, streaming each response. Reports request throughput,
output tokens/s, TTFT, TPOT and ITL (mean, median, p99) and writes JSON.

  python scripts/bench_serve.py --base-url http://127.0.0.1:8000 --model smollm2 \
      --num-prompts 64 --concurrency 8 --input-len 128 --output-len 64 \
      --result bench/results/serve_cpu.json

Output lengths are enforced with max_tokens plus vLLM's `ignore_eos`
(servers that do not know it ignore it, and may stop early: the report
counts the tokens that actually came, from the usage chunk).
"""
import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import httpx

WORDS = ("the of and to in is was for on that with as by at from his her an "
         "were which are this be has had not but have one all been their new "
         "more who will would can said about there time some into other than "
         "then only over its also after first two most made years may may "
         "system model token engine river mountain city ocean garden music").split()


def make_prompt(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def pct(values, q):
    if not values:
        return 0.0
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(q / 100 * (len(values) - 1)))))
    return values[k]


def summary(values):
    return {"mean": statistics.fmean(values) if values else 0.0,
            "median": statistics.median(values) if values else 0.0,
            "p99": pct(values, 99)}


async def one_request(client, args, prompt, max_tokens):
    body = {"model": args.model, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": 0.0, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}, **getattr(args, "extra_body", {})}
    start = time.perf_counter()
    ttft, last, itl, tokens, chunks, error = None, start, [], 0, 0, None
    try:
        async with client.stream("POST", f"{args.base_url}/v1/completions", json=body) as resp:
            if resp.status_code != 200:
                return {"error": f"HTTP {resp.status_code}: {(await resp.aread())[:200]!r}"}
            async for line in resp.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    break
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                if chunk.get("choices") and chunk["choices"][0].get("text"):
                    chunks += 1
                    now = time.perf_counter()
                    if ttft is None:
                        ttft = now - start
                    else:
                        itl.append(now - last)
                    last = now
    except httpx.HTTPError as e:
        error = str(e)
    latency = time.perf_counter() - start
    if error is not None:
        return {"error": str(error)}
    # A server that reports no usage (llama.cpp's) streams one token per
    # chunk: count those.
    return {"ttft": ttft or latency, "latency": latency, "itl": itl,
            "output_tokens": tokens or chunks}


def make_requests(rng: random.Random, n: int, input_len: int, output_len: int,
                  range_ratio: float) -> list:
    """`n` (prompt, max_tokens) pairs drawn from `rng`: the prompt is
    `input_len` words (not tokens), both lengths varied by `range_ratio`.
    bench_serve_hf.py takes its prompts from here too, so that ours and
    transformers are given the same text."""
    requests = []
    for _ in range(n):
        words = max(1, int(input_len * rng.uniform(1 - range_ratio, 1 + range_ratio)))
        out = max(1, int(output_len * rng.uniform(1 - range_ratio, 1 + range_ratio)))
        requests.append((make_prompt(rng, words), out))
    return requests


async def run(args, requests=None):
    """Sends `requests` ((prompt, max_tokens) pairs; by default
    `args.num_prompts` of them drawn from `args.seed`) and reports."""
    rng = random.Random(args.seed)
    if requests is None:
        requests = make_requests(rng, args.num_prompts, args.input_len, args.output_len,
                                 args.range_ratio)
    limits = httpx.Limits(max_connections=max(args.concurrency, 1) + 4)
    sem = asyncio.Semaphore(args.concurrency if args.concurrency > 0 else len(requests))
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        async def bounded(prompt, n):
            async with sem:
                return await one_request(client, args, prompt, n)
        start = time.perf_counter()
        tasks = []
        for prompt, n in requests:
            tasks.append(asyncio.create_task(bounded(prompt, n)))
            if args.request_rate != float("inf"):
                await asyncio.sleep(rng.expovariate(args.request_rate))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    ok = [r for r in results if "error" not in r]
    errors = [r["error"] for r in results if "error" in r]
    out_tokens = sum(r["output_tokens"] for r in ok)
    tpot = [(r["latency"] - r["ttft"]) / (r["output_tokens"] - 1) for r in ok if r["output_tokens"] > 1]
    itl = [x for r in ok for x in r["itl"]]
    report = {
        "base_url": args.base_url, "model": args.model, "num_prompts": len(requests),
        "concurrency": args.concurrency, "request_rate": args.request_rate,
        "input_words": args.input_len, "output_len": args.output_len, "seed": args.seed,
        "completed": len(ok), "failed": len(errors), "errors": errors[:5],
        "duration_s": duration,
        "request_throughput": len(ok) / duration,
        "output_throughput": out_tokens / duration,
        "total_output_tokens": out_tokens,
        "ttft_s": summary([r["ttft"] for r in ok]),
        "tpot_s": summary(tpot),
        "itl_s": summary(itl),
    }
    return report


def print_report(r):
    print(f"completed {r['completed']}/{r['num_prompts']} in {r['duration_s']:.2f} s "
          f"(failed {r['failed']})")
    print(f"request throughput {r['request_throughput']:.2f} req/s, "
          f"output {r['output_throughput']:.1f} tok/s")
    print(f"{'ms':8} {'mean':>9} {'median':>9} {'p99':>9}")
    for k in ("ttft_s", "tpot_s", "itl_s"):
        s = r[k]
        print(f"{k[:-2].upper():8} {s['mean']*1e3:9.1f} {s['median']*1e3:9.1f} {s['p99']*1e3:9.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=8, help="0: unbounded")
    ap.add_argument("--request-rate", type=float, default=float("inf"))
    ap.add_argument("--input-len", type=int, default=64, help="prompt length in words")
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--range-ratio", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", default=None, help="write the JSON report here")
    args = ap.parse_args()
    report = asyncio.run(run(args))
    print_report(report)
    if args.result:
        Path(args.result).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
