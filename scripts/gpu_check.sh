#!/usr/bin/env bash
# The GPU checks, run on a lent GPU machine from the repository root, over
# what scripts/gpu_stage.sh put under .gpu/ here: the model parity tests on
# CUDA in f32 and bf16 (tiny random Llama against its transformers logits;
# SmolLM2 against transformers' logits and greedy tokens), the NCCL
# communicator (its test binary on cuda:0: one-rank collectives, SmolLM2
# through a one-rank NCCL group in f32 and bf16; then `engine serve --tp 1
# --tp-communicator nccl` greedy against the default, scripts/
# check_serve_nccl.py; with two or more GPUs visible, the two-rank NCCL
# collectives, rank r on cuda:r), then the decode and serving benchmarks in bf16
# against transformers on the same GPU. Prints a table and writes
# gpu_check.json (with decode_cuda.json, serve_cuda.json, nccl_serve.json
# and the full log) to $OUT, else bench/results/gpu/.
#
# GPU_CHECK_STEPS (default "parity nccl decode serve structured") picks
# what runs (structured: scripts/bench_structured.py in bf16).
#
# Carry .gpu/payload.tar.xz and one SmolLM2 half per call; a second call
# on the warm machine finds the first half still there.
#
# Uses the machine's own python3 with torch 2.11 (the binaries were linked
# against the same torch release here; LD_LIBRARY_PATH points them at its
# libraries). Steps that need SmolLM2 are skipped when .gpu/model-a or
# .gpu/model-b is missing (see gpu_stage.sh for why it travels in halves).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
mkdir -p "$out"
log="$out/gpu_check.log"
: >"$log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
py=${PYTHON:-python3}

tar -C .gpu -xJf .gpu/payload.tar.xz || { echo "no .gpu/payload.tar.xz: run scripts/gpu_stage.sh"; exit 2; }
ls -la .gpu | tee -a "$log"
torch_lib=$($py -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ENGINE_FIXTURES=$PWD/.gpu/fixtures
export ENGINE_WORKER_BIN=$PWD/.gpu/bin/worker
export PYTHONUNBUFFERED=1
$py -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-site .gpu/whl/*.whl \
    && export PYTHONPATH=/tmp/gpu-site${PYTHONPATH:+:$PYTHONPATH}

have_model=0
if [[ -f .gpu/model-a && -f .gpu/model-b ]]; then
    cat .gpu/model-a .gpu/model-b >/tmp/smollm2.gguf
    if [[ $(sha256sum /tmp/smollm2.gguf | cut -d' ' -f1) == $(cat .gpu/bin/model.sha256) ]]; then
        export ENGINE_SMOLLM2_GGUF=/tmp/smollm2.gguf
        have_model=1
    else
        echo "SmolLM2 halves do not join to the staged file (checksum differs)" | tee -a "$log"
    fi
fi

steps=()
wanted=" ${GPU_CHECK_STEPS:-parity nccl decode serve structured} "
# step NAME SECONDS CMD...: runs CMD under a time limit, appends its output
# to the log, and records NAME, exit status and seconds for the summary.
step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*" >>"$log"
    local start=$SECONDS
    timeout "$limit" "$@" >>"$log" 2>&1
    local rc=$?
    steps+=("$name $rc $((SECONDS - start))")
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
}
# skip NAME [WHY]: records NAME as skipped.
skip() { steps+=("$1 skipped 0"); echo "=== $1: skipped (${2:-no SmolLM2 GGUF})" | tee -a "$log"; }
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')

for dtype in f32 bf16; do
    [[ $wanted == *" parity "* ]] || break
    step "model_parity_$dtype" 300 env ENGINE_TEST_DEVICE=cuda ENGINE_TEST_DTYPE=$dtype \
        .gpu/bin/model_parity --nocapture --test-threads=1
    if ((have_model)); then
        step "smollm2_parity_$dtype" 300 env ENGINE_TEST_DEVICE=cuda ENGINE_TEST_DTYPE=$dtype \
            .gpu/bin/smollm2_parity --nocapture
    else
        skip "smollm2_parity_$dtype"
    fi
done
if [[ $wanted == *" nccl "* ]]; then
    if [[ ! -x .gpu/bin/nccl ]]; then
        steps+=("nccl_f32 127 0"); echo "=== nccl: no .gpu/bin/nccl (stage with gpu_stage.sh)" | tee -a "$log"
    elif ((have_model)); then
        step nccl_f32 300 env ENGINE_TEST_DEVICE=cuda ENGINE_TEST_DTYPE=f32 \
            .gpu/bin/nccl --nocapture --test-threads=1
        step nccl_smollm2_bf16 300 env ENGINE_TEST_DEVICE=cuda ENGINE_TEST_DTYPE=bf16 \
            .gpu/bin/nccl --nocapture --test-threads=1 smollm2
        step nccl_serve_f32 300 $py scripts/check_serve_nccl.py --binary .gpu/bin/engine \
            --dtype float32 --out "$out/nccl_serve.json"
        cp /tmp/nccl-serve-*.log "$out/" 2>/dev/null
    else
        # The collectives need no model.
        step nccl_f32 300 env ENGINE_TEST_DEVICE=cuda ENGINE_TEST_DTYPE=f32 \
            .gpu/bin/nccl --nocapture --test-threads=1 --skip smollm2
        skip nccl_smollm2_bf16
        skip nccl_serve_f32
    fi
    # NCCL refuses two ranks on one GPU: multi-rank NCCL needs two.
    if [[ ! -x .gpu/bin/nccl ]]; then
        :
    elif ((gpus >= 2)); then
        step nccl_two_ranks 300 .gpu/bin/nccl --nocapture --exact two_rank_collectives_on_two_gpus
    else
        skip nccl_two_ranks "$gpus GPU(s) visible; two-rank NCCL needs two"
    fi
fi
if ((have_model)) && [[ $wanted == *" decode "* ]]; then
    step decode_bf16 300 $py scripts/bench_decode.py --device cuda --dtype bf16 \
        --binary .gpu/bin/engine --out "$out/decode_cuda.json"
fi
if ((have_model)) && [[ $wanted == *" serve "* ]]; then
    step serve_bf16 420 $py scripts/bench_serve_hf.py --device cuda --dtype bf16 \
        --binary .gpu/bin/engine --out "$out/serve_cuda.json"
    cp /tmp/bench-serve-*.log "$out/serve_server.log" 2>/dev/null
fi
# Structured outputs' cost where the bitmasks overlap the forward pass.
if ((have_model)) && [[ $wanted == *" structured "* ]]; then
    step structured_bf16 300 $py scripts/bench_structured.py --device cuda --dtype bf16 \
        --binary .gpu/bin/engine --out "$out/structured_cuda.json"
fi
((have_model)) || { skip decode_bf16; skip serve_bf16; skip structured_bf16; }

$py - "$out" "$log" "${steps[@]}" <<'PY'
import json, re, sys
from pathlib import Path
out, log, rows = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), sys.argv[3:]
gpu = log.splitlines()[0] if log else "?"
result = {"device": gpu, "steps": {}}
for row in rows:
    name, rc, secs = row.split()
    result["steps"][name] = {"status": "skipped" if rc == "skipped" else ("pass" if rc == "0" else f"fail (exit {rc})"),
                             "seconds": int(secs)}
result["smollm2_parity_lines"] = re.findall(r"smollm2 parity: .*", log)
result["nccl_lines"] = re.findall(r"(?:NCCL \d+\.\d+\.\d+ from .*|smollm2 nccl parity .*|nccl serve: .*"
                                  r"|two_rank_collectives_on_two_gpus: .*)", log)
for name in ("decode_cuda", "serve_cuda", "nccl_serve", "structured_cuda"):
    p = out / f"{name}.json"
    if p.exists():
        result[name] = json.loads(p.read_text())
(out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
print(f"\nGPU: {gpu}")
print(f"{'step':26} {'status':16} {'s':>5}")
for name, s in result["steps"].items():
    print(f"{name:26} {s['status']:16} {s['seconds']:5}")
for line in result["smollm2_parity_lines"] + result["nccl_lines"]:
    print(line)
if "decode_cuda" in result:
    d = result["decode_cuda"]
    print(f"decode bf16: ours {d['ours']['decode_tokens_per_sec']:.1f} tok/s, transformers "
          f"{d['transformers']['decode_tokens_per_sec']:.1f} tok/s ({d['ratio_decode_tps']:.2f}x); "
          f"TTFT {d['ours']['ttft_secs']*1e3:.1f} vs {d['transformers']['ttft_secs']*1e3:.1f} ms")
if "serve_cuda" in result:
    s = result["serve_cuda"]
    print(f"serve bf16 out tok/s: ours 1 at a time {s['ours_single_stream']['output_throughput']:.1f}, "
          f"32 concurrent {s['ours_32_concurrent']['output_throughput']:.1f}; transformers 1 at a time "
          f"{s['transformers_single_stream']['output_throughput']:.1f}, static batch 32 "
          f"{s['transformers_static_batch_32']['output_throughput']:.1f}")
PY
