#!/usr/bin/env python3
"""The seed user's test code (a PyTorch forum question on Titans), fixed with
`mnemo_torch.NeuralMemory`.

The question: after an inner step M_1 = (1 - alpha) M_0 + S_1, S_1 = eta S_0 + lr grad of
the surprise ||M_0 K x - V x||, and the outer loss L1(M_1 Q x, x), why do the key and value
projections K and V get no gradient (None)? Because the inner update wrote `param.data`:
the new memory left the autograd graph, and K and V reach the outer loss only through the
inner gradient. With NeuralMemory the inner step and the retrieval are one differentiable
layer (mnemo's exact meta-gradient, second derivatives of the inner gradient included), so
every projection gets its gradient, while K and V are still not trained by the inner loss.

Differences from the user's sketch, by design of the layer: the inner step is gradient
*descent* (S_1 = eta S_0 - theta grad; the sketch's `+ lr * grad` ascends), the inner loss is
sum((M k - v)^2), the projections and the memory have no bias, and `condition(x)` followed by
`model(x)` is the one call `mem(x)` (update at the token, then retrieve with the updated
memory). Tokens are (batch, time, dim). float64 here (float32 works the same: another
compiled configuration).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mnemo_torch import NeuralMemory  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(1)

x = torch.randn(1, 1, 10, dtype=torch.float64)  # 1 sequence of 1 token, 10 features
# The user's constants: momentum eta 0.9, decay alpha 0.1; inner learning rate theta 0.1.
model = NeuralMemory(10, model="linear", gates="const", eta=0.9, alpha=0.1, theta=0.1, dtype=torch.float64)
y = model(x)  # condition on x (one inner step), then retrieve M_1(W_Q x)
l = nn.L1Loss()
loss = l(y, x)
loss.backward()

print("loss", loss.item())
print("key (WK) grad:\n", model.WK.grad)
print("value (WV) grad:\n", model.WV.grad)
print("query (WQ) grad:\n", model.WQ.grad)
print("initial memory (M0_0) grad:\n", model.M0_0.grad)

for name in ("WK", "WV", "WQ", "M0_0"):
    g = getattr(model, name).grad
    assert g is not None, f"{name} has no gradient"
    assert torch.isfinite(g).all(), f"{name}'s gradient is not finite"
    assert g.abs().max().item() > 0, f"{name}'s gradient is zero"
print("OK: the key, value and query projections all have gradients")
