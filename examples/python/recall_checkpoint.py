#!/usr/bin/python3
"""The C++ recall demo's trained memory, read with numpy and run in PyTorch.

    /usr/bin/python3 examples/python/recall_checkpoint.py [build/demo/recall/full.npz]

`scripts/demo.sh` (examples/recall) saves each variant's parameters and AdamW state as a
`.npz` checkpoint (mnemo::train::save_checkpoint). This script lists the checkpoint's
entries with numpy, copies the parameters into the same memory built as a torch module
(examples/python/ddp_recall.py's), and measures its recall on held-out sequences of 4 pairs
drawn by torch: about what the C++ demo reports (99.9% for `full`).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import ddp_recall  # noqa: E402


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parents[2] / "build/demo/recall/full.npz")
    if not Path(path).is_file():
        print(f"recall_checkpoint: {path} is missing (scripts/demo.sh writes it)", file=sys.stderr)
        return 1
    # [read]
    ckpt = np.load(path)
    print(ckpt.files, ckpt["WK"].shape, ckpt["WK"].dtype, int(ckpt["step"]))
    # [read]
    mem = ddp_recall.make_memory()
    with torch.no_grad():
        for name, p in mem.named_parameters():
            p.copy_(torch.from_numpy(ckpt[mem.mnemo_names[name]]))  # "M0_0" is mnemo's "M0[0]"
    print(f"recall at N = 4 on 256 held-out sequences: {100 * ddp_recall.recall_accuracy(mem):.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
