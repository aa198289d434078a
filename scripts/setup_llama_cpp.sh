#!/usr/bin/env bash
# Installs llama.cpp's server (`llama-cpp-python[server]`) into .venv/: the
# peer of scripts/bench_serve_hf.py and the source of
# tests/fixtures/llama_cpp_greedy.json (scripts/llama_cpp_greedy.py).
# Not part of setup.sh: it compiles llama.cpp (~10 min on 2 cores) and
# neither CI nor the tests need it.
#
# GGML_NATIVE=OFF with AVX2 on: the default native build crashed on this
# machine class (issue 15); AVX2 is what every x86 machine here has.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
VERSION=0.3.36
if .venv/bin/python -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$VERSION')" 2>/dev/null; then
  echo "setup_llama_cpp: llama-cpp-python $VERSION already installed"
  exit 0
fi
CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
  .venv/bin/python -m pip --disable-pip-version-check -q install "llama-cpp-python[server]==$VERSION"
echo "setup_llama_cpp: llama-cpp-python $VERSION ready"
