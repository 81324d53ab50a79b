#!/usr/bin/python3
"""Helper of bench/compare.sh.

    make_report.py machine TORCH_VERSION           prints one JSON line describing the machine
    make_report.py report COMPARE.JSONL OUT.md     renders docs/benchmarks.md from the JSON lines

The JSON lines are those of mnemo_bench --json, bench/torch_peer.py --json and
bench/torch_skilled.py --json, each with a leading "side" field ("mnemo"; "torch": the naive
peer with glibc's default malloc settings, torch_peer.py --default-malloc; "torch-tuned": the
naive peer with its malloc tunables; "skilled": torch_skilled.py) and a "round" field, plus one
"machine" line and one "check" line. A side run in several rounds is represented by the round
with the median time (its "round_medians_s" lists every round's). A run that failed is a line
with an "error" field instead of timings.
"""

import datetime
import json
import math
import os
import platform
import subprocess
import sys

CONFIGS = {
    # name: (B, d, T, memory, chunk)
    "seed": (1, 10, 1, "linear", 1),
    "seq64": (1, 64, 256, "linear", 1),
    "batch64": (16, 64, 256, "linear", 1),
    "mlp64": (1, 64, 256, "mlp (h 256)", 1),
    "chunk64": (16, 64, 256, "linear", 16),
    "big256": (4, 256, 512, "linear", 64),
    "mlpchunk64": (16, 64, 256, "mlp (h 256)", 16),
}
SPEEDUP_TARGETS = {"seed": 100, "seq64": 30, "batch64": 20, "mlp64": 10, "chunk64": 20}
# Against the skilled peer (torch_skilled.py's fastest variant), one thread each side.
SKILLED_TARGETS = {"seed": 300, "seq64": 3.5, "batch64": 3.5, "mlp64": 15, "chunk64": 3, "big256": 1.8,
                   "mlpchunk64": 5}
SKILLED_TARGET_NOTES = {
    "chunk64": "or >= 85% of the sgemm rate on the flops its products do; >= 2.5x with the pinned kernels",
    "big256": "or >= 95% of the sgemm rate on the flops its products do; peak RSS <= 1/5 of the peer's",
}
TWO_THREAD_CONFIGS = ("batch64", "chunk64", "big256")
BIG_FRACTION = 0.30  # of the single-thread sgemm rate at n = 256
BIG_RSS_MB = 512
# The tunables torch_peer.py sets for "torch-tuned" (shown when the JSON lines do not record them).
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736"


def sh(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine(torch_version):
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                    break
    except OSError:
        pass
    openblas = ""
    for pkg in ("libopenblas0-pthread", "libopenblas0-openmp", "libopenblas0-serial", "libopenblas0"):
        v = sh("dpkg-query", "-W", "-f=${Version}", pkg)
        if v:
            openblas = f"{pkg} {v}"
            break
    commit = sh("git", "rev-parse", "--short", "HEAD")
    if commit and sh("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (with uncommitted changes)"
    info = {
        "side": "machine",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "compiler": sh("g++", "--version").splitlines()[0] if sh("g++", "--version") else "",
        "torch": torch_version,
        "python": platform.python_version(),
        "openblas": openblas,
        "libblas": os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3"),
        "openblas_core": os.environ.get("MNEMO_OPENBLAS_CORE", ""),
        "commit": commit,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    print(json.dumps(info))


def fmt_ms(r):
    if r is None:
        return "not run"
    if "error" in r:
        return "failed"
    return f"{r['median_s'] * 1e3:.3g}" if r["median_s"] * 1e3 < 100 else f"{r['median_s'] * 1e3:.0f}"


def fmt_num(x, digits=3):
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return f"{x:.{digits}g}"


def ok(r):
    return r is not None and "error" not in r and r.get("median_s", 0) > 0


def nominal_gflops(name, r):
    B, d, T, memory, _ = CONFIGS[name]
    if not ok(r) or not memory.startswith("linear"):
        return None
    return 54 * B * T * d * d / r["median_s"] / 1e9


def report(jsonl, out):
    jsonl_name = os.path.basename(jsonl)
    lines = [json.loads(line) for line in open(jsonl) if line.strip()]
    mach = next((x for x in lines if x.get("side") == "machine"), {})
    check = next((x for x in lines if x.get("side") == "check"), None)
    by_key = {}
    for x in lines:
        if x.get("side") in ("mnemo", "torch", "torch-tuned", "skilled"):
            by_key.setdefault((x["side"], x["name"], x.get("threads", 1)), []).append(x)
    runs = {}
    for key, xs in by_key.items():
        good = sorted((x for x in xs if "error" not in x), key=lambda x: x["median_s"])
        if not good:
            runs[key] = xs[0]
            continue
        runs[key] = dict(good[(len(good) - 1) // 2], round_medians_s=[x["median_s"] for x in good])
    flops = {x["name"]: x for x in lines if x.get("side") == "flops"}
    sgemm = runs.get(("mnemo", "sgemm256", 1))
    sgemm_gflops = sgemm.get("gflops") if sgemm and "error" not in sgemm else None
    # The environments the peer actually ran in, as recorded by torch_peer.py.
    default_envs = {x.get("glibc_tunables") for k, x in runs.items() if k[0] == "torch" and ok(x)}
    tuned_envs = {x.get("glibc_tunables") for k, x in runs.items() if k[0] == "torch-tuned" and ok(x)}
    tunables = next((t for t in tuned_envs if t), MALLOC_TUNABLES)

    def speedup(a, b):
        return a["median_s"] / b["median_s"] if ok(a) and ok(b) else None

    def fmt_x(x):
        return "n/a" if x is None else f"{x:.1f}x"

    md = []
    w = md.append
    w("# Benchmarks")
    w("")
    w("One meta-gradient step of a Titans-style memory (forward through every inner update of B")
    w("sequences of T tokens, then the gradient of the outer loss to every meta-parameter), timed")
    w("with `mnemo_bench` and with a PyTorch peer doing the same step, on the configurations of")
    w("the project's benchmark specification: data gates (theta_max 0.1), l2 inner loss, mse outer")
    w("loss, float32, random values (projections N(0, 1/d), tokens and targets N(0, 1/d)).")
    w("")
    w("## How to reproduce")
    w("")
    w("```")
    w("bench/compare.sh                                  # every configuration, about 3 s each")
    w("CONFIGS='seq64 batch64' SECONDS_PER_CONFIG=1 bench/compare.sh   # a subset, shorter")
    w("OPENBLAS_PINNED=1 REPORT=docs/benchmarks-pinned-kernels.md bench/compare.sh")
    w("```")
    w("")
    w("Both sides run the BLAS kernels OpenBLAS picks for the processor: where the environment")
    w("pins older ones (`OPENBLAS_CORETYPE`, `OPENBLAS_L2_SIZE`, kept for the tests), the script")
    w("unsets both for both sides. The last line keeps the pin, for both sides (where the")
    w("environment sets none, it refuses; `OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512` before")
    w("it pins the AVX2 kernels). The kernels that ran are under Machine.")
    w("")
    w("It installs Debian's `python3-torch` if `/usr/bin/python3` cannot import torch, builds")
    w("`mnemo_bench` if needed (`BUILD_DIR`, default `build`), runs the naive PyTorch peer with")
    w("glibc's default malloc settings and with its malloc tunables, once per configuration, then")
    w("`ROUNDS` (default 3) interleaved rounds of the skilled peer and `mnemo_bench`, never two")
    w("runs concurrently; counts the flops of mnemo's BLAS products (`bench/gemm_count.c`); writes")
    w(f"this file and keeps the raw JSON lines in `build/bench/{jsonl_name}`. The single programs:")
    w("")
    w("```")
    w("build/bench/mnemo_bench --config NAME --threads N --json")
    w("/usr/bin/python3 bench/torch_peer.py --config NAME --threads N --json --default-malloc   # PyTorch")
    w("/usr/bin/python3 bench/torch_peer.py --config NAME --threads N --json   # PyTorch, tuned malloc")
    w("/usr/bin/python3 bench/torch_peer.py --check")
    w("/usr/bin/python3 bench/torch_skilled.py --config NAME --threads N --json --variant best   # skilled")
    w("/usr/bin/python3 bench/torch_skilled.py --check")
    w("```")
    w("")
    w("## Machine")
    w("")
    for key, label in (("cpu", "CPU"), ("cores", "cores"), ("memory", "memory"), ("kernel", "kernel"),
                       ("compiler", "compiler"), ("torch", "PyTorch"), ("python", "Python"),
                       ("openblas", "OpenBLAS"), ("libblas", "libblas.so.3 (PyTorch's BLAS)"),
                       ("openblas_core", "OpenBLAS kernels (both sides)"),
                       ("commit", "mnemo commit"), ("date", "date")):
        w(f"- {label}: {mach.get(key) or 'unknown'}")
    w("")
    w("## Results, one thread")
    w("")
    w("Times are the median of the timed steps in milliseconds; speed-up is a PyTorch median")
    w("over mnemo's. Peak RSS is that of the whole process (for PyTorch, the Python interpreter")
    w("and the torch import take about 250 MB before any step), with the default malloc settings.")
    w("")
    w("| config | B | d | T | memory | chunk | threads | PyTorch median (ms) | PyTorch tuned-malloc median (ms) "
      "| mnemo median (ms) | speed-up | speed-up vs tuned | target | met? | PyTorch peak RSS (MB) "
      "| mnemo peak RSS (MB) | mnemo loss | torch loss |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    big_notes = []
    names = [n for n in CONFIGS if any((side, n, 1) in runs for side in ("torch", "torch-tuned", "mnemo"))]
    for name in names:
        B, d, T, memory, chunk = CONFIGS[name]
        t, tt, m = (runs.get((side, name, 1)) for side in ("torch", "torch-tuned", "mnemo"))
        sp, sp_tuned = speedup(t, m), speedup(tt, m)
        if name in SPEEDUP_TARGETS:
            target = f">= {SPEEDUP_TARGETS[name]}x"
            met = "n/a" if sp is None else ("yes" if sp >= SPEEDUP_TARGETS[name] else "no")
        elif name != "big256":
            target, met = "-", "-"
        else:
            target = f">= {BIG_FRACTION:.0%} of sgemm, RSS < {BIG_RSS_MB} MB"
            gf = nominal_gflops(name, m)
            if gf is None or sgemm_gflops is None or not ok(m):
                met = "n/a"
            else:
                met = "yes" if (gf >= BIG_FRACTION * sgemm_gflops and m["peak_rss_mb"] < BIG_RSS_MB) else "no"
            big_notes.append((name, m, gf))
        w(f"| `{name}` | {B} | {d} | {T} | {memory} | {chunk} | 1 | {fmt_ms(t)} | {fmt_ms(tt)} | {fmt_ms(m)} | "
          f"{fmt_x(sp)} | {fmt_x(sp_tuned)} | {target} | {met} | "
          f"{fmt_num(t.get('peak_rss_mb') if ok(t) else None, 4)} | "
          f"{fmt_num(m.get('peak_rss_mb') if ok(m) else None, 4)} | "
          f"{fmt_num(m.get('loss') if ok(m) else None, 4)} | {fmt_num(t.get('loss') if ok(t) else None, 4)} |")
    w("")
    w("\"PyTorch\" is the peer as installed and run by its users, with glibc's default malloc settings;")
    w(f"\"tuned malloc\" is the same peer with `GLIBC_TUNABLES={tunables}`, which removes its per-step")
    w("page faults on this machine. The verdict (\"met?\") uses the former; the speed-up against the")
    w("latter is shown as well so that the comparison is not flattering.")
    if any(default_envs) or "" in tuned_envs:
        w("")
        w("**Warning:** the recorded environments do not match these labels (GLIBC_TUNABLES of the")
        w(f"default runs: {sorted(default_envs)}; of the tuned runs: {sorted(tuned_envs)}).")
    w("")
    w("The losses differ because each side draws its own random values from the same distributions")
    w("(visibly for `seed`, a single token of d = 10); they must be finite.")
    w("")

    w("## Against the skilled peer")
    w("")
    w("The skilled peer (`bench/torch_skilled.py`) is the same step written as a skilled PyTorch user")
    w("writes it: the inner gradient in closed form (one first-order `autograd.grad` is the whole")
    w("meta-gradient), sequential linear memories as unit-lower-triangular solves (the WY form),")
    w("chunked ones in the dual form; per configuration its fastest variant (picked by `--variant")
    w("best` in the first round). It equals the naive peer in float64 (`torch_skilled.py --check`,")
    w("CTest `bench_skilled_peer_check`). mnemo and the skilled peer ran in interleaved rounds;")
    w("each cell is the round with the median time (every round's median in the raw lines). The")
    w("ratio is the skilled peer's median over mnemo's.")
    w("")
    w("| config | threads | skilled variant | skilled (ms) | mnemo (ms) | mnemo vs skilled | target | met? "
      "| skilled peak RSS (MB) | mnemo peak RSS (MB) | rounds: skilled / mnemo (ms) |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    one_thread_ratio = {}
    for name in [n for n in CONFIGS if ("skilled", n, 1) in runs or ("mnemo", n, 1) in runs]:
        for threads in (1, 2):
            sk, m = runs.get(("skilled", name, threads)), runs.get(("mnemo", name, threads))
            if sk is None and m is None:
                continue
            sp = speedup(sk, m)
            if threads == 1:
                one_thread_ratio[name] = sp
                goal = SKILLED_TARGETS.get(name)
                target = f">= {goal}x" if goal else "-"
                if name in SKILLED_TARGET_NOTES:
                    target += f" ({SKILLED_TARGET_NOTES[name]})"
                met = "n/a" if sp is None or goal is None else ("yes" if sp >= goal else "no")
                if name == "big256" and ok(sk) and ok(m) and met == "yes":
                    met = "yes" if m["peak_rss_mb"] <= sk["peak_rss_mb"] / 5 else "no (RSS)"
            else:
                base = one_thread_ratio.get(name)
                target = ">= the 1-thread ratio" + (f" ({base:.2f}x)" if base else "")
                met = "n/a" if sp is None or base is None else ("yes" if sp >= base else "no")
            rounds = " / ".join(", ".join(f"{v * 1e3:.3g}" for v in r.get("round_medians_s", []))
                                for r in (sk or {}, m or {}))
            w(f"| `{name}` | {threads} | {(sk or {}).get('variant', 'n/a')} | {fmt_ms(sk)} | {fmt_ms(m)} | "
              f"{'n/a' if sp is None else f'{sp:.2f}x'} | {target} | {met} | "
              f"{fmt_num(sk.get('peak_rss_mb') if ok(sk) else None, 4)} | "
              f"{fmt_num(m.get('peak_rss_mb') if ok(m) else None, 4)} | {rounds} |")
    w("")

    if flops:
        w("**The flops mnemo's products really do.** `bench/gemm_count.c` counts, under `LD_PRELOAD`, the")
        w("BLAS products `mnemo_bench` calls (2 m n k for a gemm, 2 m n for a gemv) in one step; the rate")
        w("on them is those flops over mnemo's one-thread median. \"Time for the target\" is the time")
        w("that the skilled-peer target asks of mnemo; \"at the sgemm rate\" is the time the products")
        w("alone take at the single-thread sgemm rate of n = 256 (below): a target whose time is below")
        w("it is beyond the rate.")
        w("")
        w("| config | products per step (GFLOP) | BLAS calls per step | mnemo's rate on them (GFLOP/s) "
          "| of the sgemm rate | time for the target (ms) | at the sgemm rate (ms) |")
        w("|---|---|---|---|---|---|---|")
        for name in [n for n in CONFIGS if n in flops]:
            fx = flops[name]
            f = fx["gemm_flops_per_step"] + fx["gemv_flops_per_step"]
            m, sk = runs.get(("mnemo", name, 1)), runs.get(("skilled", name, 1))
            rate = f / m["median_s"] / 1e9 if ok(m) and f > 0 else None
            frac = "n/a" if rate is None or sgemm_gflops is None else f"{rate / sgemm_gflops:.0%}"
            goal = SKILLED_TARGETS.get(name)
            t_goal = f"{sk['median_s'] / goal * 1e3:.3g}" if ok(sk) and goal else "n/a"
            t_rate = "n/a" if sgemm_gflops is None else f"{f / sgemm_gflops / 1e6:.3g}"
            w(f"| `{name}` | {f / 1e9:.3g} | {fx['gemm_calls_per_step']:.0f} | {fmt_num(rate)} | {frac} | "
              f"{t_goal} | {t_rate} |")
        w("")

    w("## Throughput of the linear memory")
    w("")
    w("Nominal work of a step: `54 B T d^2` floating-point operations; nominal GFLOP/s =")
    w("`54 B T d^2 / median / 1e9`. A yardstick to compare runs, not a count of any algorithm's work.")
    sg = "n/a (mnemo_bench --config sgemm256 failed or was not run)" if sgemm_gflops is None \
        else f"{sgemm_gflops:.1f} GFLOP/s"
    w(f"Single-thread OpenBLAS `sgemm` at n = 256 (`mnemo_bench --config sgemm256`): {sg}.")
    w("")
    w("| config | mnemo nominal GFLOP/s | PyTorch nominal GFLOP/s | PyTorch tuned-malloc nominal GFLOP/s "
      "| mnemo / sgemm256 |")
    w("|---|---|---|---|---|")
    for name in names:
        if not CONFIGS[name][3].startswith("linear"):
            continue
        gm, gt, gtt = (nominal_gflops(name, runs.get((side, name, 1))) for side in ("mnemo", "torch", "torch-tuned"))
        frac = "n/a" if gm is None or sgemm_gflops is None else f"{gm / sgemm_gflops:.0%}"
        w(f"| `{name}` | {fmt_num(gm)} | {fmt_num(gt)} | {fmt_num(gtt)} | {frac} |")
    for name, m, gf in big_notes:
        w("")
        if gf is None or not ok(m):
            w(f"`{name}`: mnemo did not run, no verdict.")
        else:
            frac = "n/a" if sgemm_gflops is None else f"{gf / sgemm_gflops:.0%}"
            verdict = "n/a" if sgemm_gflops is None else \
                ("met" if gf >= BIG_FRACTION * sgemm_gflops else "not met")
            w(f"`{name}`: mnemo {gf:.1f} nominal GFLOP/s, {frac} of the sgemm rate (target >= "
              f"{BIG_FRACTION:.0%}: {verdict}); peak RSS {m['peak_rss_mb']:.1f} MB (target < {BIG_RSS_MB} MB: "
              f"{'met' if m['peak_rss_mb'] < BIG_RSS_MB else 'not met'}).")
    w("")

    w("## Threads")
    w("")
    t1, t2 = runs.get(("torch", "batch64", 1)), runs.get(("torch", "batch64", 2))
    tt1, tt2 = runs.get(("torch-tuned", "batch64", 1)), runs.get(("torch-tuned", "batch64", 2))
    m1, m2 = runs.get(("mnemo", "batch64", 1)), runs.get(("mnemo", "batch64", 2))
    if any(r is not None for r in (t2, tt2, m2)):
        w("`batch64` with 1 and 2 threads on every side (`torch.set_num_threads`, OpenBLAS threads).")
        w("Scaling is the 1-thread median over the 2-thread median.")
        w("")
        w("| side | 1 thread (ms) | 2 threads (ms) | scaling |")
        w("|---|---|---|---|")
        for side, a, b in (("PyTorch", t1, t2), ("PyTorch, tuned malloc", tt1, tt2), ("mnemo", m1, m2)):
            sc = f"{a['median_s'] / b['median_s']:.2f}x" if ok(a) and ok(b) else "n/a"
            w(f"| {side} | {fmt_ms(a)} | {fmt_ms(b)} | {sc} |")
        parts = [f"{fmt_x(speedup(p2, m2))} against {label}"
                 for p2, label in ((t2, "PyTorch"), (tt2, "PyTorch with the tuned malloc")) if ok(p2) and ok(m2)]
        if parts:
            w("")
            w(f"Speed-up of mnemo with 2 threads on both sides: {', '.join(parts)}.")
    else:
        w("Not run (batch64 is not in CONFIGS).")
    w("")

    w("## The PyTorch peer")
    w("")
    w("`bench/torch_peer.py`, PyTorch in eager mode on the CPU, written as its users write it: the")
    w("meta-parameters are leaf tensors with `requires_grad`; in the sequential configurations the")
    w("inner gradient of every token comes from `torch.autograd.grad(inner_loss, memory,")
    w("create_graph=True)` with the batch as `(B, d, d)` tensors; in the chunked ones it is the closed")
    w("form `2 (M k - v) k^T` for all tokens of a chunk at once (einsum) at the chunk-start memory; the")
    w("momentum and forget updates are out-of-place tensor ops token by token (per-token tensors")
    w("taken with `unbind`: indexing `G[:, j]` would make the backward materialise a zero tensor of")
    w("the whole chunk for every token); then one `torch.autograd.grad` of the outer loss to every")
    w("meta-parameter. Timing, on both sides: one warm-up step, then steps for `SECONDS_PER_CONFIG`")
    w("seconds and at least 3. The first PyTorch step is much slower than the next ones (for")
    w("`big256` tens of seconds: it touches 3.5 GB for the first time) and is not counted; for")
    w("`big256` the peer times exactly 3 steps (`--runs 3`).")
    w("")
    w("The peer is measured in two environments, one after the other. \"PyTorch\" runs it with")
    w("glibc's default malloc settings (`torch_peer.py --default-malloc`), as PyTorch is installed")
    w("and run by its users; the targets' reference figures were measured this way and the verdict")
    w("is judged against it. \"Tuned malloc\" runs it with the tunables `torch_peer.py` sets for")
    w(f"itself without that option, `GLIBC_TUNABLES={tunables}`")
    w("(a fixed 32 MB mmap threshold, no heap trimming): with the defaults the peer's large tensors")
    w("are mapped and unmapped again on every step, and the page faults make its steps up to")
    w("several times slower and noisy on this machine. mnemo runs with the defaults.")
    w("")
    if check is not None:
        w(f"Correctness of the peer (`torch_peer.py --check`, float64): {check.get('result', 'unknown')}.")
        w("It compares the sequential code path with the chunked one at chunk 1 (loss and every")
        w("gradient), central finite differences of gradient entries of every code path, and the five")
        w("reference problems against mnemo's `reference_problems` example when it is built.")
        w("")
        if check.get("output"):
            w("<details><summary>Output of the check</summary>")
            w("")
            w("```")
            w(check["output"].rstrip())
            w("```")
            w("")
            w("</details>")
            w("")

    w("## Raw results")
    w("")
    w(f"<details><summary>JSON lines (build/bench/{jsonl_name})</summary>")
    w("")
    w("```")
    for x in lines:
        if x.get("side") != "check":
            w(json.dumps(x))
    w("```")
    w("")
    w("</details>")
    # The section bench/torch_module.py writes (between its markers) is kept.
    begin, end = "<!-- bench/torch_module.py: begin -->", "<!-- bench/torch_module.py: end -->"
    if os.path.exists(out):
        old = open(out).read()
        if begin in old and end in old:
            md += ["", begin + old.split(begin, 1)[1].split(end, 1)[0] + end]
    with open(out, "w") as f:
        f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "machine":
        machine(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
