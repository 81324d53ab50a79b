#!/usr/bin/env bash
# Builds and runs the main demo (an example program). Arguments are passed on to the demo.
# See scripts/common.sh for the environment variables.
set -euo pipefail
DEMO=seed_problem
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_packages
configure
log "building $DEMO"
cmake --build "$BUILD_DIR" -j "$JOBS" --target "$DEMO"
log "running $BUILD_DIR/examples/$DEMO"
"$BUILD_DIR/examples/$DEMO" "$@"
