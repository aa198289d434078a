# Sourced by the other scripts: puts .venv first on PATH so torch-sys builds
# against the pinned torch (LIBTORCH_USE_PYTORCH=1, see .cargo/config.toml).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$ROOT/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
