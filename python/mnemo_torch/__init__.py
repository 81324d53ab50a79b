"""mnemo as a torch module: neural memories that learn at test time (Titans-style), with
mnemo's exact meta-gradients as their backward.

    from mnemo_torch import NeuralMemory
    mem = NeuralMemory(64, model="mlp", hidden=128, gates="data", chunk=8)
    y = mem(x)                                  # x (B, T, 64) -> y (B, T, 64)
    y1, state = mem(x1, return_state=True)      # streaming: continue from `state`
    y2 = mem(x2, state=state)

Each configuration is compiled on first use and cached on disk (see ``_build``).
"""

from ._build import Config, cache_root, include_dir, load
from .module import MemoryState, NeuralMemory
from .optim import AdamW

__all__ = ["NeuralMemory", "MemoryState", "AdamW", "Config", "load", "cache_root", "include_dir"]
