"""Building and loading the compiled extension of one memory configuration.

mnemo's shapes are compile-time: each configuration (model, sizes, gates, dtype, ...) is a
C++ type. A configuration not built yet is written as a small C++ unit from the template
``_binding.cpp.in`` and compiled with ``torch.utils.cpp_extension.load`` on first use (about
a minute with g++ 12); the result is cached on disk under a hash of the generated source,
mnemo's headers, the build flags and the torch version, and loaded from there afterwards.

Environment:
    MNEMO_TORCH_CACHE    the cache directory (default: $XDG_CACHE_HOME/mnemo_torch, or
                         ~/.cache/mnemo_torch); one subdirectory per configuration
    MNEMO_INCLUDE_DIR    mnemo's include directory (default: ../../include from this file,
                         the repository's)
    MNEMO_TORCH_CXXFLAGS the optimisation flags, split on whitespace (default: -O3
                         -march=native; the cache key then holds the processor's identity)
    MNEMO_TORCH_QUIET    1: no compile messages
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path
from typing import Tuple

_HERE = Path(__file__).resolve().parent
_TEMPLATE = _HERE / "_binding.cpp.in"
# Bumped when the generated unit's interface changes in a way the template text does not show.
_BINDING_ABI = "1"

ACTIVATIONS = {
    "silu": "mm::silu_act",
    "gelu": "mm::gelu_act",
    "gelu_tanh": "mm::gelu_act",
    "gelu_exact": "mm::gelu_exact_act",
    "relu": "mm::relu_act",
}


INNER_LOSSES = ("l2", "huber", "l1", "dot")
RULES = {
    "titans": "mm::titans_rule",
    "delta": "mm::delta_rule",
    "normalized_momentum": "mm::normalized_momentum_rule",
    "newton_schulz": "mm::newton_schulz_rule<3>",
}


@dataclasses.dataclass(frozen=True)
class Config:
    """A memory configuration: everything that is a compile-time choice in mnemo.

    Run-time options (chunk size, checkpointing, threads) and hyperparameters (theta_max,
    constant gates' values) are not part of it: one build serves them all.
    """

    dim: int
    model: str = "linear"  # "linear" or "mlp"
    hidden: Tuple[int, ...] = ()  # the MLP's hidden sizes
    activation: str = "silu"
    bias: bool = False  # MLP biases
    residual: bool = False  # M(k) = k + inner(k)
    gates: str = "data"  # "data" or "const"
    normalize_kq: bool = False
    first_order: bool = False
    dtype: str = "float32"  # "float32" or "float64"
    dim_head: int = 0  # the memory's key and value size (0: dim)
    inner_loss: str = "l2"  # one of INNER_LOSSES
    huber_delta: Tuple[int, int] = (1, 1)  # the Huber loss's delta, as a fraction (compile-time in mnemo)
    rule: str = "titans"  # one of RULES
    layer_norm: bool = False  # M(k) = ln_scale * normalise(inner(k)) (inside the residual)

    @property
    def key_size(self) -> int:
        return self.dim_head or self.dim

    def model_type(self) -> str:
        k = self.key_size
        if self.model == "linear":
            inner = f"mm::linear<{k}>"
        elif self.model == "mlp":
            sizes = ", ".join(str(h) for h in self.hidden)
            inner = f"mm::mlp<{ACTIVATIONS[self.activation]}, {'true' if self.bias else 'false'}, {k}, {sizes}>"
        else:  # validated by the module
            raise ValueError(f"unknown model {self.model!r}")
        if self.layer_norm:
            inner = f"mm::layer_norm<{inner}>"
        return f"mm::residual<{inner}>" if self.residual else inner

    def inner_loss_type(self) -> str:
        if self.inner_loss == "l2":
            return "mm::l2_loss"
        if self.inner_loss == "huber":
            return f"mm::huber_loss<{self.huber_delta[0]}, {self.huber_delta[1]}>"
        if self.inner_loss == "l1":
            return "mm::lp_loss<1>"
        if self.inner_loss == "dot":
            return "mm::dot_loss"
        raise ValueError(f"unknown inner loss {self.inner_loss!r}")

    def spec_type(self) -> str:
        gates = f"mm::data_gates<{self.dim}>" if self.gates == "data" else "mm::const_gates"
        return (f"mm::spec<{self.dim}, {self.model_type()}, {self.inner_loss_type()}, {RULES[self.rule]}, {gates}, "
                f"mm::mse, {'true' if self.normalize_kq else 'false'}>")

    def scalar_type(self) -> str:
        return "double" if self.dtype == "float64" else "float"

    def describe(self) -> str:
        parts = [f"dim={self.dim}"]
        if self.dim_head and self.dim_head != self.dim:
            parts.append(f"dim_head={self.dim_head}")
        parts.append(f"model={self.model}")
        if self.model == "mlp":
            parts += [f"hidden={list(self.hidden)}", f"activation={self.activation}", f"bias={self.bias}"]
        if self.layer_norm:
            parts.append("layer_norm=True")
        if self.residual:
            parts.append("residual=True")
        parts.append(f"gates={self.gates}")
        if self.inner_loss != "l2":
            loss = self.inner_loss
            if loss == "huber":
                n, d = self.huber_delta
                loss += f"(delta={n / d:g})"
            parts.append(f"inner_loss={loss}")
        if self.rule != "titans":
            parts.append(f"rule={self.rule}")
        if self.normalize_kq:
            parts.append("normalize_kq=True")
        if self.first_order:
            parts.append("first_order=True")
        parts.append(f"dtype={self.dtype}")
        return ", ".join(parts)


def include_dir() -> Path:
    env = os.environ.get("MNEMO_INCLUDE_DIR")
    path = Path(env) if env else _HERE.parent.parent / "include"
    if not (path / "mnemo" / "memory.hpp").is_file():
        where = "MNEMO_INCLUDE_DIR" if env else "the repository (../../include from mnemo_torch)"
        raise RuntimeError(f"mnemo_torch: mnemo's headers are not in {path} (from {where}); "
                           "set MNEMO_INCLUDE_DIR to the directory that holds mnemo/memory.hpp")
    return path


def cache_root() -> Path:
    env = os.environ.get("MNEMO_TORCH_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mnemo_torch"


def cxx_flags() -> list:
    extra = os.environ.get("MNEMO_TORCH_CXXFLAGS")
    # The unit is compiled on the machine that runs it: for its processor (as mnemo's own
    # benchmarks are). The cache key holds the processor's identity (cpu_identity).
    opt = extra.split() if extra is not None else ["-O3", "-march=native"]
    # torch 1.13's headers warn under C++20 (std::iterator is deprecated): not ours to fix.
    return ["-std=c++20", "-DNDEBUG", "-Wno-deprecated-declarations"] + opt


LDFLAGS = ("-lopenblas",)


def cpu_identity() -> str:
    """The processor's model and instruction-set flags (a cache shared by machines, over a
    network home, must not hand a -march=native build to another processor)."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().split("\n\n", 1)[0].splitlines()
    except OSError:
        import platform

        return platform.machine() + " " + platform.processor()
    keep = ("vendor_id", "model name", "flags")
    return "\n".join(ln for ln in lines if ln.split(":", 1)[0].strip() in keep)


def _headers_digest(inc: Path, with_train: bool = False) -> str:
    # Every header a memory's unit can include (mnemo/memory.hpp and what it includes); the
    # training headers (mnemo/train/) only with `with_train` (the optimizer's kernel, whose
    # optim.hpp includes mnemo/detail/ too): a memory's unit needs no rebuild for their edits.
    h = hashlib.sha256()
    for p in sorted((inc / "mnemo").rglob("*.hpp")):
        if not with_train and p.relative_to(inc / "mnemo").parts[0] == "train":
            continue
        h.update(str(p.relative_to(inc)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


_headers_digest_cache: dict = {}


def source_of(config: Config) -> str:
    text = _TEMPLATE.read_text()
    return (text.replace("@SPEC@", config.spec_type())
                .replace("@SCALAR@", config.scalar_type())
                .replace("@FIRST_ORDER@", "true" if config.first_order else "false")
                .replace("@DESCRIPTION@", config.describe()))


def config_hash(config: Config, source: str, inc: Path) -> str:
    import torch

    key = str(inc.resolve())
    if key not in _headers_digest_cache:
        _headers_digest_cache[key] = _headers_digest(inc)
    flags = cxx_flags()
    return _digest((_BINDING_ABI, source, _headers_digest_cache[key], " ".join(flags), " ".join(LDFLAGS),
                    torch.__version__, sys.version, repr(config),
                    cpu_identity() if "-march=native" in flags else ""))


_loaded: dict = {}
_lock = threading.Lock()


def _message(text: str) -> None:
    if os.environ.get("MNEMO_TORCH_QUIET", "") not in ("", "0"):
        return
    print(f"mnemo_torch: {text}", file=sys.stderr, flush=True)


def _import_from(path: Path, name: str):
    loader = importlib.machinery.ExtensionFileLoader(name, str(path))
    spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# Every load from disk or by compiling in this process, in order (for tests and benchmarks):
# {"config", "compiled", "seconds", "directory"}; `last_load` is the latest.
load_log: list = []
last_load: dict = {}


def _compile(config: Config, source: str, name: str, build_dir: Path, inc: Path):
    from torch.utils import cpp_extension

    src = build_dir / f"{name}.cpp"
    if not src.is_file() or src.read_text() != source:
        tmp = build_dir / f".{name}.cpp.{os.getpid()}"
        tmp.write_text(source)
        os.replace(tmp, src)
    _message(f"compiling the memory ({config.describe()}) on first use; this takes about a minute "
             f"(cached in {build_dir})")
    try:
        return cpp_extension.load(
            name=name, sources=[str(src)], extra_cflags=cxx_flags(), extra_ldflags=list(LDFLAGS),
            extra_include_paths=[str(inc)], build_directory=str(build_dir), verbose=False)
    except Exception as e:  # the compiler's output is in the exception
        raise RuntimeError(f"mnemo_torch: compiling the memory ({config.describe()}) failed "
                           f"(build directory {build_dir}): {e}") from e


def _build_once(build_dir: Path, artifact: Path, build, load_artifact):
    """Loads `artifact` of `build_dir` if it is complete, else runs `build()` (which returns the
    loaded result) under a file lock: one compiler per directory across processes (the ranks
    of a distributed job, parallel test runs); the others wait for it, then load its result.
    Returns (the loaded result, whether this call compiled)."""
    done = build_dir / "complete"
    if artifact.is_file() and done.is_file():
        return load_artifact(), False
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / "mnemo.lock", "a") as lock:  # not "lock": torch's own baton file
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if artifact.is_file() and done.is_file():
                return load_artifact(), False
            result = build()
            done.write_text(build_dir.name + "\n")
            return result, True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(config: Config):
    """The extension module of `config`: from this process, the disk cache, or compiled."""
    with _lock:
        if config in _loaded:
            return _loaded[config]
        import torch  # noqa: F401  (the extension links against it: load it first)

        start = time.perf_counter()
        inc = include_dir()
        source = source_of(config)
        digest = config_hash(config, source, inc)
        name = f"mnemo_torch_{digest}"
        build_dir = cache_root() / digest
        so = build_dir / f"{name}.so"
        module, compiled = _build_once(build_dir, so, lambda: _compile(config, source, name, build_dir, inc),
                                       lambda: _import_from(so, name))
        seconds = time.perf_counter() - start
        if compiled:
            _message(f"compiled the memory ({config.describe()}) in {seconds:.1f} s")
        last_load.clear()
        last_load.update(config=config, compiled=compiled, seconds=seconds, directory=str(build_dir))
        load_log.append(dict(last_load))
        _loaded[config] = module
        return module


_OPTIM_SOURCE = _HERE / "_optim.cpp"
_optim_kernels = None


def optimizer_kernels():
    """The shared library of mnemo_torch.AdamW's kernel (_optim.cpp, with mnemo's training
    headers and no torch header), as a ctypes.CDLL: from this process, the disk cache, or
    compiled with $CXX (default c++) in about a second."""
    global _optim_kernels
    with _lock:
        if _optim_kernels is not None:
            return _optim_kernels
        import ctypes
        import subprocess

        inc = include_dir()
        source = _OPTIM_SOURCE.read_bytes()
        flags = cxx_flags() + ["-shared", "-fPIC"]
        cxx = os.environ.get("CXX", "c++")
        digest = _digest((source, cxx, " ".join(flags), _headers_digest(inc, with_train=True),
                          cpu_identity() if "-march=native" in flags else ""))
        build_dir = cache_root() / f"optim_{digest}"
        so = build_dir / "libmnemo_optim.so"

        def build():
            tmp = build_dir / f".libmnemo_optim.so.{os.getpid()}"
            cmd = [cxx, *flags, f"-I{inc}", str(_OPTIM_SOURCE), "-o", str(tmp)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"mnemo_torch: compiling the optimizer's kernel failed ({' '.join(cmd)}):\n"
                                   f"{r.stderr}")
            os.replace(tmp, so)
            return ctypes.CDLL(str(so))

        lib, _ = _build_once(build_dir, so, build, lambda: ctypes.CDLL(str(so)))
        vp, sz, dbl = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_double
        ptrs = ctypes.POINTER(vp)
        for suffix in ("f32", "f64"):
            f = getattr(lib, f"mnemo_squared_norm_{suffix}")
            f.argtypes, f.restype = [sz, ptrs, ctypes.POINTER(sz), ctypes.POINTER(dbl)], sz
            f = getattr(lib, f"mnemo_adamw_{suffix}")
            f.argtypes = [sz, ptrs, ptrs, ptrs, ptrs, ctypes.POINTER(sz), dbl, dbl, dbl, dbl, dbl, dbl, sz]
            f.restype = None
        if lib.mnemo_abi_version() != 1:
            raise RuntimeError(f"mnemo_torch: {so} is of another version; remove {build_dir}")
        _optim_kernels = lib
        return lib
