"""`NeuralMemory`: a mnemo memory as a torch module, and its autograd Function."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import _build

_DTYPES = {torch.float32: "float32", torch.float64: "float64"}


class MemoryState(NamedTuple):
    """Each sequence's memory after a call, to continue from in the next one (streaming).

    values:   (B, state_size), the memory tensors, their surprises and the memory at the
              current chunk's start, flat (mnemo's `memory_state::values`); differentiable:
              the next call's gradient flows back through it into the earlier call.
    position: (B,) int64, the number of tokens each sequence has seen (keeps chunks aligned
              across calls).
    """

    values: torch.Tensor
    position: torch.Tensor


def _python_name(mnemo_name: str) -> str:
    # "M0[0]" -> "M0_0": nn.Module attribute names; the others are mnemo's own ("WK", "wa", ...).
    return mnemo_name.replace("[", "_").replace("]", "")


class _MemoryFunction(torch.autograd.Function):
    """Forward and backward through mnemo's layer interface.

    The backward is mnemo's exact one (through every inner update, with the second
    derivatives of the inner gradient); it is not itself differentiable (no double backward).
    A mnemo context serves one backward: a second backward through the same graph
    (retain_graph=True, as torch.autograd.gradcheck does) runs the forward again from the
    saved inputs first.
    """

    @staticmethod
    def forward(ctx, ext, options, hyper, x, state_values, state_positions, *params):
        y, handle, values, positions = ext.forward(
            x, list(params), hyper, initial_values=state_values, initial_positions=state_positions, **options)
        ctx.ext = ext
        ctx.options = options
        ctx.hyper = hyper
        ctx.handle = handle
        ctx.has_state = state_values is not None
        ctx.save_for_backward(x, state_values, state_positions, *params)
        if positions is not None:
            ctx.mark_non_differentiable(positions)
        ctx.set_materialize_grads(False)
        return y, values, positions

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dvalues, _dpositions):
        x = None
        handle = ctx.handle
        ctx.handle = None
        if handle is None or not handle.ready:
            # A second backward through this graph: recompute the forward's context.
            x, state_values, state_positions, *params = ctx.saved_tensors
            _, handle, _, _ = ctx.ext.forward(
                x, list(params), ctx.hyper, initial_values=state_values, initial_positions=state_positions,
                **dict(ctx.options, return_state=False))
        n_params = len(ctx.needs_input_grad) - 6
        if dy is None and dvalues is None:
            return (None,) * (6 + n_params)
        if dy is None:
            dy = torch.zeros((handle.batch, handle.length, ctx.ext.d_out),
                             dtype=dvalues.dtype)
        dy = dy.contiguous()
        fa = dvalues.contiguous() if dvalues is not None else None
        # dX and the initial state's adjoint only when asked for (tokens that are data need
        # no dX: about a tenth of the backward).
        want_dx = ctx.needs_input_grad[3]
        want_ia = ctx.has_state and ctx.needs_input_grad[4]
        grads, dx, initial_adjoints = ctx.ext.backward(handle, dy, fa, token_gradient=want_dx,
                                                       initial_adjoints=want_ia)
        return (None, None, None, dx, initial_adjoints, None, *grads)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class NeuralMemory(nn.Module):
    """A test-time memory (Titans-style) over sequences, as a torch module.

    For tokens x (B, T, dim) it returns the retrievals y (B, T, dim_head): at every token
    the memory takes one step of its inner optimiser on ``||M(W_K x) - W_V x||^2`` (momentum
    ``eta``, forget gate ``alpha``, step ``theta``), then answers ``y = M(W_Q x)`` with the
    updated memory. The backward is mnemo's exact meta-gradient, through every inner update.

    Args:
        dim: the token size.
        model: ``"linear"`` (``M(k) = W k``) or ``"mlp"`` (``W_L act(... act(W_1 k) ...)``).
        hidden: the MLP's hidden size (default ``4 * dim_head``), or a sequence of sizes,
            one per hidden layer.
        depth: the MLP's number of layers (default 2: one hidden layer); with an int
            ``hidden``, every hidden layer has that size; with a sequence, ``depth`` must be
            ``len(hidden) + 1`` or None.
        activation: the MLP's activation: ``"silu"``, ``"gelu"`` (tanh form),
            ``"gelu_exact"`` (erf form) or ``"relu"``.
        bias: the MLP's layers have biases.
        residual: ``M(k) = k + inner(k)``.
        layer_norm: ``M(k) = ln_scale * normalise(inner(k))`` (a learned scale
            ``ln_scale``, initially 1; inside the residual when both are set).
        dim_head: the memory's key and value size (default ``dim``): ``W_K``, ``W_V``,
            ``W_Q`` are (dim_head, dim) and the retrievals (B, T, dim_head).
        gates: ``"data"`` (``alpha = sigmoid(wa . x + ba)``, ``eta = sigmoid(we . x + be)``,
            ``theta = theta_max * sigmoid(wt . x + bt)``, learned) or ``"const"`` (the
            hyperparameters ``eta``, ``alpha``, ``theta``).
        chunk: the chunk size: every token of a chunk takes its inner gradient at the memory
            of the chunk's start (1: sequential).
        inner_loss: ``"l2"`` (``sum (M(k) - v)^2``), ``"huber"`` (``sum huber(M(k) - v,
            huber_delta)``), ``"l1"`` (``sum |M(k) - v|``) or ``"dot"`` (``-M(k) . v``).
        huber_delta: the Huber loss's threshold (a compile-time constant: each value is
            its own build; stored as a fraction of denominator at most 10^6).
        rule: the inner update: ``"titans"`` (momentum and forgetting), ``"delta"``
            (``M = (1 - alpha) M - theta g``, no momentum), ``"normalized_momentum"``
            (the momentum's step rescaled to norm theta) or ``"newton_schulz"`` (the
            momentum orthogonalised by 3 Newton-Schulz iterations; matrices only, so no
            biases).
        normalize_kq: l2-normalise keys and queries.
        first_order: first-order meta-gradient (the inner gradient held constant).
        dtype: ``torch.float32`` or ``torch.float64``.
        theta_max, eta, alpha, theta: the hyperparameters (``theta_max`` for data gates,
            the others for constant gates; ``eta`` is unused by the delta rule); plain
            attributes, changeable between calls.
        checkpoint, threads: mnemo's run options (checkpoint interval, 0: automatic;
            threads over the batch's sequences).

    The learned tensors are nn.Parameters named after mnemo's meta-parameters (their names
    and shapes come from the compiled memory): ``M0_0``, ``M0_1``, ... (mnemo's ``M0[0]``,
    ...: the MLP's weights, then its biases), ``WK``, ``WV``, ``WQ``, with layer_norm
    ``ln_scale`` and, with data gates, ``wa``, ``ba``, ``we``, ``be``, ``wt``, ``bt``. A
    configuration not built yet is compiled on first use (about a minute) and cached on
    disk (``mnemo_torch._build``).
    """

    def __init__(self, dim: int, model: str = "linear", *, hidden: Union[int, Sequence[int], None] = None,
                 depth: Optional[int] = None, activation: str = "silu", bias: bool = False, residual: bool = False,
                 layer_norm: bool = False, dim_head: Optional[int] = None, gates: str = "data", chunk: int = 1,
                 inner_loss: str = "l2", huber_delta: float = 1.0, rule: str = "titans",
                 normalize_kq: bool = False, first_order: bool = False, dtype: torch.dtype = torch.float32,
                 theta_max: float = 0.1, eta: float = 0.9, alpha: float = 0.01, theta: float = 0.1,
                 checkpoint: int = 0, threads: int = 1):
        super().__init__()
        if not _is_int(dim) or dim < 1:
            raise ValueError(f"mnemo_torch: dim must be a positive int, not {dim!r}")
        if dim_head is None:
            dim_head = dim
        if not _is_int(dim_head) or dim_head < 1:
            raise ValueError(f"mnemo_torch: dim_head must be a positive int, not {dim_head!r}")
        if model not in ("linear", "mlp"):
            raise ValueError(f"mnemo_torch: model must be 'linear' or 'mlp', not {model!r}")
        if model == "mlp":
            if depth is not None and (not _is_int(depth) or depth < 2):
                raise ValueError(f"mnemo_torch: depth (the MLP's number of layers) must be an int >= 2, not {depth!r}")
            if hidden is None or _is_int(hidden):
                size = 4 * dim_head if hidden is None else hidden
                hidden = (size,) * ((depth or 2) - 1)
            else:
                hidden = tuple(hidden)
                if depth is not None and depth != len(hidden) + 1:
                    raise ValueError(f"mnemo_torch: depth={depth} does not match hidden={list(hidden)} "
                                     f"({len(hidden) + 1} layers)")
            if not hidden or not all(_is_int(h) and h >= 1 for h in hidden):
                raise ValueError(f"mnemo_torch: hidden must be a positive int or a sequence of them, not {hidden!r}")
            layers = len(hidden) + 1
            if layers * (2 if bias else 1) > 10:
                raise ValueError(f"mnemo_torch: an MLP memory of {layers} layers{' with biases' if bias else ''} "
                                 f"has {layers * (2 if bias else 1)} memory tensors; mnemo holds at most 10")
            if activation not in _build.ACTIVATIONS:
                raise ValueError(f"mnemo_torch: activation must be one of {sorted(_build.ACTIVATIONS)}, "
                                 f"not {activation!r}")
        else:
            if hidden is not None or depth is not None:
                raise ValueError("mnemo_torch: hidden and depth are for model='mlp'")
            hidden, activation, bias = (), "silu", False
        if gates not in ("data", "const"):
            raise ValueError(f"mnemo_torch: gates must be 'data' or 'const', not {gates!r}")
        if inner_loss not in _build.INNER_LOSSES:
            raise ValueError(f"mnemo_torch: inner_loss must be one of {list(_build.INNER_LOSSES)}, not {inner_loss!r}")
        delta = (1, 1)
        if inner_loss == "huber":
            if isinstance(huber_delta, bool) or not isinstance(huber_delta, (int, float)) or \
                    not math.isfinite(huber_delta) or huber_delta <= 0:
                raise ValueError(f"mnemo_torch: huber_delta must be a positive number, not {huber_delta!r}")
            f = Fraction(huber_delta).limit_denominator(10**6)
            if f <= 0:
                raise ValueError(f"mnemo_torch: huber_delta={huber_delta!r} is below 1e-6")
            delta = (f.numerator, f.denominator)
        if rule not in _build.RULES:
            raise ValueError(f"mnemo_torch: rule must be one of {sorted(_build.RULES)}, not {rule!r}")
        if rule == "newton_schulz" and bias:
            raise ValueError("mnemo_torch: rule='newton_schulz' orthogonalises matrices: an MLP with bias=True "
                             "has vectors among its memory tensors")
        if dtype not in _DTYPES:
            raise TypeError(f"mnemo_torch: dtype must be torch.float32 or torch.float64, not {dtype!r}")
        self._check_run_option("chunk", chunk, 1)
        self._check_run_option("checkpoint", checkpoint, 0)
        self._check_run_option("threads", threads, 0)
        self.config = _build.Config(dim=dim, model=model, hidden=hidden, activation=activation, bias=bool(bias),
                                    residual=bool(residual), gates=gates, normalize_kq=bool(normalize_kq),
                                    first_order=bool(first_order), dtype=_DTYPES[dtype],
                                    dim_head=0 if dim_head == dim else dim_head, inner_loss=inner_loss,
                                    huber_delta=delta, rule=rule, layer_norm=bool(layer_norm))
        self.chunk, self.checkpoint, self.threads = chunk, checkpoint, threads
        self.theta_max, self.eta, self.alpha, self.theta = theta_max, eta, alpha, theta
        ext = self._extension(dtype)
        self.mnemo_names = {}  # python name -> mnemo name
        for mnemo_name, shape in ext.param_info():
            name = _python_name(mnemo_name)
            self.mnemo_names[name] = mnemo_name
            self.register_parameter(name, nn.Parameter(torch.empty(tuple(shape), dtype=dtype)))
        self.hyper_names = list(ext.hyper_names())
        self.state_size = ext.state_size
        self.dim_out = ext.d_out
        self.reset_parameters()

    @staticmethod
    def _check_run_option(name, value, least):
        if not _is_int(value) or value < least:
            raise ValueError(f"mnemo_torch: {name} must be an int >= {least}, not {value!r}")

    def __getstate__(self):
        # copy.deepcopy and pickle (torch.save of the whole module): without the loaded
        # extensions, which load again on the next call.
        state = dict(self.__dict__)
        state.pop("_extensions", None)
        return state

    def _extension(self, dtype: torch.dtype):
        cache = self.__dict__.setdefault("_extensions", {})  # per dtype: no lookup per call
        ext = cache.get(dtype)
        if ext is None:
            ext = cache[dtype] = _build.load(dataclasses_replace(self.config, dtype=_DTYPES[dtype]))
        return ext

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Projections and weights ~ N(0, 1/fan_in), biases 0, ln_scale 1; the data gates
        start with a small forget gate (ba = -2), eta = sigmoid(1) and theta = theta_max / 2."""
        d = self.config.dim
        for name, p in self.named_parameters(recurse=False):
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, 1.0 / math.sqrt(p.shape[1]))
            elif name in ("wa", "we", "wt"):
                nn.init.normal_(p, 0.0, 0.1 / math.sqrt(d))
            elif name == "ln_scale":
                nn.init.ones_(p)
            else:
                nn.init.zeros_(p)
        # A gate the rule does not use (eta for the delta rule) is no parameter.
        for name, value in (("ba", -2.0), ("be", 1.0), ("bt", 0.0)):
            if hasattr(self, name):
                getattr(self, name).fill_(value)

    def hyperparameters(self) -> list:
        values = {"theta_max": self.theta_max, "eta": self.eta, "alpha": self.alpha, "theta": self.theta}
        return [float(values[n]) for n in self.hyper_names]

    def extra_repr(self) -> str:
        return f"{self.config.describe()}, chunk={self.chunk}"

    def _params(self) -> Tuple[torch.Tensor, ...]:
        registered = self._parameters  # (getattr on an nn.Module goes through __getattr__: slower)
        ps = tuple(registered[n] for n in self.mnemo_names)
        dtypes = {p.dtype for p in ps}
        if len(dtypes) != 1:
            raise TypeError(f"mnemo_torch: the memory's parameters have mixed dtypes {sorted(map(str, dtypes))}")
        for n, p in zip(self.mnemo_names, ps):
            if p.device.type != "cpu":
                raise ValueError(f"mnemo_torch: parameter {n} is on {p.device}; mnemo runs on the CPU only")
        return ps

    def forward(self, x: torch.Tensor, state: Optional[MemoryState] = None, return_state: bool = False):
        """Retrievals y (B, T, dim_head) of tokens x (B, T, dim); from `state` (a MemoryState of
        an earlier call) if given, else from M0. With return_state, returns (y, state)."""
        params = self._params()
        dtype = params[0].dtype
        if dtype not in _DTYPES:
            raise TypeError(f"mnemo_torch: the memory's parameters are {dtype}; mnemo runs in float32 or float64")
        d = self.config.dim
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"mnemo_torch: x must be a torch.Tensor of shape (B, T, {d}), not {type(x).__name__}")
        if x.device.type != "cpu":
            raise ValueError(f"mnemo_torch: x is on {x.device}; mnemo runs on the CPU only (move it with .cpu())")
        if x.dtype != dtype:
            raise TypeError(f"mnemo_torch: x has dtype {x.dtype}, the memory's parameters are {dtype} "
                            f"(convert x with .to({dtype}), or the memory with .to({x.dtype}))")
        if x.dim() != 3 or x.shape[2] != d:
            raise ValueError(f"mnemo_torch: x must have shape (B, T, {d}), not {tuple(x.shape)}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"mnemo_torch: x has shape {tuple(x.shape)}: at least one sequence of one token "
                             "is needed")
        if not x.is_contiguous():
            raise ValueError("mnemo_torch: x is not contiguous (call .contiguous() first)")
        values = positions = None
        if state is not None:
            values, positions = self._check_state(state, x.shape[0], dtype)
        ext = self._extension(dtype)
        options = dict(chunk=int(self.chunk), checkpoint=int(self.checkpoint), threads=int(self.threads),
                       return_state=bool(return_state))
        self._check_run_option("chunk", options["chunk"], 1)
        params = tuple(p if p.is_contiguous() else p.contiguous() for p in params)
        y, new_values, new_positions = _MemoryFunction.apply(ext, options, self.hyperparameters(), x, values,
                                                             positions, *params)
        if return_state:
            return y, MemoryState(new_values, new_positions)
        return y

    def _check_state(self, state, B: int, dtype: torch.dtype):
        if not (isinstance(state, tuple) and len(state) == 2):
            raise TypeError(f"mnemo_torch: state must be the MemoryState of an earlier call, not {type(state).__name__}")
        values, positions = state
        n = self.state_size
        if not isinstance(values, torch.Tensor) or not isinstance(positions, torch.Tensor):
            raise TypeError("mnemo_torch: state must hold two tensors (values, position)")
        if values.device.type != "cpu" or positions.device.type != "cpu":
            raise ValueError("mnemo_torch: the state is not on the CPU; mnemo runs on the CPU only")
        if values.dtype != dtype:
            raise TypeError(f"mnemo_torch: the state's values have dtype {values.dtype}, the memory's parameters "
                            f"are {dtype}")
        if tuple(values.shape) != (B, n):
            raise ValueError(f"mnemo_torch: the state's values have shape {tuple(values.shape)}, the memory needs "
                             f"({B}, {n}) for a batch of {B}")
        if positions.dtype != torch.int64 or tuple(positions.shape) != (B,):
            raise ValueError(f"mnemo_torch: the state's position must be an int64 tensor of shape ({B},), not "
                             f"{positions.dtype} {tuple(positions.shape)}")
        return values.contiguous(), positions.contiguous()


def dataclasses_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)
