#!/usr/bin/env python3
"""The reference problem `seed` (docs: ../shared/reference-problems.md, examples/seed_problem.hpp)
with `mnemo_torch.NeuralMemory`, printed as one JSON line in the format of the C++ example
`seed_problem` (float64, 17 significant digits).

One token x (d = 10), a linear memory with constant gates (eta 0.9, alpha 0.1, theta 0.1),
the inner loss sum((M0 WK x - WV x)^2), one inner step, the retrieval y = M1 WQ x, and the
outer loss mean_i |y_i - x_i| (the user's nn.L1Loss against x), computed here in PyTorch on
the layer's output; its gradients with respect to M0, WK, WV and WQ come back through the
layer's backward (mnemo's exact meta-gradient, through the inner step).
"""

import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mnemo_torch import NeuralMemory  # noqa: E402

D = 10


def det(shape, phase, scale):
    """det(shape, phase, scale)[n] = scale * sin(1 + 0.37 n + phase), n the row-major flat index."""
    n = math.prod(shape)
    flat = [scale * math.sin(1.0 + 0.37 * i + phase) for i in range(n)]
    return torch.tensor(flat, dtype=torch.float64).reshape(shape)


def main():
    torch.set_num_threads(1)
    mem = NeuralMemory(D, model="linear", gates="const", chunk=1, dtype=torch.float64,
                       eta=0.9, alpha=0.1, theta=0.1)
    values = {
        "M0_0": det((D, D), 0.5, 0.1),
        "WK": det((D, D), 1.5, 0.3),
        "WV": det((D, D), 2.5, 0.3),
        "WQ": det((D, D), 3.5, 0.3),
    }
    assert set(dict(mem.named_parameters())) == set(values), dict(mem.named_parameters()).keys()
    with torch.no_grad():
        for name, v in values.items():
            getattr(mem, name).copy_(v)

    x = det((1, 1, D), 4.5, 1.0)  # one sequence of one token, (B, T, d)
    y = mem(x)
    loss = nn.L1Loss()(y, x)  # mean over the d features of the one token: the target is x
    mem.zero_grad()
    loss.backward()

    grads = {mem.mnemo_names[name]: p.grad.reshape(-1).tolist() for name, p in mem.named_parameters()}
    order = ["M0[0]", "WK", "WV", "WQ"]

    def num(v):
        return f"{v:.17g}"

    body = ", ".join(f'"{k}": [' + ", ".join(num(v) for v in grads[k]) + "]" for k in order)
    print(f'{{"problem": "seed", "loss": {num(loss.item())}, "grads": {{{body}}}}}')


if __name__ == "__main__":
    main()
