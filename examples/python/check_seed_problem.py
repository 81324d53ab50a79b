#!/usr/bin/env python3
"""Compare two JSON lines of the reference problem `seed`: the C++ example's and the torch
module's (examples/python/seed_problem.py), to a tolerance (default 1e-12, absolute).

Usage: check_seed_problem.py SEED_PROBLEM_EXE SEED_PROBLEM_PY [--python PY] [--tol TOL]
Runs both, parses their one JSON line each, and exits 1 if any number differs by more.
"""

import argparse
import json
import subprocess
import sys


def one_json_line(cmd):
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if len(lines) != 1:
        raise SystemExit(f"{cmd}: expected one JSON line, got {len(lines)}:\n{out}")
    return json.loads(lines[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("exe")
    ap.add_argument("script")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--tol", type=float, default=1e-12)
    a = ap.parse_args()
    cpp = one_json_line([a.exe])
    py = one_json_line([a.python, a.script])
    ok = True
    if cpp.get("problem") != "seed" or py.get("problem") != "seed":
        print(f"problem names: C++ {cpp.get('problem')!r}, Python {py.get('problem')!r}")
        ok = False
    worst = abs(cpp["loss"] - py["loss"])
    print(f"loss: C++ {cpp['loss']!r}, Python {py['loss']!r}, |diff| {worst:.3g}")
    if set(cpp["grads"]) != set(py["grads"]):
        print(f"gradient keys differ: C++ {sorted(cpp['grads'])}, Python {sorted(py['grads'])}")
        ok = False
    for k in cpp["grads"]:
        if k not in py["grads"]:
            continue
        g, h = cpp["grads"][k], py["grads"][k]
        if len(g) != len(h):
            print(f"{k}: {len(g)} numbers in C++, {len(h)} in Python")
            ok = False
            continue
        diff = max(abs(u - v) for u, v in zip(g, h))
        print(f"{k}: {len(g)} numbers, max |diff| {diff:.3g}")
        worst = max(worst, diff)
    print(f"max |diff| {worst:.3g} (tolerance {a.tol:g})")
    if not ok or not worst <= a.tol:
        print("FAIL")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
