#!/usr/bin/env bash
# Runs mnemo_bench and both PyTorch peers on every benchmark configuration and writes
# docs/benchmarks.md (raw JSON lines: build/bench/benchmarks.jsonl). The peers:
# - the naive peer (bench/torch_peer.py: PyTorch as its users write it first, the inner
#   gradient by autograd with create_graph), twice per configuration: side "torch" with glibc's
#   default malloc settings (--default-malloc; the verdict of the targets against this peer is
#   judged against it) and side "torch-tuned" with the malloc tunables torch_peer.py sets by
#   default (GLIBC_TUNABLES, no per-step page faults); for mlpchunk64, which torch_peer.py does
#   not have, torch_skilled.py --variant naive;
# - the skilled peer (bench/torch_skilled.py: closed-form inner gradients, the WY solve, the
#   dual form), side "skilled": its fastest variant per configuration (--variant best in the
#   first round picks it; the later rounds run that variant).
# The skilled peer and mnemo, whose ratio the targets of the skilled peer judge, run in ROUNDS
# interleaved rounds (this machine is shared: one run can land in a slow minute); the report
# takes, per side and configuration, the round with the median time. The naive peer runs once.
# Never two runs concurrently.
#
#   bench/compare.sh
#   CONFIGS='seq64 batch64' SECONDS_PER_CONFIG=1 ROUNDS=1 bench/compare.sh
#
# Environment:
#   CONFIGS              configurations to run (default: seed seq64 batch64 mlp64 chunk64 big256
#                        mlpchunk64); batch64, chunk64 and big256 also run with 2 threads on
#                        mnemo and the skilled peer (batch64 on the naive peer as well)
#   SECONDS_PER_CONFIG   seconds of timed steps per run (default 3; at least 3 steps are timed
#                        after one warm-up step; the naive peer times exactly 3 steps of big256,
#                        whose first step with the default malloc takes tens of seconds)
#   ROUNDS               interleaved rounds of mnemo and the skilled peer (default 3)
#   BUILD_DIR            mnemo's build directory (default build); mnemo_bench is built there if
#                        missing
#   REPORT               output markdown (default docs/benchmarks.md); the raw JSON lines go to
#                        $BUILD_DIR/bench/<report name>.jsonl
#   OPENBLAS_PINNED      1: keep OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE where the environment
#                        sets them (see below); default: unset both for both sides
#
# PyTorch is Debian's python3-torch, installed for /usr/bin/python3 (installed here if missing):
# always that interpreter, another python3 earlier on the PATH may not see it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=/usr/bin/python3
BUILD_DIR=${BUILD_DIR:-build}
SECONDS_PER_CONFIG=${SECONDS_PER_CONFIG:-3}
CONFIGS=${CONFIGS:-"seed seq64 batch64 mlp64 chunk64 big256 mlpchunk64"}
ROUNDS=${ROUNDS:-3}
REPORT=${REPORT:-docs/benchmarks.md}
BENCH="$BUILD_DIR/bench/mnemo_bench"
OUT_DIR="$BUILD_DIR/bench"
JSONL="$OUT_DIR/$(basename "$REPORT" .md).jsonl"

log() { printf '[compare] %s\n' "$*" >&2; }

for c in $CONFIGS; do
    case "$c" in
        seed | seq64 | batch64 | mlp64 | chunk64 | big256 | mlpchunk64) ;;
        *) log "unknown configuration '$c' (seed seq64 batch64 mlp64 chunk64 big256 mlpchunk64)"; exit 2 ;;
    esac
done

# PyTorch.
if ! "$PY" -c 'import torch' 2>/dev/null; then
    log "installing Debian's python3-torch"
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        log "python3-torch is missing and this is not root (no sudo): apt-get install python3-torch"
        exit 1
    fi
    "${SUDO[@]}" apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch
fi
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')

# mnemo_bench.
if [ ! -x "$BENCH" ]; then
    log "building mnemo_bench in $BUILD_DIR"
    cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release
    cmake --build "$BUILD_DIR" --target mnemo_bench
fi
mkdir -p "$OUT_DIR" "$(dirname "$REPORT")"
: >"$JSONL"

# OpenBLAS's kernels. A machine may pin them with OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE),
# where older OpenBLAS builds misbehave on its processor; the tests and CI keep the pin. A
# benchmark measures what the processor can do, so by default both variables are unset for
# both sides and the sgemm reference, in this script alone, and OpenBLAS picks the kernels of
# the processor (they compute correctly there: torch_peer.py --check below compares the peer
# and mnemo's reference problems). OPENBLAS_PINNED=1 keeps the pin, for both sides. The
# report names the kernels that ran.
openblas_core() {
    OPENBLAS_VERBOSE=2 "$BENCH" --config sgemm256 --runs 1 --seconds 0.05 2>&1 | sed -n 's/^Core: //p' | head -n 1
}
if [ "${OPENBLAS_PINNED:-0}" = 1 ] && [ -z "${OPENBLAS_CORETYPE:-}" ]; then
    echo "compare: OPENBLAS_PINNED=1, but the environment pins no kernels (OPENBLAS_CORETYPE is unset);" \
         "to pin them: OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512 OPENBLAS_PINNED=1 $0" >&2
    exit 2
fi
if [ "${OPENBLAS_PINNED:-0}" = 1 ] && [ -n "${OPENBLAS_CORETYPE:-}" ]; then
    CORE_NOTE="pinned by the environment for both sides (OPENBLAS_PINNED=1): OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE${OPENBLAS_L2_SIZE:+, OPENBLAS_L2_SIZE=$OPENBLAS_L2_SIZE}"
elif [ -n "${OPENBLAS_CORETYPE:-}${OPENBLAS_L2_SIZE:-}" ]; then
    CORE_NOTE="OpenBLAS's own choice for this processor (the environment's OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-} and OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-} unset for both sides)"
    unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
else
    CORE_NOTE="OpenBLAS's own choice for this processor"
fi
export MNEMO_OPENBLAS_CORE="$(openblas_core || true) ($CORE_NOTE)"
log "OpenBLAS kernels: $MNEMO_OPENBLAS_CORE"

"$PY" bench/make_report.py machine "$TORCH_VERSION" >>"$JSONL"

# Correctness of the peer (float64, small sizes, about 2 s); against mnemo's reference_problems
# example when it is built.
log "torch_peer.py --check"
if check_out=$(BUILD_DIR="$BUILD_DIR" "$PY" bench/torch_peer.py --check 2>&1); then
    check_result=passed
else
    check_result=FAILED
    log "torch_peer.py --check failed:"
    printf '%s\n' "$check_out" >&2
fi
CHECK_RESULT="$check_result" CHECK_OUT="$check_out" "$PY" -c '
import json, os
print(json.dumps({"side": "check", "result": os.environ["CHECK_RESULT"], "output": os.environ["CHECK_OUT"]}))
' >>"$JSONL"

# One run: side (torch|torch-tuned|skilled|mnemo), configuration, threads, round. Appends one
# JSON line with leading "side" and "round" fields; a failed run is recorded with an "error"
# field and does not stop the script. The peers start without GLIBC_TUNABLES from the caller's
# environment: "torch" keeps glibc's defaults (--default-malloc), "torch-tuned" and "skilled"
# get the tunables from torch_peer.py.
declare -A VARIANT  # the skilled peer's variant per configuration and thread count, from round 1
run() {
    local side=$1 config=$2 threads=$3 round=$4 out rc=0 line
    local -a cmd
    case "$side" in
        torch | torch-tuned)
            if [ "$config" = mlpchunk64 ]; then
                cmd=(env -u GLIBC_TUNABLES "$PY" bench/torch_skilled.py --variant naive)
            else
                cmd=(env -u GLIBC_TUNABLES "$PY" bench/torch_peer.py)
            fi
            cmd+=(--config "$config" --threads "$threads" --json --seconds "$SECONDS_PER_CONFIG")
            if [ "$side" = torch ]; then
                cmd+=(--default-malloc)
            fi
            # big256: the first step alone takes tens of seconds with the default malloc.
            if [ "$config" = big256 ]; then
                cmd+=(--runs 3)
            fi
            ;;
        skilled)
            cmd=(env -u GLIBC_TUNABLES "$PY" bench/torch_skilled.py --config "$config" --threads "$threads" --json
                --seconds "$SECONDS_PER_CONFIG" --variant "${VARIANT[$config/$threads]:-best}")
            ;;
        *)
            cmd=("$BENCH" --config "$config" --threads "$threads" --json --seconds "$SECONDS_PER_CONFIG")
            ;;
    esac
    log "$side $config threads=$threads round=$round: ${cmd[*]}"
    out=$("${cmd[@]}") || rc=$?
    line=$(printf '%s\n' "$out" | grep '^{' | tail -n 1 || true)
    if [ "$rc" -eq 0 ] && [ -n "$line" ] && printf '%s' "$line" | "$PY" -c 'import json, sys; json.loads(sys.stdin.read())'; then
        printf '%s\n' "$line" | sed 's/^{/{"side": "'"$side"'", "round": '"$round"', /' >>"$JSONL"
        log "  $line"
        if [ "$side" = skilled ] && [ -z "${VARIANT[$config/$threads]:-}" ]; then
            VARIANT[$config/$threads]=$(printf '%s' "$line" | "$PY" -c 'import json, sys; print(json.loads(sys.stdin.read())["variant"])')
        fi
    else
        log "  failed (exit $rc)"
        printf '{"side": "%s", "round": %d, "name": "%s", "threads": %d, "error": "exit %d"}\n' \
            "$side" "$round" "$config" "$threads" "$rc" >>"$JSONL"
    fi
}

two_threads() {
    case "$1" in batch64 | chunk64 | big256) return 0 ;; *) return 1 ;; esac
}

for c in $CONFIGS; do
    run torch "$c" 1 1
    run torch-tuned "$c" 1 1
done
case " $CONFIGS " in
    *" batch64 "*)
        run torch batch64 2 1
        run torch-tuned batch64 2 1
        ;;
esac
for ((r = 1; r <= ROUNDS; r++)); do
    for c in $CONFIGS; do
        run skilled "$c" 1 "$r"
        run mnemo "$c" 1 "$r"
        if two_threads "$c"; then
            run skilled "$c" 2 "$r"
            run mnemo "$c" 2 "$r"
        fi
    done
done
# The flops of the BLAS products mnemo really calls in one step (bench/gemm_count.c, an
# LD_PRELOAD counter: the products of 1 + 3 steps minus those of 1 + 1, halved), per
# configuration: the rate on them against the sgemm rate below.
COUNTER="$OUT_DIR/libgemm_count.so"
if cc -O2 -shared -fPIC bench/gemm_count.c -o "$COUNTER" -ldl 2>/dev/null; then
    for c in $CONFIGS; do
        counts="$OUT_DIR/gemm_count.$c.jsonl"
        : >"$counts"
        for n in 1 3; do
            GEMM_COUNT_OUT="$counts" LD_PRELOAD="$COUNTER" "$BENCH" --config "$c" --runs "$n" --seconds 0 >/dev/null
        done
        "$PY" -c '
import json, sys
a, b = (json.loads(x) for x in open(sys.argv[1]) if x.strip())
print(json.dumps({"side": "flops", "name": sys.argv[2], "gemm_calls_per_step": (b["gemm_calls"] - a["gemm_calls"]) / 2,
                  "gemm_flops_per_step": (b["gemm_flops"] - a["gemm_flops"]) / 2,
                  "gemv_flops_per_step": (b["gemv_flops"] - a["gemv_flops"]) / 2}))
' "$counts" "$c" >>"$JSONL" || log "counting the products of $c failed"
    done
else
    log "no C compiler for bench/gemm_count.c: the products' flops are not counted"
fi

# Single-thread OpenBLAS sgemm rate at n = 256 (the yardstick of big256); "n/a" if unsupported.
run mnemo sgemm256 1 1

"$PY" bench/make_report.py report "$JSONL" "$REPORT"
log "wrote $REPORT and $JSONL"
