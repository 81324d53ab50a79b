#!/usr/bin/env python3
"""numpy reads mnemo's checkpoints: names, dtypes, shapes and values, exactly.

Usage: check_checkpoint_numpy.py <test_checkpoint executable> <scratch dir>

Runs the C++ test case "numpy sidecar" of test_checkpoint, which saves checkpoints into the
scratch dir with, next to each <name>.npz, a <name>.txt of the entries it must hold: one line
per entry, "name<TAB>dtype<TAB>d0,d1,...<TAB>values" (values as C hex floats, or an
integer for step.npy). Then loads every .npz with numpy.load and checks that its entries are
exactly those of the sidecar, each with that dtype, that shape, C order and those values,
bit for bit. Then re-saves one of them with numpy.savez and numpy.savez_compressed and runs
the case "numpy written", which loads those into C++ and compares them bit for bit with what
it saved. Exits with 1 on any difference.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np


def expected_entries(sidecar):
    entries = {}
    for line in sidecar.read_text().splitlines():
        name, dtype, dims, values = line.split("\t")
        shape = tuple(int(d) for d in dims.split(",")) if dims else ()
        if dtype == "<i8":
            vals = [int(v) for v in values.split()]
        else:
            vals = [float.fromhex(v) for v in values.split()]
        entries[name] = (dtype, shape, vals)
    return entries


def check(npz_path, sidecar):
    errors = []
    want = expected_entries(sidecar)
    with np.load(npz_path) as npz:
        # NpzFile.files drops the ".npy" suffix; zip.namelist() has the entry names.
        names = sorted(npz.zip.namelist())
        if names != sorted(want):
            errors.append(f"{npz_path.name}: entries {names}, expected {sorted(want)}")
        for name, (dtype, shape, vals) in want.items():
            key = name[: -len(".npy")]
            if key not in npz.files:
                errors.append(f"{npz_path.name}: no array '{key}'")
                continue
            a = npz[key]
            if a.dtype.str != dtype:
                errors.append(f"{npz_path.name}: '{key}' has dtype {a.dtype.str}, expected {dtype}")
            if a.shape != shape:
                errors.append(f"{npz_path.name}: '{key}' has shape {a.shape}, expected {shape}")
            if not a.flags.c_contiguous:
                errors.append(f"{npz_path.name}: '{key}' is not in C order")
            expected = np.array(vals, dtype=np.dtype(dtype)).reshape(shape)
            # Exact: the values were written as hex floats of the stored (float or double) values.
            if a.shape == expected.shape and not np.array_equal(a, expected):
                errors.append(f"{npz_path.name}: '{key}' differs: {a.ravel()[:4]}... vs {expected.ravel()[:4]}...")
        print(f"{npz_path.name}: {len(want)} entries checked ({', '.join(sorted(want)[:3])}, ...)")
    return errors


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    exe, scratch = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    env = dict(os.environ, MNEMO_CHECKPOINT_NUMPY_DIR=str(scratch))
    if not run_case(exe, "numpy sidecar*", env):
        return 1
    sidecars = sorted(scratch.glob("*.txt"))
    if len(sidecars) < 2:
        print(f"expected at least 2 checkpoints in {scratch}, found {len(sidecars)}")
        return 1
    errors = []
    for sidecar in sidecars:
        errors += check(sidecar.with_suffix(".npz"), sidecar)
    for e in errors:
        print(e)
    print(f"{len(sidecars)} checkpoints, {len(errors)} errors")
    if errors:
        return 1
    # The other way: numpy's own writers (stored and deflated entries), read by mnemo.
    with np.load(scratch / "double_adamw.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    np.savez(scratch / "from_numpy.npz", **arrays)
    np.savez_compressed(scratch / "from_numpy_compressed.npz", **arrays)
    return 0 if run_case(exe, "numpy written*", env) else 1


def run_case(exe, case, env):
    """Runs one doctest case of exe; true if it ran and passed."""
    run = subprocess.run([str(exe), f"--test-case={case}"], env=env, capture_output=True, text=True)
    print(run.stdout, end="")
    print(run.stderr, end="", file=sys.stderr)
    if run.returncode != 0 or "test cases: 1 | 1 passed" not in run.stdout:
        print(f"{exe} --test-case='{case}' failed or did not run ({run.returncode})")
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
