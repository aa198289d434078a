#!/usr/bin/env bash
# Fuzzes every target in fuzz/ with cargo-fuzz (libFuzzer), one target after
# another for SECONDS each (default 120), growing fuzz/corpus/<target>/ and
# minimizing it afterwards (`cargo fuzz cmin`). Prints executions, execs/s
# and findings per target and writes them to bench/results/fuzz.json.
#
#   scripts/fuzz.sh [SECONDS]              # all targets
#   FUZZ_TARGETS="gguf chat_template" scripts/fuzz.sh 60
#   FUZZ_SANITIZER=none scripts/fuzz.sh    # no AddressSanitizer
#   FUZZ_CMIN=0 scripts/fuzz.sh            # keep the corpus as it grew
#   FUZZ_JSON=bench/results/fuzz_x.json    # write the results there (two
#                                          # runs side by side, one file each)
#   FUZZ_NO_TORCH=1 scripts/fuzz.sh        # skip the one target that links
#                                          # libtorch (safetensors): a much
#                                          # shorter build
#
# Toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer,
# sanitizer-coverage passes). Nothing here downloads a nightly: the pinned
# stable toolchain of rust-toolchain.toml runs them with RUSTC_BOOTSTRAP=1,
# which makes rustc accept unstable flags. That is set for this script's
# commands only, never for the normal build. cargo-fuzz itself is installed
# (`cargo install cargo-fuzz --locked`, into ~/.cargo/bin) when missing.
#
# A finding (crash, timeout, out-of-memory) leaves its input in
# fuzz/artifacts/<target>/; fix it and copy the input into
# fuzz/corpus/<target>/regression-<what> (cmin leaves those alone) so
# CI's replay tests (the `fuzz_harness` modules of model_files, workers,
# engine and frontend) keep it fixed. Replay one input with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s address <target> <file>
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/env.sh
source scripts/env.sh

SECONDS_PER_TARGET=${1:-120}
SANITIZER=${FUZZ_SANITIZER:-address}
if [ "${FUZZ_NO_TORCH:-0}" = 1 ]; then
    FEATURES=(--no-default-features)
    ALL_TARGETS="gguf dequantize openai_request anthropic_request chat_template provider_stream litellm_config"
else
    FEATURES=()
    ALL_TARGETS="gguf dequantize safetensors openai_request anthropic_request chat_template provider_stream litellm_config"
fi
TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
RESULTS_JSON=${FUZZ_JSON:-bench/results/fuzz.json}
# The fuzz crate links libtorch (for the safetensors target); its binaries
# find it through the loader path.
TORCH_LIB=$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz into ~/.cargo/bin"
    cargo install cargo-fuzz --locked || exit 1
fi
echo "$(cargo fuzz --version), $(rustc --version) with RUSTC_BOOTSTRAP=1, sanitizer: $SANITIZER"

# One build for every target (they share the dependency tree).
cargo fuzz build -s "$SANITIZER" "${FEATURES[@]}" || exit 1

mkdir -p bench/results
LOGS=$(mktemp -d)
results=()
printf '%-18s %10s %12s %10s %9s\n' target seconds executions "execs/s" findings
for target in $TARGETS; do
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    log="$LOGS/$target.log"
    start=$(date +%s)
    # -timeout: an input running 10 s is a finding (a hang), as is one
    # allocating more than -rss_limit_mb (libFuzzer's default 2 GB).
    # -fork=1 with -ignore_*: keep fuzzing after a finding (each is saved
    # to artifacts/) so one bug does not hide the rest of the budget.
    cargo fuzz run -s "$SANITIZER" "${FEATURES[@]}" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -max_len=16384 \
        -print_final_stats=1 -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -artifact_prefix="fuzz/artifacts/$target/" >"$log" 2>&1
    status=$?
    elapsed=$(( $(date +%s) - start ))
    # Fork mode prints "#N ... exec/s: E" status lines; the last has the total.
    execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    execs=${execs:-0}
    rate=$(( execs / (elapsed > 0 ? elapsed : 1) ))
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    findings=$(( after - before ))
    printf '%-18s %10s %12s %10s %9s\n' "$target" "$elapsed" "$execs" "$rate" "$findings"
    if [ "$findings" -gt 0 ] || [ "$status" -ne 0 ]; then
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|deadly signal|Test unit written' "$log" | sort | uniq -c | head -20
        echo "  (exit $status; full log: $log)"
    fi
    results+=("{\"target\": \"$target\", \"seconds\": $elapsed, \"executions\": $execs, \"execs_per_s\": $rate, \"findings\": $findings, \"exit\": $status}")
    if [ "${FUZZ_CMIN:-1}" = 1 ]; then
        # cmin keeps only inputs that add coverage and renames them; the
        # `regression-*` inputs (past findings) stay as they are.
        keep="$LOGS/$target.regressions"
        mkdir -p "$keep"
        find "fuzz/corpus/$target" -name 'regression-*' -exec mv {} "$keep/" \;
        cargo fuzz cmin -s "$SANITIZER" "${FEATURES[@]}" "$target" "fuzz/corpus/$target" -- -max_len=16384 >"$LOGS/$target.cmin.log" 2>&1 \
            || echo "  cmin failed: $LOGS/$target.cmin.log"
        find "$keep" -type f -exec mv {} "fuzz/corpus/$target/" \;
    fi
done

{
    echo "{\"sanitizer\": \"$SANITIZER\", \"seconds_per_target\": $SECONDS_PER_TARGET,"
    echo " \"rustc\": \"$(rustc --version)\", \"cargo_fuzz\": \"$(cargo fuzz --version)\", \"targets\": ["
    (IFS=,; echo "  ${results[*]}")
    echo "]}"
} >"$RESULTS_JSON"
echo "wrote $RESULTS_JSON; corpus: $(du -sh fuzz/corpus | cut -f1)"
