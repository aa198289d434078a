#!/usr/bin/env bash
# Sets up, builds (release) and runs the engine binary with the given
# arguments, e.g. `bash scripts/engine.sh generate --model smollm2 --prompt Hi`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$ROOT"
bash scripts/setup.sh >&2
cargo build --release -q -p engine >&2
exec "$ROOT/target/release/engine" "$@"
