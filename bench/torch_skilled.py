#!/usr/bin/python3
"""Skilled PyTorch peer of mnemo_bench: the step of bench/torch_peer.py, written as a skilled user would.

    /usr/bin/python3 bench/torch_skilled.py --config NAME [--variant NAME|best] [--threads N] [--json]
                                            [--seconds S] [--runs N] [--warmup N] [--default-malloc]
                                            [--trial-seconds S]
    /usr/bin/python3 bench/torch_skilled.py --check

The step is exactly that of bench/torch_peer.py (the "naive" peer; see
/work/shared/bench-configs.md and reference-problems.md): B sequences of T tokens, each with
its own memory started from the shared M0; k = W_K x, v = W_V x, q = W_Q x; data gates
alpha = sigmoid(wa.x + ba), eta = sigmoid(we.x + be), theta = 0.1 sigmoid(wt.x + bt);
l(M; x) = sum_i (M(k) - v)_i^2; S_t = eta_t S_{t-1} - theta_t grad_M l(M_g; x_t);
M_t = (1 - alpha_t) M_{t-1} + S_t; y_t = M_t(q_t); L = mean (y - target)^2; then one
torch.autograd.grad(L, every meta-parameter). M_g is M_{t-1} for chunk 1 and the memory at the
start of token t's chunk otherwise. The values (random_problem), the configurations (CONFIGS),
the gates, the outer loss and the malloc tunables are torch_peer.py's own, imported from it
(the tunables read from its source), so values and loss are the same by construction.

Every variant writes the inner gradient in closed form, so the graph is first-order and the one
autograd.grad of L is the whole meta-gradient (no create_graph). For the linear memory
M(k) = W k:  grad_W l = 2 (W k - v) k^T, a rank-one matrix u k^T / (-theta) with
u_t = -2 theta_t (W_g k_t - v_t).  For the MLP memory M(k) = W2 silu(W1 k), backpropagation
by hand: z = W1 k, a = silu(z), r = W2 a - v, grad_W2 = 2 r a^T,
grad_W1 = dz k^T with dz = (2 W2^T r) * silu'(z), silu'(z) = s (1 + z (1 - s)), s = sigmoid(z).
The projections are one product X [W_K; W_V; W_Q]^T, the three gates one product X [wa we wt].

Variants (`--variant NAME`; `best`, the default, times each of the configuration's variants in
a child process for --trial-seconds and runs the fastest: "the skilled peer"):

- `loop` (every configuration). A loop over tokens with fused ops: per token
  S = baddbmm(eta S, u, k^T) (the rank-one update), M = addcmul(S, M, 1 - alpha), and, in
  sequential configurations, ONE batched product M_t [q_t, k_{t+1}] that gives the retrieval of
  t and the residual of t+1 together (for the MLP: W1_t [q_t, k_{t+1}], silu, then
  W2_t [silu(.), silu(.)]). In chunked configurations the residuals / inner gradients of a
  whole chunk are taken at the chunk-start memory as matrix products, then the token loop.
- `wy` and `wy64` (sequential linear configurations). The delta rule with momentum as a
  unit-lower-triangular solve (the WY / DeltaNet form), exact sequential semantics, no loop over
  tokens: `wy` one solve over the whole sequence, `wy64` blocks of 64 tokens carrying (W, S)
  from block to block. Within a block of b tokens (1-based t, block start state W_0, S_0),
  with f = 1 - alpha, e = eta and the decay factors
      F_{t,r} = prod_{j=r+1..t} f_j,   E_{t,s} = prod_{j=s+1..t} e_j     (r, s <= t)
  built in log space (exp of differences of cumulative sums of log f, log e: logsigmoid of the
  gate pre-activations), unrolling the recurrence gives
      S_t = E_{t,0} S_0 + sum_{s<=t} E_{t,s} u_s k_s^T
      W_t = F_{t,0} W_0 + G_t S_0 + sum_{s<=t} D_{t,s} u_s k_s^T,
      D = F E (product of the two lower-triangular b x b matrices),  G = F [E_{r,0}]_r.
  The residual of token s is taken at W_{s-1}, so with u_s = -2 theta_s (W_{s-1} k_s - v_s):
      u_s + 2 theta_s sum_{r<s} D_{s-1,r} (k_s . k_r) u_r = -2 theta_s (F_{s-1,0} W_0 k_s + G_{s-1} S_0 k_s - v_s),
  i.e. (I + A) U = R with A = 2 diag(theta) (D_prev o K K^T) strictly lower triangular
  (D_prev[s, r] = D_{s-1,r} = (F_prev E)[s, r], F_prev[s, j] = F_{s-1,j}): one
  torch.linalg.solve_triangular(unitriangular=True). Then the retrievals of the block
      Y = diag(F_{.,0}) Q W_0^T + diag(G) Q S_0^T + (D o Q K^T) U     (a masked b x b product)
  and the state at the block's end (W_b, S_b) from the last rows of D and E.
- `dual` (chunked configurations; Titans eq. 16-18, the dual form as ttt-lm-pytorch writes
  it). The same algebra with the inner gradients at the chunk-start memory, so no solve:
  linear: U = -2 diag(theta) (K W_0^T - V), Y and (W_b, S_b) as above, one chunk after the
  other, the memory materialised once per chunk. MLP (TTT-MLP's dual form): at the chunk start
  Z = K W1_0^T, A = silu(Z), R = A W2_0^T - V, dZ = (2 R W2_0) o silu'(Z),
  U1 = -diag(theta) dZ, U2 = -2 diag(theta) R; then
      Zq = diag(F_{.,0}) Q W1_0^T + diag(G) Q S1_0^T + (D o Q K^T) U1,   H = silu(Zq)
      Y  = diag(F_{.,0}) H W2_0^T + diag(G) H S2_0^T + (D o H A^T) U2
  and W1_b = F_{b,0} W1_0 + G_b S1_0 + U1^T diag(D_b) K, W2_b = ... + U2^T diag(D_b) A,
  S1_b = E_{b,0} S1_0 + U1^T diag(E_b) K, S2_b likewise.
  Chunks (and wy64's blocks) are taken with split/unbind, never by slicing (the backward of a
  slice zero-fills the whole input once per chunk: 2x on chunk64).
- `naive` (reference, never picked by `best`): torch_peer.py's own path (autograd inner gradient
  with create_graph for chunk 1, closed form per token otherwise); for the chunked MLP, which
  torch_peer.py does not have, the same autograd-per-token step at the chunk-start memory.

Configurations: torch_peer.py's, plus `mlpchunk64` (B 16, d 64, MLP h 256, T 256, chunk 16) when
torch_peer.py lacks it.

Timing, malloc tunables (re-execution with GLIBC_TUNABLES unless --default-malloc) and the JSON
line are those of torch_peer.py; the JSON line has one more field, "variant" (and, with
`best`, "trials": the median seconds of each variant's trial).

`--check`: for every configuration at small sizes (B <= 2, d 8-12, T 1-30, chunk 4-8, h 16),
float64, gate weights 30x larger than the benchmark's (so that the gate gradients are not tiny),
every variant's loss and every gradient against the naive path (max relative difference
max|a - b| / max|b| per tensor), failing above 1e-10; wy64 is also run with blocks of 5 tokens
(several blocks, an uneven last one), chunked configurations have an uneven last chunk. The
naive chunked MLP is itself checked against torch_peer.py (chunk 1 against its sequential path;
the same code for the linear memory against its chunked path).
"""

import argparse
import ast
import json
import math
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "torch_peer.py")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--variant", default="best", help="a variant of the configuration, or best (default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=0, help="at most this many timed steps (0: no cap)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up steps before timing")
    ap.add_argument("--default-malloc", action="store_true", help="keep glibc's default malloc settings")
    ap.add_argument("--trial-seconds", type=float, default=1.0, help="seconds of each variant's trial (--variant best)")
    ap.add_argument("--check", action="store_true", help="every variant against the naive peer (float64, small sizes)")
    a = ap.parse_args()
    if not a.check and not a.config:
        ap.error("--config NAME or --check is required")
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    return a


def peer_malloc_tunables():
    """torch_peer.py's MALLOC_TUNABLES, read from its source (importing it imports torch)."""
    with open(PEER) as f:
        tree = ast.parse(f.read(), PEER)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MALLOC_TUNABLES" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("torch_peer.py: MALLOC_TUNABLES not found")


ARGS = parse_args()
if __name__ == "__main__" and not ARGS.default_malloc and "GLIBC_TUNABLES" not in os.environ:
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
              dict(os.environ, GLIBC_TUNABLES=peer_malloc_tunables()))

# torch_peer parses sys.argv when imported, sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS before it
# imports torch, and sets torch's thread counts: give it an argument list of its own.
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__
_argv = sys.argv
sys.argv = [PEER, "--check", "--threads", str(ARGS.threads)]
import torch_peer as peer  # noqa: E402
sys.argv = _argv
import torch  # noqa: E402
import torch.nn.functional as Fn  # noqa: E402

assert peer.MALLOC_TUNABLES == peer_malloc_tunables()

CONFIGS = dict(peer.CONFIGS)
CONFIGS.setdefault("mlpchunk64", (16, 64, 256, "mlp", 256, 16))
THETA_MAX = peer.THETA_MAX


# ----------------------------------------------------------------------------------------
# Common pieces
# ----------------------------------------------------------------------------------------

def projections(p, X):
    """K, V, Q (B, T, d) with one product."""
    W = torch.cat([p["WK"], p["WV"], p["WQ"]], 0)
    return (X @ W.T).chunk(3, dim=-1)


def gate_parts(p, X):
    """One product for the three gates: alpha, eta, theta, log(1 - alpha), log eta, each (B, T)."""
    Z = X @ torch.stack([p["wa"], p["we"], p["wt"]], 1) + torch.stack([p["ba"], p["be"], p["bt"]])
    za, ze, zt = Z.unbind(-1)
    return (torch.sigmoid(za), torch.sigmoid(ze), THETA_MAX * torch.sigmoid(zt),
            Fn.logsigmoid(-za), Fn.logsigmoid(ze))


_MASKS = {}


def tril_mask(b, strict):
    key = (b, strict)
    if key not in _MASKS:
        _MASKS[key] = torch.ones(b, b, dtype=torch.bool).tril(-1 if strict else 0)
    return _MASKS[key]


def decay(Lrow, Lcol, strict=False):
    """exp(Lrow_t - Lcol_r) for r <= t (r < t if strict), 0 elsewhere: (B, b, b)."""
    diff = Lrow[:, :, None] - Lcol[:, None, :]
    return diff.masked_fill(~tril_mask(Lrow.shape[1], strict), float("-inf")).exp()


class Decays:
    """The decay matrices of a block/chunk of b tokens (see the module docstring)."""

    def __init__(self, lf, le, with_s0, prev=False):
        Lf, Le = lf.cumsum(1), le.cumsum(1)
        self.Fm, self.Em = decay(Lf, Lf), decay(Le, Le)
        self.D = self.Fm @ self.Em
        self.F0 = Lf.exp()
        self.E0 = Le.exp()
        self.G = (self.Fm @ self.E0[:, :, None]) if with_s0 else None  # (B, b, 1)
        if prev:  # rows for W_{s-1}: F_prev[s, j] = F_{s-1, j}, j < s
            Lfp = Lf - lf
            Fp = decay(Lfp, Lf, strict=True)
            self.Dp = Fp @ self.Em
            self.F0p = Lfp.exp()
            self.Gp = (Fp @ self.E0[:, :, None]) if with_s0 else None


def T_(W):
    return W.transpose(-1, -2)


def last_rows(U, M):
    """U^T diag(M[:, -1]) as a (B, n, b) factor: U (B, b, n), M (B, b, b)."""
    return T_(U * M[:, -1, :, None])


# ----------------------------------------------------------------------------------------
# Linear memory
# ----------------------------------------------------------------------------------------

def linear_block(K, V, Q, lf, le, th, W0, S0, solve, need_state):
    """One block (solve: sequential semantics, WY) or chunk (gradients at W0, dual form)."""
    dc = Decays(lf, le, S0 is not None, prev=solve)
    W0T = T_(W0)
    if solve:
        resid = dc.F0p[..., None] * (K @ W0T) - V
        if S0 is not None:
            resid = resid + dc.Gp * (K @ T_(S0))
        c = -2 * th[..., None]
        A = (-c) * dc.Dp * (K @ T_(K))  # strictly lower; the unit diagonal is implied
        U = torch.linalg.solve_triangular(A, c * resid, upper=False, unitriangular=True)
    else:
        U = -2 * th[..., None] * (K @ W0T - V)
    Yb = dc.F0[..., None] * (Q @ W0T) + (dc.D * (Q @ T_(K))) @ U
    if S0 is not None:
        Yb = Yb + dc.G * (Q @ T_(S0))
    if not need_state:
        return Yb, None, None
    W = dc.F0[:, -1, None, None] * W0 + last_rows(U, dc.D) @ K
    S = last_rows(U, dc.Em) @ K
    if S0 is not None:
        W = W + dc.G[:, -1, :, None] * S0
        S = S + dc.E0[:, -1, None, None] * S0
    return Yb, W, S


def linear_blocks(p, X, Y, block, solve):
    B, T, d = X.shape
    K, V, Q = projections(p, X)
    _, _, th, lf, le = gate_parts(p, X)
    block = T if block is None else block
    parts = [Z.split(block, dim=1) for Z in (K, V, Q, lf, le, th)]
    W, S = p["M0"][0], None
    ys = []
    n = len(parts[0])
    for i, (Kb, Vb, Qb, lfb, leb, thb) in enumerate(zip(*parts)):
        Yb, W, S = linear_block(Kb, Vb, Qb, lfb, leb, thb, W, S, solve, need_state=i + 1 < n)
        ys.append(Yb)
    return peer.outer_loss(torch.cat(ys, 1), Y, "mse")


def linear_loop_seq(p, X, Y):
    B, T, d = X.shape
    K, V, Q = projections(p, X)
    alpha, eta, th, _, _ = gate_parts(p, X)
    f = (1 - alpha)[:, :, None, None].unbind(1)
    e = eta[:, :, None, None].unbind(1)
    c = (-2 * th)[:, :, None].unbind(1)
    Ks, Vs = K.unbind(1), V.unbind(1)
    # [q_t, k_{t+1}] for t < T, then q_T alone: one product per token after its update
    QK = torch.stack([Q[:, :-1], K[:, 1:]], 3).unbind(1)
    qT = Q[:, -1, :, None]
    W = p["M0"][0].expand(B, d, d)
    r = Ks[0] @ p["M0"][0].T - Vs[0]
    S = None
    ys = []
    for t in range(T):
        u = (c[t] * r)[:, :, None]
        kT = Ks[t][:, None, :]
        S = u @ kT if S is None else torch.baddbmm(e[t] * S, u, kT)
        W = torch.addcmul(S, W, f[t])
        if t + 1 < T:
            y, wk = torch.bmm(W, QK[t]).unbind(2)
            r = wk - Vs[t + 1]
        else:
            y = torch.bmm(W, qT)[:, :, 0]
        ys.append(y)
    return peer.outer_loss(torch.stack(ys, 1), Y, "mse")


def linear_loop_chunked(p, X, Y, chunk):
    B, T, d = X.shape
    K, V, Q = projections(p, X)
    alpha, eta, th, _, _ = gate_parts(p, X)
    parts = [Z.split(chunk, dim=1) for Z in (K, V, Q, 1 - alpha, eta, -2 * th)]
    W = p["M0"][0].expand(B, d, d)
    S = None
    ys = []
    for Kc, Vc, Qc, fc, ec, cc in zip(*parts):
        U = cc[..., None] * (torch.matmul(Kc, T_(W)) - Vc)   # all inner gradients at the chunk start
        for u, k, q, f, e in zip(U.unbind(1), Kc.unbind(1), Qc.unbind(1),
                                 fc[:, :, None, None].unbind(1), ec[:, :, None, None].unbind(1)):
            u, kT = u[:, :, None], k[:, None, :]
            S = u @ kT if S is None else torch.baddbmm(e * S, u, kT)
            W = torch.addcmul(S, W, f)
            ys.append(torch.bmm(W, q[:, :, None])[:, :, 0])
    return peer.outer_loss(torch.stack(ys, 1), Y, "mse")


# ----------------------------------------------------------------------------------------
# MLP memory
# ----------------------------------------------------------------------------------------

def dsilu(z, s):
    return s * (1 + z * (1 - s))


def mlp_loop_seq(p, X, Y):
    B, T, d = X.shape
    K, V, Q = projections(p, X)
    alpha, eta, th, _, _ = gate_parts(p, X)
    f = (1 - alpha)[:, :, None, None].unbind(1)
    e = eta[:, :, None, None].unbind(1)
    c = (-th)[:, :, None].unbind(1)
    Ks, Vs = K.unbind(1), V.unbind(1)
    QK = torch.stack([Q[:, :-1], K[:, 1:]], 3).unbind(1)
    qT = Q[:, -1, :, None]
    W1m, W2m = p["M0"]
    h = W1m.shape[0]
    W1, W2 = W1m.expand(B, h, d), W2m.expand(B, d, h)
    z = Ks[0] @ W1m.T
    sg = torch.sigmoid(z)
    a = z * sg
    r = a @ W2m.T - Vs[0]
    S1 = S2 = None
    ys = []
    for t in range(T):
        # inner gradient at (W1_{t-1}, W2_{t-1}) by hand: grad_W2 = 2 r a^T, grad_W1 = dz k^T
        dz = 2 * torch.bmm(T_(W2), r[:, :, None])[:, :, 0] * dsilu(z, sg)
        u1, k1 = (c[t] * dz)[:, :, None], Ks[t][:, None, :]
        u2, a2 = (2 * c[t] * r)[:, :, None], a[:, None, :]
        if S1 is None:
            S1, S2 = u1 @ k1, u2 @ a2
        else:
            S1, S2 = torch.baddbmm(e[t] * S1, u1, k1), torch.baddbmm(e[t] * S2, u2, a2)
        W1, W2 = torch.addcmul(S1, W1, f[t]), torch.addcmul(S2, W2, f[t])
        if t + 1 < T:
            Z = torch.bmm(W1, QK[t])              # [W1 q_t, W1 k_{t+1}]
            SG = torch.sigmoid(Z)
            y, wa = torch.bmm(W2, Z * SG).unbind(2)
            _, z = Z.unbind(2)
            _, sg = SG.unbind(2)
            a = z * sg
            r = wa - Vs[t + 1]
        else:
            y = torch.bmm(W2, Fn.silu(torch.bmm(W1, qT)))[:, :, 0]
        ys.append(y)
    return peer.outer_loss(torch.stack(ys, 1), Y, "mse")


def mlp_chunk_gradients(Kc, Vc, thc, W1, W2):
    """Inner-gradient factors of a chunk at (W1, W2): U1 (B,b,h) with k, U2 (B,b,d) with A."""
    Z = torch.matmul(Kc, T_(W1))
    sg = torch.sigmoid(Z)
    A = Z * sg
    R = torch.matmul(A, T_(W2)) - Vc
    dZ = 2 * torch.matmul(R, W2) * dsilu(Z, sg)
    return -thc[..., None] * dZ, -2 * thc[..., None] * R, A


def mlp_loop_chunked(p, X, Y, chunk):
    B, T, d = X.shape
    K, V, Q = projections(p, X)
    alpha, eta, th, _, _ = gate_parts(p, X)
    W1m, W2m = p["M0"]
    h = W1m.shape[0]
    W1, W2 = W1m.expand(B, h, d), W2m.expand(B, d, h)
    S1 = S2 = None
    ys = []
    for Kc, Vc, Qc, fc, ec, thc in zip(*[Z.split(chunk, dim=1) for Z in (K, V, Q, 1 - alpha, eta, th)]):
        U1, U2, A = mlp_chunk_gradients(Kc, Vc, thc, W1, W2)
        for u1, u2, k, a, q, f, e in zip(U1.unbind(1), U2.unbind(1), Kc.unbind(1), A.unbind(1), Qc.unbind(1),
                                         fc[:, :, None, None].unbind(1), ec[:, :, None, None].unbind(1)):
            u1, k1, u2, a2 = u1[:, :, None], k[:, None, :], u2[:, :, None], a[:, None, :]
            if S1 is None:
                S1, S2 = u1 @ k1, u2 @ a2
            else:
                S1, S2 = torch.baddbmm(e * S1, u1, k1), torch.baddbmm(e * S2, u2, a2)
            W1, W2 = torch.addcmul(S1, W1, f), torch.addcmul(S2, W2, f)
            ys.append(torch.bmm(W2, Fn.silu(torch.bmm(W1, q[:, :, None])))[:, :, 0])
    return peer.outer_loss(torch.stack(ys, 1), Y, "mse")


def mlp_dual(p, X, Y, chunk):
    B, T, d = X.shape
    K, V, Q = projections(p, X)
    _, _, th, lf, le = gate_parts(p, X)
    W1, W2 = p["M0"]
    S1 = S2 = None
    parts = [Z.split(chunk, dim=1) for Z in (K, V, Q, lf, le, th)]
    n = len(parts[0])
    ys = []
    for i, (Kc, Vc, Qc, lfc, lec, thc) in enumerate(zip(*parts)):
        dc = Decays(lfc, lec, S1 is not None)
        U1, U2, A = mlp_chunk_gradients(Kc, Vc, thc, W1, W2)
        F0 = dc.F0[..., None]
        Zq = F0 * torch.matmul(Qc, T_(W1)) + (dc.D * (Qc @ T_(Kc))) @ U1
        if S1 is not None:
            Zq = Zq + dc.G * (Qc @ T_(S1))
        H = Fn.silu(Zq)
        Yc = F0 * torch.matmul(H, T_(W2)) + (dc.D * (H @ T_(A))) @ U2
        if S2 is not None:
            Yc = Yc + dc.G * (H @ T_(S2))
        ys.append(Yc)
        if i + 1 < n:  # the memory at the chunk's end, once per chunk
            Fb = dc.F0[:, -1, None, None]
            nW1 = Fb * W1 + last_rows(U1, dc.D) @ Kc
            nW2 = Fb * W2 + last_rows(U2, dc.D) @ A
            nS1 = last_rows(U1, dc.Em) @ Kc
            nS2 = last_rows(U2, dc.Em) @ A
            if S1 is not None:
                Gb, Eb = dc.G[:, -1, :, None], dc.E0[:, -1, None, None]
                nW1, nW2 = nW1 + Gb * S1, nW2 + Gb * S2
                nS1, nS2 = nS1 + Eb * S1, nS2 + Eb * S2
            W1, W2, S1, S2 = nW1, nW2, nS1, nS2
    return peer.outer_loss(torch.cat(ys, 1), Y, "mse")


# ----------------------------------------------------------------------------------------
# The naive reference
# ----------------------------------------------------------------------------------------

def naive_chunked_autograd(p, X, Y, kind, chunk):
    """torch_peer.py's style for any memory: autograd inner gradient (create_graph) per token
    at the chunk-start memory, out-of-place recurrence. The naive peer of mlpchunk64."""
    B = X.shape[0]
    Ks, Vs, Qs = ((X @ p[n].T).unbind(1) for n in ("WK", "WV", "WQ"))
    alpha, eta, theta = (g[:, :, None, None].unbind(1) for g in peer.gates(p, X, ("data", THETA_MAX)))
    Ms = [m.expand(B, *m.shape) for m in p["M0"]]
    Ss = [torch.zeros(B, *m.shape, dtype=m.dtype) for m in p["M0"]]
    ys = []
    Mg = Ms
    for t, (k, v, q, a, e, th) in enumerate(zip(Ks, Vs, Qs, alpha, eta, theta)):
        if t % chunk == 0:
            Mg = Ms
        inner = ((peer.memory_apply(kind, Mg, k) - v) ** 2).sum()
        gs = torch.autograd.grad(inner, Mg, create_graph=True)
        Ss = [e * S - th * g for S, g in zip(Ss, gs)]
        Ms = [(1 - a) * M + S for M, S in zip(Ms, Ss)]
        ys.append(peer.memory_apply(kind, Ms, q))
    return peer.outer_loss(torch.stack(ys, 1), Y, "mse")


def naive(p, X, Y, kind, chunk):
    if kind == "mlp" and chunk > 1:
        return naive_chunked_autograd(p, X, Y, kind, chunk)
    return peer.forward(p, X, Y, kind, chunk)


# ----------------------------------------------------------------------------------------
# Variants
# ----------------------------------------------------------------------------------------

def variants(kind, chunk):
    """name -> forward(p, X, Y) -> L, the skilled variants of a configuration."""
    if kind == "linear" and chunk == 1:
        return {"loop": linear_loop_seq,
                "wy": lambda p, X, Y: linear_blocks(p, X, Y, None, True),
                "wy64": lambda p, X, Y: linear_blocks(p, X, Y, 64, True)}
    if kind == "linear":
        return {"loop": lambda p, X, Y: linear_loop_chunked(p, X, Y, chunk),
                "dual": lambda p, X, Y: linear_blocks(p, X, Y, chunk, False)}
    if chunk == 1:
        return {"loop": mlp_loop_seq}
    return {"loop": lambda p, X, Y: mlp_loop_chunked(p, X, Y, chunk),
            "dual": lambda p, X, Y: mlp_dual(p, X, Y, chunk)}


def all_variants(kind, chunk):
    v = variants(kind, chunk)
    v["naive"] = lambda p, X, Y: naive(p, X, Y, kind, chunk)
    return v


def meta_gradient(fwd, p, X, Y):
    L = fwd(p, X, Y)
    return L, torch.autograd.grad(L, peer.meta_list(p))


# ----------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------

def trials(a, names):
    """Each variant timed in a child process (clean peak RSS): name -> median seconds."""
    out = {}
    for v in names:
        cmd = [sys.executable, os.path.abspath(__file__), "--config", a.config, "--threads", str(a.threads),
               "--json", "--variant", v, "--seconds", str(a.trial_seconds), "--warmup", "1"]
        if a.default_malloc:
            cmd.append("--default-malloc")
        r = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
        if r.returncode != 0 or not lines:
            print(f"torch_skilled: trial of {a.config}/{v} failed (exit {r.returncode}): {r.stderr.strip()[-500:]}",
                  file=sys.stderr)
            continue
        out[v] = json.loads(lines[-1])["median_s"]
        if not a.json:
            print(f"trial {a.config}/{v}: median {out[v] * 1e3:.3f} ms", file=sys.stderr)
    return out


def bench(a):
    if a.config not in CONFIGS:
        print(f"torch_skilled: unknown configuration '{a.config}' ({' '.join(sorted(CONFIGS))})", file=sys.stderr)
        return 2
    B, d, T, kind, h, chunk = CONFIGS[a.config]
    vs = all_variants(kind, chunk)
    tried = None
    variant = a.variant
    if variant == "best":
        tried = trials(a, list(variants(kind, chunk)))
        if not tried:
            return 1
        variant = min(tried, key=tried.get)
    if variant not in vs:
        print(f"torch_skilled: {a.config} has no variant '{variant}' ({' '.join(vs)} best)", file=sys.stderr)
        return 2
    fwd = vs[variant]
    p, X, Y = peer.random_problem(B, d, T, kind, h)
    r, times = peer.time_steps(a, lambda: meta_gradient(fwd, p, X, Y), B, T)
    r["variant"] = variant
    loss, med = r["loss"], r["median_s"]
    if tried is not None:
        r["trials"] = tried
    if not math.isfinite(loss):
        print(f"torch_skilled: {a.config}: loss is not finite ({loss})", file=sys.stderr)
    if a.json:
        print(json.dumps(r))
    else:
        print(f"{a.config} [{variant}]: B={B} T={T} d={d} threads={a.threads}  median {med * 1e3:.3f} ms  "
              f"min {times[0] * 1e3:.3f} ms  ({len(times)} runs)  loss {loss:.6g}  "
              f"{r['tokens_per_s']:.0f} tokens/s  peak RSS {r['peak_rss_mb']:.1f} MB  (torch {torch.__version__})")
    return 0 if math.isfinite(loss) else 1


# ----------------------------------------------------------------------------------------
# Check
# ----------------------------------------------------------------------------------------

# name: small (B, d, T, memory, h, chunk) of every configuration; uneven last chunks
SMALL = {
    "seed": (1, 10, 1, "linear", 0, 1),
    "seq64": (1, 8, 20, "linear", 0, 1),
    "batch64": (2, 8, 24, "linear", 0, 1),
    "mlp64": (2, 8, 16, "mlp", 16, 1),
    "chunk64": (2, 8, 26, "linear", 0, 4),
    "big256": (2, 12, 30, "linear", 0, 8),
    "mlpchunk64": (2, 8, 18, "mlp", 16, 4),
}


def small_problem(B, d, T, kind, h, seed):
    p, X, Y = peer.random_problem(B, d, T, kind, h, dtype=torch.float64, seed=seed)
    with torch.no_grad():  # gate gradients not tiny (as torch_peer.py --check)
        for n in ("wa", "we", "wt"):
            p[n].mul_(30)
    return p, X, Y


def check():
    torch.set_default_dtype(torch.float64)
    ok = True
    tol = 1e-10

    def rel(a, b):
        return float((a - b).abs().max() / max(b.abs().max(), 1e-300))

    def compare(label, names, ref, got):
        nonlocal ok
        (L0, g0), (L1, g1) = ref, got
        errs = {"loss": abs(L1.item() - L0.item()) / abs(L0.item())}
        for name, a_, b_ in zip(names, g1, g0):
            errs[name] = rel(a_, b_)
        worst = max(errs, key=errs.get)
        good = all(math.isfinite(e) and e <= tol for e in errs.values())
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {label}: max rel. difference {errs[worst]:.3g} ({worst}; "
              f"loss {errs['loss']:.2g}; tolerance {tol:g})")

    # The naive chunked autograd path (the naive peer of mlpchunk64) against torch_peer.py.
    for label, (B, d, T, kind, h, chunk), path in [
            ("naive chunked autograd, linear chunk 4 vs torch_peer chunked", (2, 8, 18, "linear", 0, 4), "chunked"),
            ("naive chunked autograd, mlp chunk 1 vs torch_peer sequential", (2, 8, 12, "mlp", 16, 1), "sequential")]:
        p, X, Y = small_problem(B, d, T, kind, h, seed=3)
        ref = peer.meta_gradient(p, X, Y, kind, chunk, path=path)
        compare(label, peer.meta_names(p), ref, meta_gradient(lambda p, X, Y: naive_chunked_autograd(p, X, Y, kind, chunk), p, X, Y))

    for i, (name, (B, d, T, kind, h, chunk)) in enumerate(SMALL.items()):
        p, X, Y = small_problem(B, d, T, kind, h, seed=100 + i)
        ref = meta_gradient(lambda p, X, Y: naive(p, X, Y, kind, chunk), p, X, Y)
        vs = variants(kind, chunk)
        if kind == "linear" and chunk == 1:
            vs["wy64 with blocks of 5"] = lambda p, X, Y: linear_blocks(p, X, Y, 5, True)
        size = f"B {B}, d {d}, T {T}" + (f", h {h}" if h else "") + f", chunk {chunk}"
        print(f"{name} (small: {size}; naive loss {ref[0].item():.12g})")
        for v, fwd in vs.items():
            compare(f"  {name}/{v} vs naive", peer.meta_names(p), ref, meta_gradient(fwd, p, X, Y))
    print("check passed" if ok else "check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(check() if ARGS.check else bench(ARGS))
