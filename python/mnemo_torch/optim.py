"""AdamW in one call of mnemo's kernel for every parameter.

``torch.optim.AdamW`` steps each tensor with a few tensor operations: for the small tensors
of a memory (ten of 4096 entries for a linear memory of d = 64) that costs more than the
arithmetic itself (0.15 ms a step against 0.02 ms). ``mnemo_torch.AdamW`` is the same
update (``mnemo::train::adamw_update``, the update of mnemo's C++ optimizer) over all the
parameters in one call, for any CPU parameters of a model (not only a memory's).

    opt = mnemo_torch.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    loss.backward()
    opt.step()

What it shares with ``torch.optim.AdamW``: the arguments ``lr``, ``betas``, ``eps``,
``weight_decay`` (decoupled; 0 gives ``torch.optim.Adam``'s update), parameter groups, and
the state's layout (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter), so a state dict
moves between the two. What it adds, as mnemo's optimizers: ``clip_norm`` (clip the
gradients of all the parameters to this global l2 norm first; 0: none) and a refusal of
non-finite gradients: a NaN or infinite gradient raises ``FloatingPointError`` naming the
parameter and the entry, and the step does not happen (the parameters and the state are as
they were; ``torch.optim.AdamW`` would write the NaN into them). What it does not take:
``amsgrad``, ``maximize``, CUDA or sparse tensors, dtypes other than float32 and float64.
The parameters and their gradients must be contiguous (a ``nn.Parameter`` made by torch
is); anything else raises ``ValueError`` or ``TypeError`` at the step.
"""

from __future__ import annotations

import ctypes
import math
from typing import Iterable

import torch

from ._build import optimizer_kernels

_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}


def _pointers(tensors):
    return (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])


class AdamW(torch.optim.Optimizer):
    """torch.optim.AdamW's update with mnemo's kernel, all parameters in one call (see the
    module's documentation)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, clip_norm: float = 0.0):
        def finite(name, v, least, strict):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or \
                    (v <= least if strict else v < least):
                rel = ">" if strict else ">="
                raise ValueError(f"mnemo_torch.AdamW: {name} must be a finite number {rel} {least}, not {v!r}")

        finite("lr", lr, 0.0, True)
        finite("eps", eps, 0.0, True)
        finite("weight_decay", weight_decay, 0.0, False)
        finite("clip_norm", clip_norm, 0.0, False)
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(f"mnemo_torch.AdamW: betas must be a pair (beta1, beta2), not {betas!r}")
        for i, b in enumerate(betas):
            if not isinstance(b, (int, float)) or isinstance(b, bool) or not 0.0 <= b < 1.0:
                raise ValueError(f"mnemo_torch.AdamW: betas[{i}] = {b!r} is out of range [0, 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.clip_norm = float(clip_norm)
        self._lib = optimizer_kernels()
        self.last_grad_norm = 0.0
        self._plan_key, self._plan_runs = None, None

    def _plan(self, items):
        """Per (group, dtype, step count): the parameters and the pointer arrays of them and
        their state (checked once, kept while the same tensors step together)."""
        key = tuple((gi, p.data_ptr()) for gi, p in items)
        if key == self._plan_key:
            return self._plan_runs
        for gi, p in items:
            where = f"a parameter of group {gi} (shape {tuple(p.shape)})"
            if p.device.type != "cpu":
                raise ValueError(f"mnemo_torch.AdamW: {where} is on {p.device}; the kernel runs on the CPU only")
            if p.dtype not in _SUFFIX:
                raise TypeError(f"mnemo_torch.AdamW: {where} is {p.dtype}; the kernel takes float32 or float64")
            if not p.is_contiguous():
                raise ValueError(f"mnemo_torch.AdamW: {where} is not contiguous")
            st = self.state.get(p)
            if st and not all(isinstance(st.get(n), torch.Tensor) and st[n].is_contiguous() and st[n].shape == p.shape
                              and st[n].dtype == p.dtype and st[n].device == p.device
                              for n in ("exp_avg", "exp_avg_sq")):
                raise ValueError(f"mnemo_torch.AdamW: the state of {where} does not match it (a state dict of "
                                 "another model?)")
        runs = {}
        for gi, p in items:
            st = self.state.get(p)
            t = int(st["step"].item()) if st else 0
            runs.setdefault((gi, p.dtype, t), []).append(p)
        plan = []
        for (gi, dtype, t), ps in runs.items():
            # The step counts of a run: views of one tensor (one add a step for all of them).
            steps = torch.full((len(ps),), float(t))
            for i, p in enumerate(ps):
                if p in self.state and self.state[p]:
                    self.state[p]["step"] = steps[i]
            plan.append(dict(group=self.param_groups[gi], suffix=_SUFFIX[dtype], dtype=dtype, step=t, params=ps,
                             shapes=[p.shape for p in ps], p=_pointers(ps), steps=steps,
                             sizes=(ctypes.c_size_t * len(ps))(*[p.numel() for p in ps])))
        self._plan_key, self._plan_runs = key, plan
        return plan

    def _state_is_planned(self, plan):
        state = self.state
        for run in plan:
            if "state" in run and not all(state[p]["exp_avg"] is m and state[p]["exp_avg_sq"] is v
                                          for p, (m, v) in zip(run["params"], run["state"])):
                return False
        return True

    def _grads(self, run):
        grads = []
        for p, shape in zip(run["params"], run["shapes"]):
            g = p.grad
            if g.layout is not torch.strided or g.dtype is not run["dtype"] or g.shape != shape or \
                    not g.is_contiguous():
                raise TypeError(f"mnemo_torch.AdamW: the gradient of a parameter of shape {tuple(p.shape)} is "
                                f"{g.dtype} {g.layout} {tuple(g.shape)}"
                                f"{'' if g.layout is not torch.strided or g.is_contiguous() else ' non-contiguous'}"
                                "; a dense contiguous gradient of the parameter's dtype and shape is needed")
            grads.append(g)
        return grads

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        items = [(gi, p) for gi, group in enumerate(self.param_groups) for p in group["params"] if p.grad is not None]
        if not items:
            return loss
        lib = self._lib
        plan = self._plan(items)
        if not self._state_is_planned(plan):
            # The state's tensors were replaced since (not through load_state_dict): plan again.
            self._plan_key = None
            plan = self._plan(items)
        # First every gradient is read (the global norm; a non-finite gradient refuses the
        # step before anything is written), then the updates.
        sq = 0.0
        grads = []
        for run in plan:
            gs = self._grads(run)
            gp = _pointers(gs)
            s = ctypes.c_double(0.0)
            bad = getattr(lib, f"mnemo_squared_norm_{run['suffix']}")(len(gs), gp, run["sizes"], ctypes.byref(s))
            if bad < len(gs):
                self._refuse(run["params"][bad])
            sq += s.value
            grads.append(gp)
        norm = math.sqrt(sq)
        if not math.isfinite(norm):
            raise FloatingPointError("mnemo_torch.AdamW: the gradients' global norm overflows; the step did not "
                                     "happen (the parameters and the state are unchanged)")
        self.last_grad_norm = norm
        scale = self.clip_norm / norm if 0.0 < self.clip_norm < norm else 1.0
        for run, gp in zip(plan, grads):
            if "m" not in run:
                # New state (zeros) once the step is sure to happen; pointers to it, kept.
                for i, p in enumerate(run["params"]):
                    st = self.state[p]
                    if not st:
                        st["step"] = run["steps"][i]
                        st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                        st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                states = [self.state[p] for p in run["params"]]
                run["state"] = [(s["exp_avg"], s["exp_avg_sq"]) for s in states]
                run["m"] = _pointers([m for m, _ in run["state"]])
                run["v"] = _pointers([v for _, v in run["state"]])
            group = run["group"]
            beta1, beta2 = group["betas"]
            run["step"] += 1
            getattr(lib, f"mnemo_adamw_{run['suffix']}")(
                len(run["params"]), run["p"], gp, run["m"], run["v"], run["sizes"], scale, float(group["lr"]),
                float(beta1), float(beta2), float(group["eps"]), float(group["weight_decay"]), run["step"])
            run["steps"].add_(1.0)
        return loss

    def zero_grad(self, set_to_none: bool = False):
        """torch.optim.Optimizer.zero_grad's semantics, without its profiler range (a few
        microseconds a call, as much as the update of a small memory's tensors)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._plan_key = None

    def _refuse(self, p):
        g = p.grad.reshape(-1)
        bad = (~torch.isfinite(g)).nonzero()
        what = (f"entry {int(bad[0])} is {g[int(bad[0])].item()}" if len(bad)
                else "its squared norm overflows")
        gi, pi = next((gi, pi) for gi, group in enumerate(self.param_groups)
                      for pi, q in enumerate(group["params"]) if q is p)
        raise FloatingPointError(f"mnemo_torch.AdamW: the gradient of parameter {pi} of group {gi} (shape "
                                 f"{tuple(p.shape)}): {what}; the step did not happen (the parameters and the "
                                 "state are unchanged)")


# torch.optim.Optimizer wraps a subclass's step in a profiler range on first construction
# unless the step is marked as wrapped already: a few microseconds a step, skipped.
AdamW.step.hooked = True
