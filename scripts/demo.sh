#!/usr/bin/env bash
# Builds and runs the main demo, examples/recall: a memory meta-trained to memorize in context,
# four ways side by side (docs/tutorial-recall.md), then draws its pictures. Writes
# build/demo/recall/{summary.json,curves.json,training_loss.png,recall.png}.
#
#   scripts/demo.sh [recall|char_lm|seed_problem] [arguments of the demo...]
#
# The first argument may name another demo: char_lm (learning at test time on the KJV text,
# docs/tutorial-char-lm.md, about 2 minutes) or seed_problem (the question mnemo started from,
# docs/getting-started.md). See scripts/common.sh for the environment variables.
set -euo pipefail
DEMO=recall
case "${1:-}" in
    recall|char_lm|seed_problem) DEMO="$1"; shift ;;
esac
# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_packages
configure
log "building $DEMO"
cmake --build "$BUILD_DIR" -j "$JOBS" --target "$DEMO"
case "$DEMO" in
    recall|char_lm)
        out="$BUILD_DIR/demo/$DEMO"
        log "running $BUILD_DIR/examples/$DEMO"
        "$BUILD_DIR/examples/$DEMO" --out "$out" "$@"
        log "drawing the pictures"
        /usr/bin/python3 "examples/$DEMO/plot.py" "$out"
        ;;
    *)
        log "running $BUILD_DIR/examples/$DEMO"
        "$BUILD_DIR/examples/$DEMO" "$@"
        ;;
esac
