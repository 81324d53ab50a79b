#!/usr/bin/env bash
# Installs the dependencies if needed, configures and builds everything (Release) and runs the
# whole CTest suite. Safe to re-run. See scripts/common.sh for the environment variables.
#
# scripts/test.sh --sanitize (or SANITIZE=1 scripts/test.sh) instead builds the sanitizer subset
# of the unit tests (the tests labelled `sanitize`, tests/CMakeLists.txt) with AddressSanitizer and
# UndefinedBehaviorSanitizer into build-asan/ and runs it, then test_threads with
# ThreadSanitizer in build-tsan/ (README.md, "Quick start"). The normal build is not touched.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

sanitize=0
case "${SANITIZE:-0}" in
    0 | "") ;;
    1) sanitize=1 ;;
    *) die "SANITIZE must be 0 or 1, not '$SANITIZE'" ;;
esac
for arg in "$@"; do
    case "$arg" in
        --sanitize) sanitize=1 ;;
        -h | --help)
            printf 'usage: scripts/test.sh [--sanitize]\n' >&2
            exit 0
            ;;
        *) die "unknown argument '$arg' (usage: scripts/test.sh [--sanitize])" ;;
    esac
done

# sanitized_build <build dir> <-fsanitize= list> <MNEMO_TEST_SUBSET>: configures, builds and runs
# the given unit tests with the given sanitizers. -O1 without debug information (the memories'
# types make -g too big, cmake/mnemoProjectOptions.cmake): the reports name functions, not lines.
sanitized_build() {
    BUILD_DIR="$1"
    configure -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O1 \
        "-DMNEMO_SANITIZE=$2" "-DMNEMO_TEST_SUBSET=$3" \
        -DMNEMO_BUILD_EXAMPLES=OFF -DMNEMO_BUILD_BENCH=OFF -DMNEMO_INSTALL=OFF
    log "building $BUILD_DIR (-fsanitize=$2)"
    cmake --build "$BUILD_DIR" -j "$JOBS"
    log "testing $BUILD_DIR (-fsanitize=$2)"
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 900
}

ensure_packages
if ((sanitize)); then
    sanitized_build "${ASAN_BUILD_DIR:-build-asan}" address,undefined sanitize
    sanitized_build "${TSAN_BUILD_DIR:-build-tsan}" thread test_threads
    exit 0
fi
configure
log "building $BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$JOBS"
log "testing $BUILD_DIR"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
