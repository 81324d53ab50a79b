"""Builds memory configurations ahead of their first use, into the disk cache.

    /usr/bin/python3 -m mnemo_torch.prebuild [--list] [NAME ...]
    cmake --build build --target mnemo_torch_prebuild     # the same, from CMake

Each configuration is compiled as on first use (``_build.load``), into ``MNEMO_TORCH_CACHE``
(default ``~/.cache/mnemo_torch``); a configuration already there is only loaded. Without
names, every configuration of ``COMMON`` is built (the benchmark configurations' memories,
in float32 and float64), and the kernel of ``mnemo_torch.AdamW``.
"""

from __future__ import annotations

import argparse
import sys
import time

from ._build import Config, load, optimizer_kernels

COMMON = {
    # name: the memory of bench-configs.md's configurations (chunk sizes need no other build)
    "linear64": Config(dim=64),
    "linear64_f64": Config(dim=64, dtype="float64"),
    "mlp64": Config(dim=64, model="mlp", hidden=(256,)),
    "mlp64_f64": Config(dim=64, model="mlp", hidden=(256,), dtype="float64"),
    "linear256": Config(dim=256),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m mnemo_torch.prebuild", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"configurations (default: all of {' '.join(COMMON)})")
    ap.add_argument("--list", action="store_true", help="print the configurations and exit")
    a = ap.parse_args(argv)
    if a.list:
        for name, config in COMMON.items():
            print(f"{name}: {config.describe()}")
        return 0
    unknown = [n for n in a.names if n not in COMMON]
    if unknown:
        print(f"mnemo_torch.prebuild: unknown configuration(s) {' '.join(unknown)} ({' '.join(COMMON)})",
              file=sys.stderr)
        return 2
    for name in a.names or list(COMMON):
        t = time.perf_counter()
        load(COMMON[name])
        print(f"{name} ({COMMON[name].describe()}): ready in {time.perf_counter() - t:.1f} s")
    if not a.names:
        t = time.perf_counter()
        optimizer_kernels()
        print(f"mnemo_torch.AdamW's kernel: ready in {time.perf_counter() - t:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
