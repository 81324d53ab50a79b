# shellcheck shell=bash
# Shared set-up for scripts/test.sh and scripts/demo.sh; meant to be sourced, not run.
#
# Environment:
#   BUILD_DIR   build directory, relative to the repository root (default: build)
#   JOBS        parallel build and test jobs (default: 2)
#   CXX         C++ compiler; a build directory stays bound to the compiler it was configured
#               with, so use another BUILD_DIR per compiler (e.g. CXX=clang++ BUILD_DIR=build-clang)
#   CMAKE_ARGS  extra arguments for the CMake configure step (split on whitespace)
#   SANITIZE    1: scripts/test.sh builds and runs the sanitizer subset instead (as --sanitize)
#   ASAN_BUILD_DIR, TSAN_BUILD_DIR
#               the build directories of scripts/test.sh --sanitize (default: build-asan and
#               build-tsan; with another CXX, name others, e.g. build-clang-asan)

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 1

BUILD_DIR="${BUILD_DIR:-build}"
JOBS="${JOBS:-2}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the Debian packages needed to build and test mnemo (as root), or prints the command
# to do so and fails (as any other user).
ensure_packages() {
    # python3 runs the documentation snippet check (tests/docs/check_snippets.py); libzip-dev
    # writes checkpoints (.npz), which a test reads back with python3-numpy; python3-matplotlib
    # draws the demos' pictures; bible-kjv (with bible-kjv-text) prints the text of the
    # char_lm demo and its test; the demos parse their arguments with cxxopts and write JSON
    # with nlohmann-json. The PyTorch package (python/mnemo_torch) compiles its extensions against
    # Debian's torch (python3-torch, libtorch-dev) with pybind11 and ninja (ninja-build), and
    # its tests run with python3-pytest.
    local packages=(libboost-dev xtensor-dev libxtensor-blas-dev libxsimd-dev doctest-dev
                    libopenblas-dev cmake g++ make python3 libzip-dev python3-numpy
                    python3-matplotlib bible-kjv bible-kjv-text libcxxopts-dev nlohmann-json3-dev
                    python3-torch libtorch-dev pybind11-dev python3-pybind11 ninja-build python3-pytest)
    if [[ "${CXX:-}" == *clang* ]]; then
        packages+=(clang)
    fi
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log "dpkg not found: not a Debian-based system, skipping the package check"
        return 0
    fi
    local missing=() pkg status
    for pkg in "${packages[@]}"; do
        # Like `dpkg -s`, but a removed package whose config files remain counts as missing.
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        if [[ "$status" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ "$(id -u)" -eq 0 ]]; then
        log "installing missing packages: ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        printf 'error: missing packages: %s\n' "${missing[*]}" >&2
        printf 'install them with:\n  sudo apt-get update && sudo apt-get install -y %s\n' \
            "${missing[*]}" >&2
        exit 1
    fi
}

# Configures "$BUILD_DIR" (Release). Refuses to reuse a build directory that was configured with a
# different compiler than the one named by $CXX, since CMake cannot switch compilers in place.
# Arguments, if any, are CMake arguments that come after -DCMAKE_BUILD_TYPE=Release (so they can
# replace it) and before $CMAKE_ARGS.
configure() {
    local args=(-S "$REPO_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release)
    if [[ -n "${CXX:-}" ]]; then
        local compiler
        compiler="$(command -v "$CXX")" || die "compiler CXX=$CXX not found"
        local cache="$BUILD_DIR/CMakeCache.txt" cached=""
        if [[ -f "$cache" ]]; then
            cached="$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$cache")"
        fi
        if [[ -z "$cached" ]]; then
            args+=("-DCMAKE_CXX_COMPILER=$compiler")
        elif [[ "$(readlink -f "$cached")" != "$(readlink -f "$compiler")" ]]; then
            die "$BUILD_DIR was configured with $cached, not $compiler (CXX=$CXX);
use another build directory (e.g. BUILD_DIR=build-clang) or delete $BUILD_DIR"
        fi
        # Otherwise the same compiler is already cached (maybe under another name, e.g. c++ for
        # g++); passing it again under a different path would make CMake wipe the cache.
    fi
    local extra=()
    if [[ -n "${CMAKE_ARGS:-}" ]]; then
        read -r -a extra <<<"$CMAKE_ARGS"
    fi
    log "configuring $BUILD_DIR"
    cmake "${args[@]}" "$@" "${extra[@]}"
}
