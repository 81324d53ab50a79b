"""mnemo_torch.AdamW against torch.optim.AdamW / Adam (float64: the same update, to rounding),
its state dict both ways, clipping against torch's clip_grad_norm_, the refusal of
non-finite gradients (nothing written), and bad input."""

import copy

import pytest
import torch

import mnemo_torch
from conftest import make_memory

SHAPES = [(7, 5), (5,), (3, 4, 2), (1,), (64, 64)]


def tensors(seed, dtype=torch.float64, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def twin(ps):
    return [p.detach().clone().requires_grad_() for p in ps]


def set_grads(step, *lists, skip=()):
    g = torch.Generator().manual_seed(1000 + step)
    for i, p in enumerate(lists[0]):
        grad = None if i in skip else torch.randn(p.shape, generator=g, dtype=p.dtype)
        for ps in lists:
            ps[i].grad = None if grad is None else grad.clone()


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()


def worst(ps, qs):
    return max(rel(p.detach(), q.detach()) for p, q in zip(ps, qs))


def state_worst(a, b, ps, qs):
    out = 0.0
    for p, q in zip(ps, qs):
        sa, sb = a.state[p], b.state[q]
        assert float(sa["step"]) == float(sb["step"])
        out = max(out, rel(sa["exp_avg"], sb["exp_avg"]), rel(sa["exp_avg_sq"], sb["exp_avg_sq"]))
    return out


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_equals_torch_adamw_with_groups_and_late_gradients(weight_decay):
    ps = tensors(1)
    qs = twin(ps)

    def groups(ts):
        return [dict(params=ts[:2], lr=3e-2), dict(params=ts[2:], lr=1e-2, betas=(0.8, 0.99), eps=1e-6)]

    ref = torch.optim.AdamW(groups(ps), weight_decay=weight_decay)
    ours = mnemo_torch.AdamW(groups(qs), weight_decay=weight_decay)
    for step in range(25):
        # tensor 3 has no gradient for the first 5 steps (its step count lags), tensor 1
        # none at step 10: the update runs by step count.
        skip = {3} if step < 5 else ({1} if step == 10 else set())
        set_grads(step, ps, qs, skip=skip)
        ref.step()
        ours.step()
        assert worst(ps, qs) < 1e-13
    assert state_worst(ref, ours, ps, qs) < 1e-13
    assert float(ours.state[qs[3]]["step"]) == 20


def test_weight_decay_zero_is_torch_adam():
    ps = tensors(2)
    qs = twin(ps)
    ref, ours = torch.optim.Adam(ps, lr=1e-2), mnemo_torch.AdamW(qs, lr=1e-2, weight_decay=0.0)
    for step in range(10):
        set_grads(step, ps, qs)
        ref.step()
        ours.step()
    assert worst(ps, qs) < 1e-13


def test_float32():
    ps = tensors(3, torch.float32)
    qs = twin(ps)
    ref, ours = torch.optim.AdamW(ps, lr=1e-2), mnemo_torch.AdamW(qs, lr=1e-2)
    for step in range(10):
        set_grads(step, ps, qs)
        ref.step()
        ours.step()
    assert worst(ps, qs) < 1e-5
    assert all(q.dtype == torch.float32 for q in qs)


def test_clip_norm_scales_to_the_global_norm():
    # As mnemo's C++ optimizers: g * (c / ||g||) when ||g|| > c (torch's clip_grad_norm_
    # divides by ||g|| + 1e-6 instead).
    ps = tensors(4)
    qs = twin(ps)
    ref, ours = torch.optim.AdamW(ps, lr=1e-2), mnemo_torch.AdamW(qs, lr=1e-2, clip_norm=2.0)
    for step in range(10):
        set_grads(step, ps, qs)
        for p in ps:
            p.grad.mul_(1 + step)  # above the clip norm from the first step on
        for q in qs:
            q.grad.mul_(1 + step)
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in ps))
        assert norm > 2.0
        for p in ps:
            p.grad.mul_(2.0 / norm)
        ref.step()
        ours.step()
        assert abs(ours.last_grad_norm - float(norm)) < 1e-12 * float(norm)
    assert worst(ps, qs) < 1e-13


def test_state_dict_both_ways():
    base = tensors(5)
    ps, qs, rs = twin(base), twin(base), twin(base)
    ref = torch.optim.AdamW(ps, lr=1e-2)
    ours = mnemo_torch.AdamW(qs, lr=1e-2)
    for step in range(6):
        set_grads(step, ps, qs)
        ref.step()
        ours.step()
    # ours -> torch, and torch -> ours, then both go on: the same as torch all along.
    to_torch = torch.optim.AdamW(qs, lr=1e-2)
    to_torch.load_state_dict(copy.deepcopy(ours.state_dict()))
    from_torch = mnemo_torch.AdamW(rs, lr=1e-2)
    with torch.no_grad():
        for r, p in zip(rs, ps):
            r.copy_(p)
    from_torch.load_state_dict(copy.deepcopy(ref.state_dict()))
    for step in range(6, 12):
        set_grads(step, ps, qs, rs)
        ref.step()
        to_torch.step()
        from_torch.step()
    assert worst(ps, qs) < 1e-13
    assert worst(ps, rs) < 1e-13
    assert state_worst(ref, from_torch, ps, rs) < 1e-13


def test_replaced_state_tensors_are_followed():
    ps = tensors(6)
    qs = twin(ps)
    ref, ours = torch.optim.AdamW(ps, lr=1e-2), mnemo_torch.AdamW(qs, lr=1e-2)
    for step in range(3):
        set_grads(step, ps, qs)
        ref.step()
        ours.step()
    for p, q in zip(ps, qs):  # new tensors of the same values, in both
        for n in ("exp_avg", "exp_avg_sq"):
            ref.state[p][n] = ref.state[p][n].clone()
            ours.state[q][n] = ours.state[q][n].clone()
    for step in range(3, 6):
        set_grads(step, ps, qs)
        ref.step()
        ours.step()
    assert worst(ps, qs) < 1e-13
    assert state_worst(ref, ours, ps, qs) < 1e-13


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e200])
def test_non_finite_gradient_refuses_the_step(bad):
    ps = tensors(7)
    ours = mnemo_torch.AdamW(ps, lr=1e-2)
    set_grads(0, ps)
    ours.step()
    before = [p.detach().clone() for p in ps]
    state = {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in ours.state[p].items()}
             for i, p in enumerate(ps)}
    set_grads(1, ps)
    ps[2].grad.view(-1)[5] = bad
    with pytest.raises(FloatingPointError) as e:
        ours.step()
    if bad == 1e200:  # finite, but its square overflows
        assert "overflows" in str(e.value)
    else:
        assert "parameter 2 of group 0" in str(e.value) and "entry 5" in str(e.value)
    for p, b in zip(ps, before):
        assert torch.equal(p.detach(), b)
    for i, p in enumerate(ps):
        for k, v in state[i].items():
            assert torch.equal(ours.state[p][k], v)
    ps[2].grad.view(-1)[5] = 0.0
    ours.step()
    assert float(ours.state[ps[0]]["step"]) == 2


def test_bad_arguments_and_tensors():
    p = torch.zeros(3, requires_grad=True)
    for kwargs in (dict(lr=0.0), dict(lr=float("nan")), dict(eps=0.0), dict(weight_decay=-1.0),
                   dict(betas=(0.9,)), dict(betas=(1.0, 0.9)), dict(clip_norm=-1.0)):
        with pytest.raises(ValueError, match="mnemo_torch.AdamW"):
            mnemo_torch.AdamW([p], **kwargs)
    half = torch.zeros(3, dtype=torch.float16, requires_grad=True)
    half.grad = torch.ones(3, dtype=torch.float16)
    with pytest.raises(TypeError, match="float16"):
        mnemo_torch.AdamW([half]).step()
    q = torch.zeros(4, 4, requires_grad=True)
    q.grad = torch.ones(4, 8)[:, ::2]
    with pytest.raises(TypeError, match="non-contiguous"):
        mnemo_torch.AdamW([q]).step()
    s = torch.zeros(4, requires_grad=True)
    s.grad = torch.ones(4).to_sparse()
    with pytest.raises(TypeError, match="sparse"):
        mnemo_torch.AdamW([s]).step()


def test_zero_grad():
    ps = tensors(8)
    ours = mnemo_torch.AdamW(ps)
    set_grads(0, ps)
    ours.zero_grad()
    assert all(p.grad is not None and not p.grad.any() for p in ps)
    ours.zero_grad(set_to_none=True)
    assert all(p.grad is None for p in ps)


def test_trains_a_memory_as_torch_adamw_does():
    mem = make_memory("linear")
    twin_mem = copy.deepcopy(mem)
    ref = torch.optim.AdamW(mem.parameters(), lr=1e-2)
    ours = mnemo_torch.AdamW(twin_mem.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(9)
    for _ in range(5):
        x = torch.randn(2, 7, 6, generator=g, dtype=torch.float64)
        target = torch.randn(2, 7, 6, generator=g, dtype=torch.float64)
        for m, o in ((mem, ref), (twin_mem, ours)):
            o.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(m(x), target).backward()
            o.step()
    assert worst(list(mem.parameters()), list(twin_mem.parameters())) < 1e-12
