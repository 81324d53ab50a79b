"""torch.autograd.gradcheck (float64, central differences) of mnemo's backward: the gradient
of the retrievals with respect to the tokens and every meta-parameter, through every inner
update, for linear and MLP memories, sequential and chunked, and across a streaming call."""

import pytest
import torch
from torch.nn.utils.stateless import functional_call

from conftest import make_memory, tokens


def _inputs(mem, x):
    names = [n for n, _ in mem.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in mem.named_parameters()]
    return names, [x.detach().clone().requires_grad_(True)] + params


@pytest.mark.parametrize("name", ["linear", "mlp", "const_kq", "huber_delta", "mlp_deep", "newton_schulz"])
@pytest.mark.parametrize("chunk", [1, 4])
def test_gradcheck(memories, name, chunk):
    mem = memories[name]
    mem.chunk = chunk
    try:
        x = tokens(2, 8, mem.config.dim, seed=3)
        names, inputs = _inputs(mem, x)

        def f(x, *params):
            return functional_call(mem, dict(zip(names, params)), (x,))

        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    finally:
        mem.chunk = 1


@pytest.mark.parametrize("name,chunk", [("linear", 1), ("linear", 4), ("mlp", 4)])
def test_gradcheck_streaming(memories, name, chunk):
    """Two calls, the second from the first's state (split mid-chunk): the gradient reaches
    the first call's inputs through the state."""
    mem = memories[name]
    mem.chunk = chunk
    try:
        x = tokens(2, 9, mem.config.dim, seed=4)
        names, inputs = _inputs(mem, x)

        def f(x, *params):
            p = dict(zip(names, params))
            y1, state = functional_call(mem, p, (x[:, :5].contiguous(),), dict(return_state=True))
            y2, state2 = functional_call(mem, p, (x[:, 5:].contiguous(),), dict(state=state, return_state=True))
            return torch.cat([y1, y2], dim=1), state2.values

        assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
    finally:
        mem.chunk = 1
