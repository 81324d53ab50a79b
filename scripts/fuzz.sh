#!/usr/bin/env bash
# A longer local fuzz campaign: the fuzz tests (the CTest label `fuzz`: random expressions whose
# first and second derivatives, and random memories whose meta-gradients, are checked against
# finite differences) with other seeds than CI's, in their own build directory.
#
#   scripts/fuzz.sh [BASE [ROUNDS]]
#
# Round r (0 .. ROUNDS-1) configures build-fuzz/ with MNEMO_FUZZ_SEED = BASE + r * STRIDE, builds
# the fuzz units only and runs them. BASE defaults to 1000, ROUNDS to 3. Each round recompiles the
# fuzz units (their expressions and memories are types chosen at compile time from the seeds):
# a few minutes per round on 2 cores. A failure names the seed and the expression or memory; it
# is reproduced by configuring with that round's MNEMO_FUZZ_SEED.
#
# Environment: BUILD_DIR (default build-fuzz), JOBS (default 2), STRIDE (default 100: the seeds
# one round checks; the units use fewer than 100 consecutive seeds), CMAKE_ARGS as for
# scripts/test.sh (scripts/common.sh).
set -euo pipefail
BUILD_DIR="${BUILD_DIR:-build-fuzz}"
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

base="${1:-1000}"
rounds="${2:-3}"
stride="${STRIDE:-100}"
[[ "$base" =~ ^[0-9]+$ ]] || die "BASE must be a non-negative integer, not '$base' (usage: scripts/fuzz.sh [BASE [ROUNDS]])"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$rounds'"
[[ "$stride" =~ ^[1-9][0-9]*$ ]] || die "STRIDE must be a positive integer, not '$stride'"

# The fuzz units, by file stem (tests/CMakeLists.txt names a unit test after its file).
units=()
for source in tests/*/test_fuzz_*.cpp; do
    units+=("$(basename "$source" .cpp)")
done
((${#units[@]} > 0)) || die "no fuzz units (tests/*/test_fuzz_*.cpp)"
subset="$(IFS=';'; echo "${units[*]}")"

ensure_packages
failed=()
for ((r = 0; r < rounds; ++r)); do
    seed=$((base + r * stride))
    configure "-DMNEMO_FUZZ_SEED=$seed" "-DMNEMO_TEST_SUBSET=$subset" \
        -DMNEMO_BUILD_EXAMPLES=OFF -DMNEMO_BUILD_BENCH=OFF -DMNEMO_INSTALL=OFF
    log "round $((r + 1)) of $rounds: building the fuzz units with MNEMO_FUZZ_SEED=$seed"
    cmake --build "$BUILD_DIR" -j "$JOBS" --target "${units[@]}"
    log "round $((r + 1)) of $rounds: running the fuzz units with MNEMO_FUZZ_SEED=$seed"
    output="$BUILD_DIR/fuzz-$seed.log"
    if ctest --test-dir "$BUILD_DIR" -L fuzz -j "$JOBS" -V >"$output" 2>&1; then
        status=passed
    else
        status=FAILED
        failed+=("$seed")
    fi
    # The units' summaries (doctest MESSAGE): counts and worst errors.
    grep -E "MESSAGE: fuzzed" "$output" | sed -E 's/^[0-9]+: //; s/^[^ ]*: MESSAGE: //' || true
    log "round $((r + 1)) of $rounds (MNEMO_FUZZ_SEED=$seed): $status; the whole output is in $output"
done
if ((${#failed[@]} > 0)); then
    die "fuzz tests failed with MNEMO_FUZZ_SEED = ${failed[*]} (each failure names its seed and expression or memory; rerun one round with scripts/fuzz.sh <MNEMO_FUZZ_SEED> 1)"
fi
log "fuzz tests passed: $rounds round(s), MNEMO_FUZZ_SEED = $base + r * $stride"
