#!/usr/bin/python3
"""PyTorch peer of mnemo_bench: the same meta-gradient step, written as a PyTorch user would.

    /usr/bin/python3 bench/torch_peer.py --config NAME [--threads N] [--json] [--seconds S]
                                         [--runs N] [--warmup N]
    /usr/bin/python3 bench/torch_peer.py --check [--reference PATH]

One step (see /work/shared/bench-configs.md and reference-problems.md): B sequences of T
tokens, each sequence with its own memory started from the shared M0; projections
k = W_K x, v = W_V x, q = W_Q x; data gates alpha = sigmoid(wa.x + ba),
eta = sigmoid(we.x + be), theta = theta_max sigmoid(wt.x + bt); inner loss
l = sum_i (M(k) - v)_i^2; S_t = eta_t S_{t-1} - theta_t grad_M l(M_g; x_t);
M_t = (1 - alpha_t) M_{t-1} + S_t; y_t = M_t(q_t); L = mean over batch, tokens and
features of (y - target)^2; then one torch.autograd.grad(L, every meta-parameter).

- Sequential configurations (chunk 1): the inner gradient of every token from
  torch.autograd.grad(inner_loss, memory, create_graph=True), the batch vectorised as
  (B, d, d) tensors (the inner loss is summed over the batch, so its gradient is the
  per-sequence gradient).
- Chunked configurations (linear memory): the inner gradient in closed form,
  grad_M l = 2 (M k - v) k^T, for all tokens of a chunk at once (einsum) at the memory of
  the start of the chunk, then the momentum/forget recurrence token by token as
  out-of-place tensor ops.

Timing: `--warmup` steps (default 1), then timed steps until `--seconds` (default 3) have
passed and at least 3 steps ran, at most `--runs` steps if given (0: no cap). The first
step is several times slower than the next ones (it touches the process's memory for the
first time: for big256 about 3.5 GB, 25-30 s against about 11 s for a later step).

Allocator: with glibc's default malloc settings, PyTorch's large CPU tensors are mmapped
and unmapped again on every step (the dynamic mmap threshold, heap trimming), and the page
faults, expensive in a VM, make steps 2-6x slower and noisy. Unless GLIBC_TUNABLES is
already set or --default-malloc is given, this script re-executes itself with
GLIBC_TUNABLES=glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736
(a fixed 32 MB mmap threshold, no trimming): the peer is measured at its best.

Peak RSS is that of the whole Python process (interpreter and the torch import included,
about 250-300 MB before any step).

Values are random (torch.manual_seed), drawn with the distributions of mnemo_bench, not
the same numbers: the losses agree in magnitude, not digit for digit.

`--check` runs, in float64 on small sizes: the sequential code path (autograd inner
gradient) against the chunked code path (closed-form inner gradient) with chunk 1, loss
and every gradient; central finite differences of one entry of several gradients; and,
when the reference_problems example of the project is found (or given with --reference),
the five reference problems against its output.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

CONFIGS = {
    # name: (B, d, T, memory, h, chunk)
    "seed": (1, 10, 1, "linear", 0, 1),
    "seq64": (1, 64, 256, "linear", 0, 1),
    "batch64": (16, 64, 256, "linear", 0, 1),
    "mlp64": (1, 64, 256, "mlp", 256, 1),
    "chunk64": (16, 64, 256, "linear", 0, 16),
    "big256": (4, 256, 512, "linear", 0, 64),
}
THETA_MAX = 0.1


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", choices=sorted(CONFIGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=0, help="at most this many timed steps (0: no cap)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up steps before timing")
    ap.add_argument("--default-malloc", action="store_true", help="keep glibc's default malloc settings")
    ap.add_argument("--check", action="store_true", help="correctness checks (float64, small sizes)")
    ap.add_argument("--reference", help="reference_problems binary or a file with its output (for --check)")
    a = ap.parse_args()
    if not a.check and not a.config:
        ap.error("--config NAME or --check is required")
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    return a


MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=68719476736"

ARGS = parse_args()
if __name__ == "__main__" and not ARGS.default_malloc and "GLIBC_TUNABLES" not in os.environ:
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
              dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES))
# The BLAS under Debian's torch is OpenBLAS (pthread build): give it the same thread count
# before it is loaded, in case torch.set_num_threads does not reach it.
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)

import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass


# ----------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------

def memory_apply(kind, Ms, k):
    """M(k) for a batch: Ms are (B, ...) tensors, k is (B, d)."""
    if kind == "linear":
        (W,) = Ms
        return torch.einsum("bij,bj->bi", W, k)
    W1, W2 = Ms
    hidden = torch.nn.functional.silu(torch.einsum("bhd,bd->bh", W1, k))
    return torch.einsum("bdh,bh->bd", W2, hidden)


def gates(p, X, gate_spec):
    """alpha, eta, theta, each (B, T)."""
    if gate_spec[0] == "const":
        _, eta, alpha, theta = gate_spec
        shape = X.shape[:2]
        full = lambda c: torch.full(shape, c, dtype=X.dtype)  # noqa: E731
        return full(alpha), full(eta), full(theta)
    theta_max = gate_spec[1]
    alpha = torch.sigmoid(X @ p["wa"] + p["ba"])
    eta = torch.sigmoid(X @ p["we"] + p["be"])
    theta = theta_max * torch.sigmoid(X @ p["wt"] + p["bt"])
    return alpha, eta, theta


def outer_loss(Yhat, Y, outer):
    if outer == "l1":
        return (Yhat - Y).abs().mean()
    return ((Yhat - Y) ** 2).mean()  # = 1/(B T) sum over sequences and tokens of mean_i


def forward_sequential(p, X, Y, kind, gate_spec=("data", THETA_MAX), outer="mse"):
    """Chunk 1, inner gradient from autograd. Returns the outer loss L (graph attached)."""
    B = X.shape[0]
    # Per-token views with unbind: indexing K[:, t] would make the backward of every token
    # materialise a zero tensor of the whole K (select_backward).
    Ks, Vs, Qs = ((X @ p[n].T).unbind(1) for n in ("WK", "WV", "WQ"))
    alpha, eta, theta = (g[:, :, None, None].unbind(1) for g in gates(p, X, gate_spec))
    Ms = [m.expand(B, *m.shape) for m in p["M0"]]
    Ss = [torch.zeros(B, *m.shape, dtype=m.dtype) for m in p["M0"]]
    ys = []
    for k, v, q, a, e, th in zip(Ks, Vs, Qs, alpha, eta, theta):
        inner = ((memory_apply(kind, Ms, k) - v) ** 2).sum()
        gs = torch.autograd.grad(inner, Ms, create_graph=True)
        Ss = [e * S - th * g for S, g in zip(Ss, gs)]
        Ms = [(1 - a) * M + S for M, S in zip(Ms, Ss)]
        ys.append(memory_apply(kind, Ms, q))
    return outer_loss(torch.stack(ys, 1), Y, outer)


def forward_chunked(p, X, Y, chunk, gate_spec=("data", THETA_MAX), outer="mse"):
    """Linear memory, inner gradient in closed form at the memory of the chunk start."""
    B, T, d = X.shape
    K, V, Q = X @ p["WK"].T, X @ p["WV"].T, X @ p["WQ"].T
    gate_values = [g[:, :, None, None] for g in gates(p, X, gate_spec)]
    M = p["M0"][0].expand(B, d, d)
    S = torch.zeros(B, d, d, dtype=X.dtype)
    ys = []
    for c0 in range(0, T, chunk):
        Kc, Vc, Qc = (Z[:, c0:c0 + chunk] for Z in (K, V, Q))
        E = torch.einsum("bij,btj->bti", M, Kc) - Vc        # M_g k_t - v_t for the chunk
        G = 2 * torch.einsum("bti,btj->btij", E, Kc)         # grad_M l(M_g; x_t), (B, b, d, d)
        alpha, eta, theta = (g[:, c0:c0 + chunk].unbind(1) for g in gate_values)
        # unbind, not G[:, j]: the backward of G[:, j] would materialise a zero tensor of the
        # whole (B, b, d, d) G for every token (select_backward)
        for g, q, a, e, th in zip(G.unbind(1), Qc.unbind(1), alpha, eta, theta):
            S = e * S - th * g
            M = (1 - a) * M + S
            ys.append(torch.einsum("bij,bj->bi", M, q))
    return outer_loss(torch.stack(ys, 1), Y, outer)


def forward(p, X, Y, kind, chunk, path=None, **kw):
    if path is None:
        path = "sequential" if chunk == 1 else "chunked"
    if path == "sequential":
        assert chunk == 1
        return forward_sequential(p, X, Y, kind, **kw)
    assert kind == "linear"
    return forward_chunked(p, X, Y, chunk, **kw)


def meta_names(p):
    return [f"M0[{i}]" for i in range(len(p["M0"]))] + [
        n for n in ("WK", "WV", "WQ", "wa", "ba", "we", "be", "wt", "bt") if n in p]


def meta_list(p):
    return list(p["M0"]) + [p[n] for n in ("WK", "WV", "WQ", "wa", "ba", "we", "be", "wt", "bt") if n in p]


def meta_gradient(p, X, Y, kind, chunk, path=None, **kw):
    """One meta-gradient step: returns (L, [grad of L for every meta-parameter])."""
    L = forward(p, X, Y, kind, chunk, path, **kw)
    grads = torch.autograd.grad(L, meta_list(p))
    return L, grads


def random_problem(B, d, T, kind, h, dtype=torch.float32, seed=12345):
    """The values of mnemo_bench: same distributions, torch's generator."""
    g = torch.Generator().manual_seed(seed)
    rn = lambda *shape, std: (torch.randn(*shape, generator=g, dtype=torch.float64) * std).to(dtype)  # noqa: E731
    proj = 1.0 / math.sqrt(d)
    p = {"WK": rn(d, d, std=proj), "WV": rn(d, d, std=proj), "WQ": rn(d, d, std=proj),
         "wa": rn(d, std=0.01), "we": rn(d, std=0.01), "wt": rn(d, std=0.01),
         "ba": torch.tensor(-2.0, dtype=dtype), "be": torch.tensor(1.0, dtype=dtype),
         "bt": torch.tensor(0.0, dtype=dtype)}
    if kind == "linear":
        p["M0"] = [rn(d, d, std=0.1)]
    else:
        p["M0"] = [rn(h, d, std=1.0 / math.sqrt(d)), rn(d, h, std=1.0 / math.sqrt(h))]
    X = rn(B, T, d, std=proj)
    Y = rn(B, T, d, std=proj)
    for t in meta_list(p):
        t.requires_grad_(True)
    return p, X, Y


# ----------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------

def time_steps(a, meta_step, B, T):
    """Times `meta_step()` (one meta-gradient step returning (loss, grads)) as --warmup,
    --seconds and --runs ask; returns the JSON record (name, threads, median_s, min_s, runs,
    loss, tokens_per_s, peak_rss_mb, glibc_tunables) and the sorted times. Shared with
    torch_skilled.py."""
    times = []
    loss = float("nan")

    def step():
        nonlocal loss
        t0 = time.perf_counter()
        L, grads = meta_step()
        dt = time.perf_counter() - t0
        loss = L.item()
        del L, grads
        return dt

    for i in range(a.warmup):
        dt = step()
        if not a.json:
            print(f"warm-up step {i + 1}: {dt * 1e3:.3f} ms", file=sys.stderr)
    start = time.perf_counter()
    while True:
        times.append(step())
        if a.runs and len(times) >= a.runs:
            break
        if time.perf_counter() - start >= a.seconds and len(times) >= 3:
            break
    if not a.json:
        print("timed steps (ms): " + " ".join(f"{t * 1e3:.1f}" for t in times), file=sys.stderr)
    times.sort()
    med = times[len(times) // 2]
    r = {"name": a.config, "threads": a.threads, "median_s": med, "min_s": times[0], "runs": len(times),
         "loss": loss, "tokens_per_s": B * T / med,
         "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
         "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    return r, times


def bench(a):
    B, d, T, kind, h, chunk = CONFIGS[a.config]
    p, X, Y = random_problem(B, d, T, kind, h)
    r, times = time_steps(a, lambda: meta_gradient(p, X, Y, kind, chunk), B, T)
    loss, med = r["loss"], r["median_s"]
    if not math.isfinite(loss):
        print(f"torch_peer: {a.config}: loss is not finite ({loss})", file=sys.stderr)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{a.config}: B={B} T={T} d={d} threads={a.threads}  median {med * 1e3:.3f} ms  "
              f"min {times[0] * 1e3:.3f} ms  ({len(times)} runs)  loss {loss:.6g}  "
              f"{r['tokens_per_s']:.0f} tokens/s  peak RSS {r['peak_rss_mb']:.1f} MB  (torch {torch.__version__})")
    return 0 if math.isfinite(loss) else 1


# ----------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------

def det(shape, phase, scale):
    n = 1
    for s in shape:
        n *= s
    v = scale * torch.sin(1 + 0.37 * torch.arange(n, dtype=torch.float64) + phase)
    return v.reshape(shape)


# name: d, T, h, memory, gates, outer, chunk
REFERENCE = {
    "seed": (10, 1, 0, "linear", ("const", 0.9, 0.1, 0.1), "l1", 1),
    "seq_linear": (8, 16, 0, "linear", ("const", 0.9, 0.05, 0.05), "mse", 1),
    "seq_gated": (8, 16, 0, "linear", ("data", 0.1), "mse", 1),
    "seq_mlp": (6, 10, 12, "mlp", ("data", 0.1), "mse", 1),
    "chunked": (8, 16, 0, "linear", ("data", 0.02), "mse", 4),
}


def reference_problem(name):
    d, T, h, kind, gate_spec, outer, chunk = REFERENCE[name]
    p = {"WK": det((d, d), 1.5, 0.3), "WV": det((d, d), 2.5, 0.3), "WQ": det((d, d), 3.5, 0.3)}
    if kind == "linear":
        p["M0"] = [det((d, d), 0.5, 0.1)]
    else:
        p["M0"] = [det((h, d), 0.5, 0.3), det((d, h), 0.9, 0.3)]
    if gate_spec[0] == "data":
        p.update(wa=det((d,), 5.5, 0.2), ba=torch.tensor(-2.0, dtype=torch.float64),
                 we=det((d,), 6.5, 0.2), be=torch.tensor(1.0, dtype=torch.float64),
                 wt=det((d,), 7.5, 0.2), bt=torch.tensor(0.0, dtype=torch.float64))
    X = det((T, d), 4.5, 1.0)
    Y = X.clone() if (T == 1 and outer == "l1") else det((T, d), 8.5, 1.0)
    for t in meta_list(p):
        t.requires_grad_(True)
    return p, X[None], Y[None], kind, chunk, dict(gate_spec=gate_spec, outer=outer)


def find_reference(arg):
    if arg:
        return arg
    here = os.path.dirname(os.path.abspath(__file__))
    for build in (os.environ.get("BUILD_DIR"), os.path.join(here, "..", "build")):
        if build:
            cand = os.path.join(build, "examples", "reference_problems")
            if os.access(cand, os.X_OK):
                return cand
    return None


def check():
    ok = True

    def report(what, err, tol):
        nonlocal ok
        good = err <= tol
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {what}: max rel. difference {err:.3g} (tolerance {tol:g})")

    def rel(a, b):
        return float((a - b).abs().max() / max(b.abs().max(), 1e-300))

    dt = torch.float64
    # 1. Sequential (autograd inner gradient) vs chunked code path (closed form), chunk 1.
    p, X, Y = random_problem(3, 6, 9, "linear", 0, dtype=dt, seed=7)
    # larger gate weights than the benchmark so that the gate gradients are not tiny
    with torch.no_grad():
        for n in ("wa", "we", "wt"):
            p[n].mul_(30)
    Ls, gs = meta_gradient(p, X, Y, "linear", 1, path="sequential")
    Lc, gc = meta_gradient(p, X, Y, "linear", 1, path="chunked")
    report("sequential vs chunked (chunk 1): loss", abs(Ls.item() - Lc.item()) / abs(Ls.item()), 1e-12)
    for name, a_, b_ in zip(meta_names(p), gc, gs):
        report(f"sequential vs chunked (chunk 1): d L / d {name}", rel(a_, b_), 1e-10)

    # 2. Central finite differences of one entry of a few gradients, every code path.
    def fd(label, p, X, Y, kind, chunk, path, names):
        _, grads = meta_gradient(p, X, Y, kind, chunk, path=path)
        gmap = dict(zip(meta_names(p), grads))
        params = dict(zip(meta_names(p), meta_list(p)))
        for name in names:
            t = params[name]
            idx = tuple(min(1, s - 1) for s in t.shape)
            eps = 1e-6
            orig = t[idx].item()

            def loss_at(value):
                with torch.no_grad():
                    t[idx] = value
                return forward(p, X, Y, kind, chunk, path).item()  # autograd on: the inner gradient

            lp, lm = loss_at(orig + eps), loss_at(orig - eps)
            loss_at(orig)
            num = (lp - lm) / (2 * eps)
            ana = gmap[name][idx].item()
            err = abs(num - ana) / max(abs(ana), 1e-8)
            report(f"finite differences, {label}: d L / d {name}{list(idx)} = {ana:.10g} (numeric {num:.10g})",
                   err, 1e-6)

    fd("sequential linear", p, X, Y, "linear", 1, "sequential", ["M0[0]", "WK", "WV", "WQ", "wa", "be", "bt"])
    fd("chunked linear, chunk 3", p, X, Y, "linear", 3, "chunked", ["M0[0]", "WK", "WV", "WQ", "we", "ba"])
    pm, Xm, Ym = random_problem(2, 5, 7, "mlp", 8, dtype=dt, seed=8)
    fd("sequential mlp", pm, Xm, Ym, "mlp", 1, "sequential", ["M0[0]", "M0[1]", "WK", "WV", "wt"])

    # 3. The reference problems against the project's reference_problems example.
    ref = find_reference(ARGS.reference)
    if ref is None:
        print("skip reference problems: no reference_problems binary found (build the examples or pass --reference)")
    else:
        if os.access(ref, os.X_OK) and not ref.endswith((".json", ".jsonl", ".txt")):
            out = subprocess.run([ref], check=True, capture_output=True, text=True).stdout
        else:
            with open(ref) as f:
                out = f.read()
        expected = {r["problem"]: r for r in (json.loads(line) for line in out.splitlines() if line.strip())}
        for name in REFERENCE:
            if name not in expected:
                report(f"reference problem {name}: missing from {ref}", 1.0, 0.0)
                continue
            p, X, Y, kind, chunk, kw = reference_problem(name)
            L, grads = meta_gradient(p, X, Y, kind, chunk, **kw)
            e = expected[name]
            err = abs(L.item() - e["loss"]) / abs(e["loss"])
            for n, g in zip(meta_names(p), grads):
                want = torch.tensor(e["grads"][n], dtype=dt)
                err = max(err, rel(g.reshape(-1), want))
            report(f"reference problem {name} (loss {L.item():.12g}) vs {os.path.basename(ref)}", err, 1e-9)
    print("check passed" if ok else "check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(check() if ARGS.check else bench(ARGS))
