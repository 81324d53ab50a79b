#!/usr/bin/env bash
# Installs the dependencies if needed, configures and builds everything (Release) and runs the
# whole CTest suite. Safe to re-run. See scripts/common.sh for the environment variables.
set -euo pipefail
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_packages
configure
log "building $BUILD_DIR"
cmake --build "$BUILD_DIR" -j "$JOBS"
log "testing $BUILD_DIR"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS"
