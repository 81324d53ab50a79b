"""mnemo's forward and backward against a pure-PyTorch implementation of the same memory
(the inner gradient by autograd with create_graph=True, then the outer backward through
it: double backward), float64, to 1e-10."""

import pytest
import torch

from conftest import make_memory, reference_forward, tokens

TOL = 1e-10


def _compare(mem, x, G, state_parts=True):
    """Y, dL/dX and dL/d(every parameter) for L = sum(G * Y), mnemo against the reference."""
    names = [n for n, _ in mem.named_parameters()]
    x1 = x.detach().clone().requires_grad_(True)
    y, state = mem(x1, return_state=True)
    grads = torch.autograd.grad((G * y).sum(), [x1] + list(mem.parameters()))

    x2 = x.detach().clone().requires_grad_(True)
    P = {mem.mnemo_names[n]: p.detach().clone().requires_grad_(True) for n, p in mem.named_parameters()}
    y_ref, finals = reference_forward(mem, x2, P)
    ref = torch.autograd.grad((G * y_ref).sum(), [x2] + [P[mem.mnemo_names[n]] for n in names])

    worst = {"Y": (y - y_ref).abs().max().item()}
    for n, a, b in zip(["X"] + names, grads, ref):
        worst[n] = (a - b).abs().max().item()
    if state_parts:
        # The final state: the memory tensors M, then their surprises S (then the chunk's memory).
        for s, (M, S, _, pos) in enumerate(finals):
            flat = torch.cat([m.reshape(-1) for m in M] + [t.reshape(-1) for t in S])
            worst.setdefault("state", 0.0)
            worst["state"] = max(worst["state"], (state.values[s, : flat.numel()] - flat).abs().max().item())
            assert state.position[s].item() == pos
    return worst


@pytest.mark.parametrize("name", ["linear", "mlp", "const_kq", "huber_delta", "mlp_deep", "newton_schulz"])
@pytest.mark.parametrize("chunk,T", [(1, 10), (4, 10), (3, 7), (1, 3), (2, 1)])
def test_against_double_backward(memories, name, chunk, T):
    mem = memories[name]
    mem.chunk = chunk
    try:
        d = mem.config.dim
        x = tokens(2, T, d, seed=5)
        G = tokens(2, T, mem.dim_out, seed=6)
        worst = _compare(mem, x, G)
        print(name, chunk, T, worst)
        assert max(worst.values()) < TOL, worst
    finally:
        mem.chunk = 1


def test_streaming_against_reference(memories):
    """The gradient of a loss over two calls (the second from the first's state, split
    inside a chunk) against the reference run in one piece."""
    mem = memories["linear"]
    mem.chunk = 4
    try:
        d = mem.config.dim
        x = tokens(2, 10, d, seed=7)
        G = tokens(2, 10, d, seed=8)
        names = [n for n, _ in mem.named_parameters()]
        x1 = x.detach().clone().requires_grad_(True)
        y1, st = mem(x1[:, :6].contiguous(), return_state=True)
        y2 = mem(x1[:, 6:].contiguous(), state=st)
        y = torch.cat([y1, y2], dim=1)
        grads = torch.autograd.grad((G * y).sum(), [x1] + list(mem.parameters()))

        x2 = x.detach().clone().requires_grad_(True)
        P = {mem.mnemo_names[n]: p.detach().clone().requires_grad_(True) for n, p in mem.named_parameters()}
        y_ref, _ = reference_forward(mem, x2, P)
        ref = torch.autograd.grad((G * y_ref).sum(), [x2] + [P[mem.mnemo_names[n]] for n in names])
        assert (y - y_ref).abs().max().item() < TOL
        for n, a, b in zip(["X"] + names, grads, ref):
            assert (a - b).abs().max().item() < TOL, n
    finally:
        mem.chunk = 1
