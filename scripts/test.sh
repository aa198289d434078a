#!/usr/bin/env bash
# Runs every test: setup, fixtures from transformers, lint, Rust tests,
# Python tests. CI calls this through .ci/run.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
# CI builds once from scratch: incremental caches would only take disk.
if [[ -n "${CI:-}" ]]; then
  export CARGO_INCREMENTAL=0
fi

bash scripts/setup.sh

# In CI the services are required: a test whose PostgreSQL, Redis or
# Chromium is missing fails instead of printing "skipped" (see
# scripts/require_services.sh, which starts the first two if it can).
if [[ -n "${CI:-}" || "${REQUIRE_SERVICES:-}" == 1 ]]; then
  echo "== services (required)"
  source scripts/require_services.sh
fi

echo "== fixtures (transformers / gguf-py reference outputs)"
for script in scripts/fixtures/*.py; do
  python "$script"
done

echo "== cargo fmt / clippy"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The NCCL communicator (feature `nccl`) compiles and lints without CUDA.
cargo clippy -p workers -p engine --all-targets --features workers/nccl,engine/nccl -- -D warnings

echo "== cargo test"
cargo test --workspace

echo "== cargo test, feature nccl (libnccl from the torch wheel loads; GPU tests skip)"
cargo test -p workers --features nccl --lib --test nccl
cargo test -p engine --features nccl --lib

echo "== binaries for the end-to-end tests (engine, worker)"
cargo build --workspace --bins

echo "== pytest"
if compgen -G "tests/python/test_*.py" >/dev/null; then
  python -m pytest -q tests/python
else
  echo "no Python tests yet"
fi
