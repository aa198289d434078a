#!/usr/bin/env bash
# Sets up, builds (release) and runs the engine binary with the given
# arguments, e.g. `bash scripts/engine.sh serve --model smollm2`. Builds the
# `worker` binary too: `engine serve` runs the model in worker processes.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh >&2
cargo build --release -q -p engine -p workers --bins >&2
exec "$ROOT/target/release/engine" "$@"
