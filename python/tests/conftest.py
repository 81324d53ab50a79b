"""Shared set-up of the mnemo_torch tests: the package from this repository, the memories
the tests use (each configuration is compiled once, on first use, and cached on disk: the
tests reuse a few configurations), and a pure-PyTorch reference of the same memory."""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mnemo_torch  # noqa: E402
from mnemo_torch import _build  # noqa: E402

torch.set_num_threads(1)

# The configurations the tests use (name -> NeuralMemory arguments). Chunk sizes and
# hyperparameters are run-time choices: they need no other build.
CONFIGS = {
    "linear": dict(dim=6, model="linear", gates="data"),
    "mlp": dict(dim=4, model="mlp", hidden=8, activation="silu", bias=True, residual=True, gates="data"),
    "const_kq": dict(dim=5, model="linear", gates="const", normalize_kq=True),
    # The other inner losses, rules and model parts: a Huber delta rule with smaller heads,
    # a 3-layer MLP with normalised momentum, Newton-Schulz on a dot loss with a layer norm.
    # (A 3-layer MLP with a layer norm takes about 4 minutes and 3.5 GB to compile.)
    "huber_delta": dict(dim=5, dim_head=3, model="linear", gates="data", inner_loss="huber", huber_delta=0.25,
                        rule="delta"),
    "mlp_deep": dict(dim=4, model="mlp", depth=3, hidden=5, activation="gelu_exact", residual=True, gates="data",
                     rule="normalized_momentum"),
    "newton_schulz": dict(dim=4, model="linear", layer_norm=True, gates="const", inner_loss="dot",
                          rule="newton_schulz"),
}


def fill_parameters(mem: mnemo_torch.NeuralMemory, seed: int) -> None:
    """Deterministic, well-conditioned values: projections and weights of scale 1/sqrt(fan_in)
    (times 0.8), gate weights 0.3/sqrt(d), biases set to gate values away from saturation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in mem.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.8 / p.shape[1] ** 0.5)
            elif name == "ln_scale":
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            elif p.dim() == 1:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3 / p.shape[0] ** 0.5)
        for name, value in (("ba", -1.5), ("be", 0.5), ("bt", 0.2)):
            if hasattr(mem, name):  # the delta rule has no eta
                getattr(mem, name).fill_(value)
    mem.theta_max = 0.3
    mem.eta, mem.alpha, mem.theta = 0.8, 0.05, 0.25


def make_memory(name: str, chunk: int = 1, seed: int = 1, dtype=torch.float64) -> mnemo_torch.NeuralMemory:
    mem = mnemo_torch.NeuralMemory(**CONFIGS[name], chunk=chunk, dtype=dtype)
    fill_parameters(mem, seed)
    return mem


def tokens(B: int, T: int, d: int, seed: int = 2, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn((B, T, d), generator=g, dtype=torch.float64) / d ** 0.5).to(dtype)


# ------------------------------------------------------------------------------------------
# The reference: the Titans step in plain PyTorch, the inner gradient by autograd with
# create_graph=True, so that the outer backward differentiates it again (double backward).

def _act(name, z):
    if name == "silu":
        return z * torch.sigmoid(z)
    if name == "relu":
        return torch.relu(z)
    if name in ("gelu", "gelu_tanh"):
        return torch.nn.functional.gelu(z, approximate="tanh")
    if name == "gelu_exact":
        return torch.nn.functional.gelu(z)
    raise ValueError(name)


def reference_model(cfg, k, W, P=None):
    """M(k) for the memory tensors W (mnemo's order: the weights, then the biases) and the
    meta-parameters P (the layer norm's scale)."""
    if cfg.model == "linear":
        out = W[0] @ k
    else:
        depth = len(cfg.hidden) + 1
        h = k
        for l in range(depth):
            h = W[l] @ h
            if cfg.bias:
                h = h + W[depth + l]
            if l + 1 < depth:
                h = _act(cfg.activation, h)
        out = h
    if cfg.layer_norm:
        c = out - out.mean()
        out = P["ln_scale"] * (c / torch.sqrt((c * c).mean() + 1e-5))
    return k + out if cfg.residual else out


def reference_inner_loss(cfg, pred, v):
    r = pred - v
    if cfg.inner_loss == "l2":
        return torch.sum(r * r)
    if cfg.inner_loss == "huber":
        delta = cfg.huber_delta[0] / cfg.huber_delta[1]
        return torch.sum(torch.where(r.abs() <= delta, 0.5 * r * r, delta * (r.abs() - 0.5 * delta)))
    if cfg.inner_loss == "l1":
        return torch.sum(r.abs())
    if cfg.inner_loss == "dot":
        return -torch.sum(pred * v)
    raise ValueError(cfg.inner_loss)


def reference_rule(cfg, m, s, g, alpha, eta, theta):
    """The next (memory tensor, surprise) of one tensor: mnemo's rules, written out."""
    if cfg.rule == "delta":
        return (1 - alpha) * m - theta * g, s
    s = eta * s - theta * g
    if cfg.rule == "titans":
        return (1 - alpha) * m + s, s
    unit = s / torch.sqrt(torch.sum(s * s) + 1e-12)
    if cfg.rule == "normalized_momentum":
        return (1 - alpha) * m + theta * unit, s
    if cfg.rule == "newton_schulz":
        x = unit
        for _ in range(3):
            x = 1.5 * x - 0.5 * (x @ (x.T @ x))
        return (1 - alpha) * m + theta * x, s
    raise ValueError(cfg.rule)


def reference_forward(mem, x, params=None, state=None):
    """The retrievals (B, T, d_out) of mnemo's memory `mem`, computed step by step, and
    each sequence's final (M, S, G, position).

    Sequential form (chunk 1): token t takes its inner gradient at the memory before it.
    Chunked form (chunk b): at the memory at the start of its chunk, the chunk's memory G
    being set to M at every position (tokens seen, over all calls) that is a multiple of b.
    Every update is applied token by token with the token's own gates.
    """
    cfg = mem.config
    P = dict(params) if params is not None else {mem.mnemo_names[n]: p for n, p in mem.named_parameters()}
    n = sum(1 for k in P if k.startswith("M0["))
    b = mem.chunk
    B, T, _ = x.shape
    ys, finals = [], []
    for s in range(B):
        if state is None:
            M = [P[f"M0[{i}]"] for i in range(n)]
            S = [torch.zeros_like(m) for m in M]
            G = list(M)
            pos = 0
        else:
            M, S, G, pos = state[s]
        y_s = []
        for t in range(T):
            xt = x[s, t]
            k, v, q = P["WK"] @ xt, P["WV"] @ xt, P["WQ"] @ xt
            if cfg.normalize_kq:
                k = k / torch.sqrt(torch.sum(k * k))
                q = q / torch.sqrt(torch.sum(q * q))
            if cfg.gates == "data":
                alpha = torch.sigmoid(P["wa"] @ xt + P["ba"])
                eta = torch.sigmoid(P["we"] @ xt + P["be"]) if "we" in P else None
                theta = mem.theta_max * torch.sigmoid(P["wt"] @ xt + P["bt"])
            else:
                alpha, eta, theta = mem.alpha, mem.eta, mem.theta
            if pos % b == 0:
                G = list(M)
            at = G if b > 1 else M
            inner = reference_inner_loss(cfg, reference_model(cfg, k, at, P), v)
            g = torch.autograd.grad(inner, at, create_graph=True)
            new = [reference_rule(cfg, mi, si, gi, alpha, eta, theta) for mi, si, gi in zip(M, S, g)]
            M, S = [m for m, _ in new], [s_ for _, s_ in new]
            y_s.append(reference_model(cfg, q, M, P))
            pos += 1
        ys.append(torch.stack(y_s))
        finals.append((M, S, G, pos))
    return torch.stack(ys), finals


@pytest.fixture(scope="session")
def memories():
    """One NeuralMemory per configuration (built on first use), float64, chunk 1."""
    return {name: make_memory(name) for name in CONFIGS}


def pytest_terminal_summary(terminalreporter):
    if not _build.load_log:
        return
    terminalreporter.section("mnemo_torch: extension loads")
    for e in _build.load_log:
        how = "compiled" if e["compiled"] else "loaded from the disk cache"
        terminalreporter.write_line(f"{e['config'].describe()}: {how} in {e['seconds']:.2f} s")
