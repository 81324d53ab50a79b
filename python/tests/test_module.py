"""NeuralMemory as a torch module: parameters, nn.Sequential, streaming, float32, retain_graph,
bad input and the on-disk cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mnemo_torch
from mnemo_torch import _build

from conftest import CONFIGS, fill_parameters, make_memory, reference_forward, tokens


def test_parameters_come_from_the_library(memories):
    mem = memories["linear"]
    names = dict(mem.named_parameters())
    assert set(names) == {"M0_0", "WK", "WV", "WQ", "wa", "ba", "we", "be", "wt", "bt"}
    assert names["M0_0"].shape == (6, 6) and names["wa"].shape == (6,) and names["ba"].shape == ()
    assert mem.mnemo_names["M0_0"] == "M0[0]"
    assert mem.hyper_names == ["theta_max"]
    mlp = memories["mlp"]  # W1 (8, 4), W2 (4, 8), b1 (8,), b2 (4,)
    shapes = {n: tuple(p.shape) for n, p in mlp.named_parameters()}
    assert shapes["M0_0"] == (8, 4) and shapes["M0_1"] == (4, 8) and shapes["M0_2"] == (8,) and shapes["M0_3"] == (4,)
    const = memories["const_kq"]
    assert set(dict(const.named_parameters())) == {"M0_0", "WK", "WV", "WQ"}
    assert sorted(const.hyper_names) == ["alpha", "eta", "theta"]
    assert "gates=const" in repr(const)


def test_inside_sequential(memories):
    """An embedding, a memory, a readout: every gradient (the memory's and the linear
    layers') against the same stack around the reference memory."""
    torch.manual_seed(0)
    mem = memories["linear"]
    d = mem.config.dim
    first, last = nn.Linear(3, d).double(), nn.Linear(d, 2).double()
    model = nn.Sequential(first, mem, last)
    x = tokens(2, 7, 3, seed=9)
    target = tokens(2, 7, 2, seed=10)
    model.zero_grad()
    loss = ((model(x) - target) ** 2).mean()
    loss.backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}

    P = {mem.mnemo_names[n]: p.detach().clone().requires_grad_(True) for n, p in mem.named_parameters()}
    f = nn.Linear(3, d).double()
    l = nn.Linear(d, 2).double()
    f.load_state_dict(first.state_dict())
    l.load_state_dict(last.state_dict())
    h = f(x)
    y, _ = reference_forward(mem, h, P)
    ref_loss = ((l(y) - target) ** 2).mean()
    ref_loss.backward()
    assert abs(loss.item() - ref_loss.item()) < 1e-12
    for n, p in mem.named_parameters():
        assert (got["1." + n] - P[mem.mnemo_names[n]].grad).abs().max() < 1e-10, n
    for mod, prefix in ((f, "0."), (l, "2.")):
        for n, p in mod.named_parameters():
            assert (got[prefix + n] - p.grad).abs().max() < 1e-10, prefix + n
    model.zero_grad()


@pytest.mark.parametrize("name,chunk,split", [("linear", 1, 4), ("linear", 4, 5), ("mlp", 1, 3), ("mlp", 3, 4),
                                              ("const_kq", 4, 6)])
def test_streaming_equals_one_call(memories, name, chunk, split):
    """Two pieces, the second from the first's state, give the retrievals, final state and
    gradients (through the state) of one call."""
    mem = memories[name]
    mem.chunk = chunk
    try:
        d = mem.config.dim
        x = tokens(2, 9, d, seed=11)
        G = tokens(2, 9, d, seed=12)
        params = list(mem.parameters())

        xa = x.clone().requires_grad_(True)
        y, state = mem(xa, return_state=True)
        g_one = torch.autograd.grad((G * y).sum() + state.values.sum(), [xa] + params)

        xb = x.clone().requires_grad_(True)
        y1, s1 = mem(xb[:, :split].contiguous(), return_state=True)
        y2, s2 = mem(xb[:, split:].contiguous(), state=s1, return_state=True)
        y12 = torch.cat([y1, y2], dim=1)
        g_two = torch.autograd.grad((G * y12).sum() + s2.values.sum(), [xb] + params)

        assert (y12 - y).abs().max() < 1e-12
        assert (s2.values - state.values).abs().max() < 1e-12
        assert torch.equal(s2.position, state.position) and s2.position.tolist() == [9, 9]
        assert s1.position.tolist() == [split, split]
        for a, b in zip(g_one, g_two):
            assert (a - b).abs().max() < 1e-12
    finally:
        mem.chunk = 1


def test_threads_give_the_same_results(memories):
    """run_options::threads: the batch's sequences on two threads, the same numbers."""
    mem = memories["mlp"]
    x = tokens(3, 7, 4)
    G = tokens(3, 7, 4, seed=13)
    results = []
    for threads in (1, 2):
        mem.threads = threads
        xt = x.clone().requires_grad_(True)
        y = mem(xt)
        results.append([y] + list(torch.autograd.grad((G * y).sum(), [xt] + list(mem.parameters()))))
    mem.threads = 1
    for a, b in zip(*results):
        assert (a - b).abs().max() < 1e-12


def test_no_grad_and_unused_outputs(memories):
    mem = memories["linear"]
    x = tokens(2, 6, 6)
    with torch.no_grad():
        y0 = mem(x)
    assert not y0.requires_grad
    # Only the state used downstream: the retrievals' gradient is zero.
    y, state = mem(x, return_state=True)
    state.values.sum().backward()
    assert mem.M0_0.grad is not None
    mem.zero_grad()


def test_retain_graph_backward_twice(memories):
    """A mnemo context serves one backward; a second one through the same graph recomputes it."""
    mem = memories["mlp"]
    x = tokens(2, 6, 4).requires_grad_(True)
    y = mem(x)
    g1 = torch.autograd.grad(y.sum(), [x, mem.M0_0], retain_graph=True)
    g2 = torch.autograd.grad((2 * y).sum(), [x, mem.M0_0])
    assert (2 * g1[0] - g2[0]).abs().max() < 1e-12 and (2 * g1[1] - g2[1]).abs().max() < 1e-12


def test_deepcopy_and_pickle(memories, tmp_path):
    """copy.deepcopy and torch.save of the whole module: the same retrievals after."""
    import copy

    mem = memories["linear"]
    x = tokens(2, 5, 6)
    y = mem(x)
    twin = copy.deepcopy(mem)
    assert (twin(x) - y).abs().max() == 0
    torch.save(mem, tmp_path / "mem.pt")
    loaded = torch.load(tmp_path / "mem.pt")
    assert (loaded(x) - y).abs().max() == 0


def test_float32_agrees_with_float64(memories):
    """The float32 build (another configuration: .float() loads it) against float64."""
    mem64 = memories["linear"]
    mem32 = make_memory("linear").float()
    mem32.load_state_dict({k: v.float() for k, v in mem64.state_dict().items()})
    mem32.theta_max = mem64.theta_max
    x = tokens(2, 8, 6)
    y64 = mem64(x)
    x32 = x.float().requires_grad_(True)
    y32 = mem32(x32)
    assert y32.dtype == torch.float32
    assert (y32.double() - y64).abs().max() < 1e-5
    y32.sum().backward()
    x64 = x.clone().requires_grad_(True)
    mem64.zero_grad()
    mem64(x64).sum().backward()
    assert (x32.grad.double() - x64.grad).abs().max() < 1e-4
    assert (mem32.WK.grad.double() - mem64.WK.grad).abs().max() < 1e-4
    mem64.zero_grad()


# ------------------------------------------------------------------------------------------
# Bad input: a clear Python exception, never a crash.

def _raises(exc, match, f, *args, **kwargs):
    with pytest.raises(exc, match=match):
        f(*args, **kwargs)


def test_bad_input(memories):
    mem = memories["linear"]
    x = tokens(2, 6, 6)
    _raises(TypeError, "must be a torch.Tensor", mem, x.numpy())
    _raises(TypeError, "dtype torch.float32", mem, x.float())
    _raises(ValueError, r"shape \(B, T, 6\)", mem, x[0])
    _raises(ValueError, r"shape \(B, T, 6\)", mem, tokens(2, 6, 5))
    _raises(ValueError, "not contiguous", mem, x.transpose(0, 1))
    _raises(ValueError, "at least one sequence", mem, x[:, :0])
    _raises(ValueError, "CPU only", mem, torch.empty((2, 6, 6), dtype=torch.float64, device="meta"))
    bad = x.clone()
    bad[1, 4, 2] = float("nan")
    _raises(ValueError, "sequence 1, token 4, feature 2 is not finite", mem, bad)
    _, state = mem(x, return_state=True)
    _raises(ValueError, r"state's values have shape", mem, x[:1], state=state)
    _raises(TypeError, "MemoryState", mem, x, state=state.values)
    _raises(TypeError, "state's values have dtype", mem, x, state=(state.values.float(), state.position))
    _raises(ValueError, "position", mem, x, state=(state.values, state.position.int()))
    mem.chunk = 0
    try:
        _raises(ValueError, "chunk must be", mem, x)
    finally:
        mem.chunk = 1


def test_divergence(memories):
    # An inner step far too large for the keys (docs/memory.md#divergence): the forward stops
    # with FloatingPointError naming the sequence and the token, and no gradient is written.
    mem = memories["linear"]
    x = tokens(2, 200, 6) * 30
    mem.zero_grad()
    theta_max = mem.theta_max
    mem.theta_max = 1e4
    try:
        _raises(FloatingPointError, r"the memory diverged in sequence 0 at token \d+", mem, x)
    finally:
        mem.theta_max = theta_max
    assert all(p.grad is None or not p.grad.any() for p in mem.parameters())
    assert torch.isfinite(mem(x / 30)).all()  # the memory still runs: unit-norm tokens stay finite


def test_bad_arguments():
    _raises(ValueError, "model must be", mnemo_torch.NeuralMemory, 4, model="conv")
    _raises(ValueError, "gates must be", mnemo_torch.NeuralMemory, 4, gates="learned")
    _raises(TypeError, "dtype must be", mnemo_torch.NeuralMemory, 4, dtype=torch.int32)
    _raises(ValueError, "chunk must be", mnemo_torch.NeuralMemory, 4, chunk=0)
    _raises(ValueError, "dim must be", mnemo_torch.NeuralMemory, 0)
    _raises(ValueError, "activation must be", mnemo_torch.NeuralMemory, 4, model="mlp", activation="tanh")
    _raises(ValueError, "hidden and depth are for", mnemo_torch.NeuralMemory, 4, hidden=8)
    _raises(ValueError, "hidden and depth are for", mnemo_torch.NeuralMemory, 4, depth=3)
    _raises(ValueError, "depth .* must be an int >= 2", mnemo_torch.NeuralMemory, 4, model="mlp", depth=1)
    _raises(ValueError, r"depth=3 does not match hidden=\[8\]", mnemo_torch.NeuralMemory, 4, model="mlp",
            hidden=[8], depth=3)
    _raises(ValueError, "12 memory tensors; mnemo holds at most 10", mnemo_torch.NeuralMemory, 4, model="mlp",
            depth=6, bias=True)
    _raises(ValueError, "inner_loss must be", mnemo_torch.NeuralMemory, 4, inner_loss="l3")
    _raises(ValueError, "huber_delta must be a positive number", mnemo_torch.NeuralMemory, 4, inner_loss="huber",
            huber_delta=0.0)
    _raises(ValueError, "huber_delta=1e-09 is below 1e-6", mnemo_torch.NeuralMemory, 4, inner_loss="huber",
            huber_delta=1e-9)
    _raises(ValueError, "rule must be", mnemo_torch.NeuralMemory, 4, rule="adam")
    _raises(ValueError, "orthogonalises matrices", mnemo_torch.NeuralMemory, 4, model="mlp", bias=True,
            rule="newton_schulz")
    _raises(ValueError, "dim_head must be", mnemo_torch.NeuralMemory, 4, dim_head=0)


def test_heads_and_options_shape_the_parameters(memories):
    """dim_head sets the projections' and the retrievals' size; depth the MLP's layers."""
    mem = memories["huber_delta"]
    assert mem.WK.shape == (3, 5) and mem.M0_0.shape == (3, 3) and mem.dim_out == 3
    assert mem(tokens(2, 4, 5)).shape == (2, 4, 3)
    deep = memories["mlp_deep"]  # 4 -> 5 -> 5 -> 4
    shapes = {n: tuple(p.shape) for n, p in deep.named_parameters()}
    assert shapes["M0_0"] == (5, 4) and shapes["M0_1"] == (5, 5) and shapes["M0_2"] == (4, 5)
    assert "M0_3" not in shapes
    ns = memories["newton_schulz"]  # a layer norm's scale, initially 1
    assert dict(ns.named_parameters())["ln_scale"].shape == (4,)
    assert (mnemo_torch.NeuralMemory(4, layer_norm=True, gates="const", inner_loss="dot", rule="newton_schulz",
                                     dtype=torch.float64).ln_scale == 1).all()
    assert "inner_loss=huber(delta=0.25), rule=delta" in repr(mem)


def test_extension_checks_its_arguments(memories):
    """The compiled functions check everything themselves too (called directly)."""
    mem = memories["linear"]
    ext = mem._extension(torch.float64)
    params = [p.detach() for p in mem.parameters()]
    hyper = mem.hyperparameters()
    x = tokens(2, 6, 6)
    _raises(TypeError, "dtype", ext.forward, x.float(), params, hyper)
    _raises(ValueError, "parameter WK has shape", ext.forward, x, [p if n != "WK" else p[:5] for n, p in
                                                                  zip(mem.mnemo_names, params)], hyper)
    _raises(ValueError, "parameter tensors given", ext.forward, x, params[:-1], hyper)
    _raises(ValueError, "hyperparameters given", ext.forward, x, params, [])
    _raises(ValueError, "not contiguous", ext.forward, x.transpose(0, 1).contiguous().transpose(0, 1), params, hyper)
    y, ctx, _, _ = ext.forward(x, params, hyper)
    _raises(ValueError, "dY is", ext.backward, ctx, torch.zeros(2, 5, 6, dtype=torch.float64))
    ext.backward(ctx, torch.ones_like(y))
    _raises(ValueError, "already taken", ext.backward, ctx, torch.ones_like(y))


# ------------------------------------------------------------------------------------------
# The cache: a new process loads every configuration the tests built from disk.

def test_cached_load_in_a_new_process(memories):
    code = (
        "import json, sys, time; t = time.perf_counter(); import torch; t_torch = time.perf_counter() - t\n"
        f"sys.path.insert(0, {str(Path(mnemo_torch.__file__).parents[1])!r})\n"
        "import mnemo_torch; from mnemo_torch import _build, Config\n"
        "out = []\n"
        "for c in json.loads(sys.argv[1]):\n"
        "    c['hidden'] = tuple(c['hidden']); c['huber_delta'] = tuple(c['huber_delta'])\n"
        "    _build.load(Config(**c)); e = _build.last_load\n"
        "    out.append(dict(config=e['config'].describe(), compiled=e['compiled'], seconds=e['seconds']))\n"
        "print(json.dumps(dict(torch_import=t_torch, loads=out)))\n")
    configs = [dict(m.config.__dict__) for m in memories.values()]
    r = subprocess.run([sys.executable, "-c", code, json.dumps(configs)], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    print(result)
    for e in result["loads"]:
        assert not e["compiled"], e
        assert e["seconds"] < 10, e


def test_prebuild_lists_and_refuses(capsys):
    from mnemo_torch import prebuild

    assert prebuild.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "linear64: dim=64, model=linear, gates=data, dtype=float32" in out
    assert prebuild.main(["conv3d"]) == 2
    assert "unknown configuration(s) conv3d" in capsys.readouterr().err
