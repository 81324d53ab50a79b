#!/usr/bin/python3
"""One training step inside PyTorch: mnemo_torch.NeuralMemory against pure-PyTorch memories.

    /usr/bin/python3 bench/torch_module.py --config NAME [--side module|naive|skilled]
                                           [--variant V|best] [--threads N] [--json]
                                           [--seconds S] [--runs N] [--warmup N] [--optimizer mnemo|torch]
    /usr/bin/python3 bench/torch_module.py --compare [--configs "seq64 ..."] [--rounds R] [--report FILE]

A training step, on the problem of bench-configs.md (B sequences of T tokens, data gates,
theta_max 0.1, l2 inner loss, float32, torch_peer.py's random values), is: the forward, the
mse outer loss against random targets, the backward to every meta-parameter, one Adam step
(lr 1e-6: the problem stays the same from step to step).

Sides:
- `module`: `mnemo_torch.NeuralMemory` (forward: mnemo's layer forward; backward: mnemo's layer
  backward through the autograd Function), `loss.backward()`, and `--optimizer mnemo`
  (default) `mnemo_torch.AdamW` (weight decay 0) or `--optimizer torch` `torch.optim.Adam`.
- `naive`: the memory as PyTorch users write it first (torch_peer.py: the inner gradient by
  autograd with create_graph, double backward), the chunked MLP as torch_skilled.py's `naive`.
- `floor`: the module's step with mnemo's work taken out (an autograd Function of the same
  inputs returning an uninitialised output and zero gradients): torch's own cost per step.
- `skilled`: the best a PyTorch user writes (torch_skilled.py: closed-form inner gradients,
  WY solves, the dual form); `--variant` names one of its variants, `best` tries them all in
  child processes (default: the variant that was fastest here, SKILLED_VARIANT below).
The peers' gradients are assigned to `.grad` and `torch.optim.Adam` steps.

`--compare` runs, for every configuration, in --rounds interleaved rounds: mnemo's C++ step
(build/bench/mnemo_bench --optimizer --mode layer_nodx, the separate forward and backward the
module calls, and --mode meta, the fused meta-gradient), the module with mnemo_torch.AdamW and
with torch.optim.Adam; then the skilled and the naive peers once; one thread each; it keeps
the JSON lines in build/bench/torch_module.jsonl and writes the table into the section of
--report (default docs/benchmarks.md) between the markers below (make_report.py keeps it).

Timing and malloc tunables are torch_peer.py's (time_steps; GLIBC_TUNABLES unless
--default-malloc, for every side).
"""

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEGIN, END = "<!-- bench/torch_module.py: begin -->", "<!-- bench/torch_module.py: end -->"
# The skilled peer's fastest variant per configuration on this machine (torch_skilled.py
# --variant best); --variant best measures again.
SKILLED_VARIANT = {"seed": "loop", "seq64": "wy", "batch64": "wy64", "mlp64": "loop", "chunk64": "dual",
                   "big256": "dual", "mlpchunk64": "dual"}
DEFAULT_CONFIGS = "seq64 batch64 mlp64 chunk64 big256 mlpchunk64"


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--side", choices=("module", "floor", "naive", "skilled"), default="module")
    ap.add_argument("--variant", help="the skilled peer's variant, or best (default: SKILLED_VARIANT)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=0, help="at most this many timed steps (0: no cap)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps before timing")
    ap.add_argument("--no-optimizer", action="store_true", help="forward, loss and backward only (no Adam step)")
    ap.add_argument("--optimizer", choices=("mnemo", "torch"), default="mnemo",
                    help="the module's optimizer: mnemo_torch.AdamW (weight decay 0) or torch.optim.Adam (the "
                         "peers always take torch.optim.Adam)")
    ap.add_argument("--rounds", type=int, default=3, help="--compare: interleaved rounds of the timed sides")
    ap.add_argument("--default-malloc", action="store_true", help="keep glibc's default malloc settings")
    ap.add_argument("--trial-seconds", type=float, default=1.0, help="--variant best: seconds per trial")
    ap.add_argument("--compare", action="store_true", help="every side and mnemo's C++ step; writes the report")
    ap.add_argument("--configs", default=DEFAULT_CONFIGS, help="--compare: the configurations")
    ap.add_argument("--report", default=os.path.join(ROOT, "docs", "benchmarks.md"), help="--compare: the report")
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"), help="--compare: mnemo's build directory")
    ap.add_argument("--render", metavar="JSONL", help="writes --report from the JSON lines of an earlier --compare")
    a = ap.parse_args()
    if a.render:
        a.compare = True
    if not a.compare and not a.config:
        ap.error("--config NAME or --compare is required")
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    return a


ARGS = parse_args()
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736"
if __name__ == "__main__" and not ARGS.compare and not ARGS.default_malloc and "GLIBC_TUNABLES" not in os.environ:
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
              dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES))


# ----------------------------------------------------------------------------------------
# --compare: the driver (imports no torch itself)
# ----------------------------------------------------------------------------------------

def run_json(cmd, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        return {"error": f"exit {r.returncode}: {r.stderr.strip()[-400:]}"}
    return json.loads(lines[-1])


def compare(a):
    if a.render:
        with open(a.render) as f:
            write_report(a.report, [json.loads(ln) for ln in f if ln.strip()])
        return 0
    bench = os.path.join(a.build_dir, "bench", "mnemo_bench")
    if not os.access(bench, os.X_OK):
        print(f"torch_module: {bench} is missing (cmake --build {a.build_dir} --target mnemo_bench)", file=sys.stderr)
        return 2
    out_dir = os.path.join(a.build_dir, "bench")
    jsonl = os.path.join(out_dir, "torch_module.jsonl")
    env = dict(os.environ, MNEMO_TORCH_QUIET="1")
    # OpenBLAS's kernels: as bench/compare.sh, the processor's own unless OPENBLAS_PINNED=1
    # keeps the environment's pin (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE), for every side.
    if os.environ.get("OPENBLAS_PINNED", "0") != "1":
        for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            env.pop(k, None)
    rows = []
    common = ["--threads", "1", "--json", "--seconds", str(a.seconds)]
    me = [sys.executable, __file__]
    # The sides whose ratios are the module's target, timed in interleaved rounds (this
    # machine is shared: a side measured once can land in a slow minute); the median over
    # the rounds is reported.
    timed = {
        "cpp_meta": [bench, "--mode", "meta", "--optimizer"] + common,
        "cpp_layer": [bench, "--mode", "layer_nodx", "--optimizer"] + common,
        "module": me + ["--side", "module", "--optimizer", "mnemo"] + common,
        "module_torch_adam": me + ["--side", "module", "--optimizer", "torch"] + common,
        "floor": me + ["--side", "floor", "--optimizer", "mnemo"] + common,
    }
    for c in a.configs.split():
        row = {"config": c, "rounds": a.rounds}
        # The module's first use compiles its configuration: load it once before timing.
        run_json(me + ["--config", c, "--side", "module", "--runs", "1", "--warmup", "0", "--json"], env)
        per_round = {k: [] for k in timed}
        for _ in range(a.rounds):
            for k, cmd in timed.items():
                per_round[k].append(run_json(cmd + ["--config", c], env))
        for k, results in per_round.items():
            good = [r for r in results if "error" not in r]
            if not good:
                row[k] = results[0]
                continue
            best = sorted(good, key=lambda r: r["median_s"])[len(good) // 2]
            row[k] = dict(best, round_medians_s=[r["median_s"] for r in good])
        row["skilled"] = run_json(me + ["--config", c, "--side", "skilled"] + common, env)
        # big256's naive step takes about ten seconds: three timed steps.
        runs = ["--runs", "3", "--warmup", "1"] if c == "big256" else []
        row["naive"] = run_json(me + ["--config", c, "--side", "naive"] + common + runs, env)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    with open(jsonl, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    write_report(a.report, rows)
    print(f"torch_module: wrote {a.report} (raw: {jsonl})", file=sys.stderr)
    return 0


def ms(r):
    return "error" if "error" in r else f"{r['median_s'] * 1e3:.2f}"


def ratio(num, den):
    if "error" in num or "error" in den:
        return "-"
    return f"{num['median_s'] / den['median_s']:.2f}x"


def table(rows):
    md = ["| config | mnemo C++, fused (ms) | mnemo C++, layer (ms) | module (ms) | module / C++ layer | "
          "module / C++ fused | torch's floor (ms) | module, torch.optim.Adam (ms) | skilled PyTorch (ms) | "
          "skilled / module | naive PyTorch (ms) | naive / module |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["module"]
        variant = r["skilled"].get("variant", "")
        md.append(f"| {r['config']} | {ms(r['cpp_meta'])} | {ms(r['cpp_layer'])} | {ms(m)} | "
                  f"{ratio(m, r['cpp_layer'])} | {ratio(m, r['cpp_meta'])} | {ms(r.get('floor', {'error': ''}))} | "
                  f"{ms(r.get('module_torch_adam', {'error': ''}))} | {ms(r['skilled'])} ({variant}) | "
                  f"{ratio(r['skilled'], m)} | {ms(r['naive'])} | {ratio(r['naive'], m)} |")
    return md


def write_report(path, rows):
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    torch_version = next((r["module"].get("torch") for r in rows if "torch" in r["module"]), "?")
    rounds = rows[0].get("rounds", 1) if rows else 1
    block = [BEGIN, "## Inside PyTorch: one training step", "",
             f"`bench/torch_module.py --compare` ({when}, torch {torch_version}, one thread each, float32; the "
             f"raw JSON lines are in `build/bench/torch_module.jsonl`). A step is the forward, the mse loss, "
             "the backward to every meta-parameter and one Adam step (lr 1e-6, no weight decay). The first "
             f"four columns are timed in {rounds} interleaved rounds of a few seconds each, and the median "
             "round's median step is shown. mnemo's C++ columns: `mnemo_bench --optimizer --mode layer_nodx` "
             "(the same work as the module: the layer's forward, dL/dY of the loss, the layer's backward "
             "without the gradient to the tokens, which are data here, and `mnemo::train::adamw`) and "
             "`--mode meta` (fused: the meta-gradient with the outer loss inside, one sequence's forward and "
             "backward after the other, which a layer whose loss comes later cannot do). The module: "
             "`mnemo_torch.NeuralMemory` with `mnemo_torch.AdamW` (the C++ step's optimizer kernel), and "
             "with `torch.optim.Adam` in the column of its own. The pure-PyTorch peers take "
             "`torch.optim.Adam`. \"Torch's floor\" (`--side floor`) is the module's step with mnemo's work "
             "taken out: an autograd Function of the same inputs that returns an uninitialised output and "
             "zero gradients, the same loss, backward and `mnemo_torch.AdamW`; what torch costs around any "
             "layer of these shapes. OpenBLAS: the processor's own kernels (the environment's pin unset, as "
             "`bench/compare.sh`). The module's target: within 1.2x of mnemo's C++ step on the same work.",
             ""] + table(rows) + ["", END]
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + "\n".join(block) + tail
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(block) + "\n"
    with open(path, "w") as f:
        f.write(text)


if ARGS.compare:
    if __name__ == "__main__":
        sys.exit(compare(ARGS))

# ----------------------------------------------------------------------------------------
# One side: the timed training step
# ----------------------------------------------------------------------------------------

# torch_skilled (and through it torch_peer) parse sys.argv when imported and set the thread
# counts before they import torch: give them argument lists of their own.
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.dont_write_bytecode = True
_argv = sys.argv
sys.argv = [os.path.join(HERE, "torch_skilled.py"), "--check", "--threads", str(ARGS.threads)]
import torch_skilled as skilled  # noqa: E402
sys.argv = _argv
peer = skilled.peer
import torch  # noqa: E402

assert MALLOC_TUNABLES == peer.MALLOC_TUNABLES, "torch_module.py's malloc tunables must be torch_peer.py's"


def make_optimizer(params, a):
    """The module's optimizer (--optimizer): mnemo_torch.AdamW without decay, or torch's Adam."""
    if a.optimizer == "mnemo":
        import mnemo_torch

        return mnemo_torch.AdamW(params, lr=1e-6, weight_decay=0.0)
    return torch.optim.Adam(params, lr=1e-6)


def module_step(B, d, T, kind, h, chunk, a):
    from mnemo_torch import NeuralMemory, _build

    t0 = time.perf_counter()
    mem = NeuralMemory(d, model=kind, hidden=h if kind == "mlp" else None, activation="silu", gates="data",
                       chunk=chunk, theta_max=peer.THETA_MAX, threads=a.threads, dtype=torch.float32)
    first_use = time.perf_counter() - t0
    p, X, Y = peer.random_problem(B, d, T, kind, h)
    with torch.no_grad():
        for i, m in enumerate(p["M0"]):
            getattr(mem, f"M0_{i}").copy_(m)
        for n in ("WK", "WV", "WQ", "wa", "ba", "we", "be", "wt", "bt"):
            getattr(mem, n).copy_(p[n])
    X, Y = X.detach(), Y.detach()
    opt = make_optimizer(mem.parameters(), a)

    def step():
        opt.zero_grad(set_to_none=True)
        L = torch.nn.functional.mse_loss(mem(X), Y)
        L.backward()
        if not a.no_optimizer:
            opt.step()
        return L, ()

    return step, dict(first_use_s=first_use, compiled=_build.last_load.get("compiled"))


def floor_step(B, d, T, kind, h, chunk, a):
    """The module's step with mnemo's work taken out: an autograd Function of the same inputs
    (the tokens and the memory's parameter tensors) whose forward returns an uninitialised
    output of the retrievals' shape and whose backward returns new zero gradients; the same
    loss, backward and optimizer. What torch itself costs around any layer of this shape."""
    from mnemo_torch import NeuralMemory

    mem = NeuralMemory(d, model=kind, hidden=h if kind == "mlp" else None, activation="silu", gates="data",
                       chunk=chunk, theta_max=peer.THETA_MAX, threads=a.threads, dtype=torch.float32)
    _, X, Y = peer.random_problem(B, d, T, kind, h)
    params = list(mem.parameters())

    class Nothing(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, *ps):
            ctx.save_for_backward(x, *ps)
            return torch.empty_like(x)

        @staticmethod
        def backward(ctx, dy):
            return (None,) + tuple(torch.zeros_like(p) for p in ctx.saved_tensors[1:])

    opt = make_optimizer(params, a)

    def step():
        opt.zero_grad(set_to_none=True)
        L = torch.nn.functional.mse_loss(Nothing.apply(X, *params), Y)
        L.backward()
        if not a.no_optimizer:
            opt.step()
        return torch.zeros(()), ()

    return step, {}


def peer_step(B, d, T, kind, h, chunk, a):
    if a.side == "naive":
        variant, fwd = "naive", skilled.all_variants(kind, chunk)["naive"]
    else:
        variant = a.variant or SKILLED_VARIANT[a.config]
        if variant == "best":
            tried = skilled.trials(a, list(skilled.variants(kind, chunk)))
            variant = min(tried, key=tried.get)
        fwd = skilled.all_variants(kind, chunk)[variant]
    p, X, Y = peer.random_problem(B, d, T, kind, h)
    params = peer.meta_list(p)
    opt = torch.optim.Adam(params, lr=1e-6)

    def step():
        L, grads = skilled.meta_gradient(fwd, p, X, Y)
        with torch.no_grad():
            for t, g in zip(params, grads):
                t.grad = g
        opt.step()
        return L, grads

    return step, dict(variant=variant)


def main(a):
    configs = skilled.CONFIGS
    if a.config not in configs:
        print(f"torch_module: unknown configuration '{a.config}' ({' '.join(sorted(configs))})", file=sys.stderr)
        return 2
    B, d, T, kind, h, chunk = configs[a.config]
    make = {"module": module_step, "floor": floor_step}.get(a.side, peer_step)
    step, extra = make(B, d, T, kind, h, chunk, a)
    r, times = peer.time_steps(a, step, B, T)
    r.update(side=a.side, optimizer=not a.no_optimizer, torch=torch.__version__, **extra)
    if not math.isfinite(r["loss"]):
        print(f"torch_module: {a.config}/{a.side}: the loss is not finite ({r['loss']})", file=sys.stderr)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{a.config} [{a.side}{'/' + extra['variant'] if 'variant' in extra else ''}]: B={B} T={T} d={d} "
              f"threads={a.threads}  median {r['median_s'] * 1e3:.3f} ms  min {times[0] * 1e3:.3f} ms  "
              f"({len(times)} runs)  loss {r['loss']:.6g}  peak RSS {r['peak_rss_mb']:.1f} MB")
    return 0 if math.isfinite(r["loss"]) else 1


if __name__ == "__main__":
    sys.exit(main(ARGS))
