"""torch.distributed: DistributedDataParallel over gloo, 2 ranks (processes) on this machine,
training the recall task (examples/python/ddp_recall.py): after one step, and after three,
the parameters (and the first step's gradients) equal those of one process on the same
global batch, float64, to 1e-12; with torch.optim.AdamW and with mnemo_torch.AdamW."""

import sys
from pathlib import Path

import pytest
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "python"))

import ddp_recall  # noqa: E402


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch without gloo")
@pytest.mark.parametrize("steps,optimizer", [(1, "torch"), (3, "torch"), (3, "mnemo")])
def test_two_ranks_equal_one_process(steps, optimizer):
    one = ddp_recall.run(1, steps, batch=8, optimizer=optimizer)
    two = ddp_recall.run(2, steps, batch=8, optimizer=optimizer)
    grads = ddp_recall.max_difference(one["first_grads"], two["first_grads"])
    params = ddp_recall.max_difference(one["params"], two["params"])
    print(f"{steps} step(s), {optimizer} AdamW: gradients {grads:.3g}, parameters {params:.3g}")
    assert grads < 1e-12 and params < 1e-12
    # The step did move the parameters, and the gradients are not all zero: the comparison
    # is of something.
    start = ddp_recall.make_memory()
    assert max(g.abs().max().item() for g in one["first_grads"].values()) > 1e-4
    # (the first step's learning rate is 3e-3 / 100, the warm-up's first)
    assert ddp_recall.max_difference(dict(start.named_parameters()), one["params"]) > 1e-5
    assert all(abs(a - b) < 1e-12 for a, b in zip(one["losses"], two["losses"]))


def test_uneven_batch_is_refused():
    with pytest.raises(ValueError, match="must split evenly over 2 ranks"):
        ddp_recall.run(2, 1, batch=7)
