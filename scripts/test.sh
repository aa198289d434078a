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
# The gateway-only build (no libtorch) lints on its own.
cargo clippy -p engine --all-targets --no-default-features -- -D warnings

# One build configuration for tests and binaries: the NCCL communicator
# (feature `nccl`; libnccl from the torch wheel is loaded at run time, GPU
# tests skip) is a superset of the default build, which clippy above
# already checked. A second feature set would compile the workers, the
# engine and every crate above them twice.
FEATURES=(--features workers/nccl,engine/nccl)

echo "== cargo test"
cargo test --workspace "${FEATURES[@]}"

# The end-to-end tests run target/debug/{engine,worker}: `cargo test`
# built them for the engine's and the workers' integration tests, with the
# test build's features. A separate `cargo build --bins` would resolve
# features without the dev-dependencies and compile the engine again.
for bin in engine worker; do
  [[ -x "target/debug/$bin" ]] || { echo "target/debug/$bin missing after cargo test" >&2; exit 1; }
done

# The gateway-only build (no libtorch): the engine crate without its default
# `local` feature. Its own tests run, and its binary is kept as
# target/debug/engine-gateway for the provider suite in pytest. The build
# writes target/debug/engine too, so the full binary is put back after.
echo "== cargo test, gateway-only build (engine --no-default-features)"
cp -p target/debug/engine target/debug/engine-full
cargo test -p engine --no-default-features
cp -p target/debug/engine target/debug/engine-gateway
mv target/debug/engine-full target/debug/engine

echo "== pytest"
if compgen -G "tests/python/test_*.py" >/dev/null; then
  python -m pytest -q tests/python
else
  echo "no Python tests yet"
fi
