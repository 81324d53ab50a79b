#!/usr/bin/python3
"""Data-parallel training of the recall task (examples/recall, docs/tutorial-recall.md) with
mnemo_torch.NeuralMemory inside torch's DistributedDataParallel, over the gloo backend, one
process per rank on this machine.

    /usr/bin/python3 examples/python/ddp_recall.py [--procs 2] [--steps 1500] [--batch 32]
    /usr/bin/python3 examples/python/ddp_recall.py --check       # P ranks against 1, one step
    /usr/bin/python3 examples/python/ddp_recall.py --time [--pairs 8]   # step times of 1 and 2 ranks
    (each also with --optimizer mnemo: mnemo_torch.AdamW instead of torch.optim.AdamW)

The task: each sequence writes N random pairs as tokens [key; value] (unit vectors of R^16),
then asks for them in another order as [key; 0]; the memory (a 16 x 16 matrix, keys and
queries l2-normalised, data gates, float64) must answer every query with its value. The
outer loss is the mean squared error over the queries. The parameters' initial values and
the optimiser are those of the C++ demo (Xavier projections, M0 = 0, ba = -4, be = -2;
AdamW, lr 3e-3 with 100 warm-up steps and a cosine to 0.1 of it, the gradient's norm
clipped to 1); the batches come from torch's generator, not from mnemo's.

Every rank draws the same global batch (the generator is seeded by the step) and keeps its
own slice of it, B / P sequences; DDP averages the ranks' gradients, each the gradient of
its slice's mean loss, so the step is that of one process on the global batch, up to the
order of the floating-point sums. `--check` verifies it: the parameters after one step (and
after --check-steps steps) of P ranks against those of one process, to 1e-12.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import mnemo_torch  # noqa: E402
from mnemo_torch import NeuralMemory  # noqa: E402

KEY = 16  # keys and values: unit vectors of R^16
D = 2 * KEY  # a token: [key; value], a query [key; 0]


# [model]
def make_memory() -> NeuralMemory:
    """The demo's memory, with the C++ demo's initial values."""
    mem = NeuralMemory(D, dim_head=KEY, model="linear", normalize_kq=True, gates="data", theta_max=1.0,
                       dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ("WK", "WV", "WQ"):
            p = getattr(mem, name)  # (16, 32): Xavier normal, std sqrt(2 / (fan_in + fan_out))
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * math.sqrt(2.0 / sum(p.shape)))
        for name in ("M0_0", "wa", "we", "wt", "bt"):
            getattr(mem, name).zero_()
        mem.ba.fill_(-4.0)  # little forgetting
        mem.be.fill_(-2.0)  # some momentum
    return mem
# [model]


def make_batch(step: int, B: int, N: int | None = None, seed: int = 1):
    """The global batch of a step: tokens (B, 2N, 32), the values (B, N, 16) and the pair
    each query asks for (B, N). N is uniform in 1..8 unless given."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    if N is None:
        N = int(torch.randint(1, KEY // 2 + 1, (1,), generator=g))
    unit = lambda *shape: nn.functional.normalize(  # noqa: E731
        torch.randn(*shape, KEY, generator=g, dtype=torch.float64), dim=-1)
    keys, values = unit(B, N), unit(B, N)
    asked = torch.stack([torch.randperm(N, generator=g) for _ in range(B)])
    x = torch.zeros(B, 2 * N, D, dtype=torch.float64)
    x[:, :N, :KEY], x[:, :N, KEY:] = keys, values
    x[:, N:, :KEY] = torch.gather(keys, 1, asked[..., None].expand(B, N, KEY))
    return x, values, asked


def query_loss(y, values, asked):
    """Mean squared error of the answers over the queries and features (the writes count
    nothing)."""
    N = values.shape[1]
    want = torch.gather(values, 1, asked[..., None].expand(-1, -1, KEY))
    return ((y[:, N:] - want) ** 2).mean()


def recall_accuracy(mem, B=256, N=4, seed=7):
    """The fraction of queries whose answer is nearest to the right value of its sequence."""
    x, values, asked = make_batch(0, B, N, seed=seed)
    with torch.no_grad():
        y = mem(x)[:, N:]
    dist2 = ((y[:, :, None, :] - values[:, None, :, :]) ** 2).sum(-1)  # (B, query, pair)
    return (dist2.argmin(-1) == asked).double().mean().item()


def lr_factor(step, warmup=100, total=1500, min_factor=0.1):
    """mnemo::train::schedule: a linear warm-up, then a cosine down to min_factor."""
    if step < warmup:
        return (step + 1) / warmup
    if step >= total:
        return min_factor
    progress = (step - warmup) / (total - warmup)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def worker(rank: int, world: int, args: dict, out_dir: str):
    """One rank: trains, then rank 0 writes the parameters, the losses and the step times."""
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    mem = make_memory()
    # [ddp]
    model = DistributedDataParallel(mem) if world > 1 else mem
    if args.get("optimizer") == "mnemo":
        # mnemo's AdamW kernel for all the tensors in one call, clipping built in.
        opt = mnemo_torch.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0, clip_norm=1.0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total=args["steps"]))
    B, local = args["batch"], args["batch"] // world
    losses, times, first_grads = [], [], None
    for step in range(args["steps"]):
        x, values, asked = make_batch(step, B, args.get("pairs"))  # the same global batch on every rank
        part = slice(rank * local, (rank + 1) * local)  # this rank's sequences
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = query_loss(model(x[part]), values[part], asked[part])
        loss.backward()  # mnemo's backward, then DDP's all-reduce (the mean over ranks)
        if args.get("optimizer") != "mnemo":
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        # [ddp]
        if step == 0:
            first_grads = {n: p.grad.detach().clone() for n, p in mem.named_parameters()}
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    allreduce = None
    if world > 1 and args.get("time_allreduce"):
        # What DDP's all-reduce of these gradients costs alone: one flat tensor of their size.
        flat = torch.zeros(sum(p.numel() for p in mem.parameters()), dtype=torch.float64)
        ts = []
        for _ in range(50):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(flat)
            ts.append(time.perf_counter() - t0)
        allreduce = dict(numel=flat.numel(), median_ms=1e3 * statistics.median(ts[5:]))
    if world > 1:
        reduced = torch.tensor(losses, dtype=torch.float64)
        dist.all_reduce(reduced)  # the global batch's loss: the mean of the ranks' means
        losses = (reduced / world).tolist()
    if rank == 0:
        result = dict(world=world, losses=losses, times=times, first_grads=first_grads, allreduce=allreduce,
                      params={n: p.detach().clone() for n, p in mem.named_parameters()})
        if args.get("evaluate"):
            result["accuracy_n4"] = recall_accuracy(mem)
        torch.save(result, os.path.join(out_dir, "result.pt"))
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def run(procs: int, steps: int, batch: int = 32, evaluate: bool = False, time_allreduce: bool = False,
        pairs: int | None = None, optimizer: str = "torch") -> dict:
    """Trains with `procs` ranks (processes); returns rank 0's parameters, losses and times."""
    if batch % procs:
        raise ValueError(f"ddp_recall: the batch ({batch}) must split evenly over {procs} ranks")
    make_memory()  # compiles the memory once here if it is not cached yet; the ranks load it
    if optimizer not in ("torch", "mnemo"):
        raise ValueError(f"ddp_recall: the optimizer is torch or mnemo, not {optimizer!r}")
    args = dict(steps=steps, batch=batch, evaluate=evaluate, time_allreduce=time_allreduce, pairs=pairs,
                optimizer=optimizer)
    with tempfile.TemporaryDirectory(prefix="ddp_recall.") as out_dir:
        if procs == 1:
            worker(0, 1, args, out_dir)
        else:
            mp.spawn(worker, args=(procs, args, out_dir), nprocs=procs, join=True)
        return torch.load(os.path.join(out_dir, "result.pt"))


def max_difference(a: dict, b: dict) -> float:
    return max((a[n] - b[n]).abs().max().item() for n in a)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=2, help="ranks (processes)")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=32, help="the global batch, split over the ranks")
    ap.add_argument("--check", action="store_true", help="P ranks against 1 process: parameters to 1e-12")
    ap.add_argument("--check-steps", type=int, default=3, help="--check: also compare after this many steps")
    ap.add_argument("--time", action="store_true", help="step times of 1 and --procs ranks")
    ap.add_argument("--pairs", type=int, default=8, help="--time: N, the pairs of every sequence (1..16)")
    ap.add_argument("--optimizer", choices=("torch", "mnemo"), default="torch",
                    help="torch.optim.AdamW after clip_grad_norm_, or mnemo_torch.AdamW with clip_norm")
    ap.add_argument("--json", action="store_true", help="one JSON line")
    a = ap.parse_args()
    if a.procs < 1 or a.steps < 1 or a.batch < 1:
        ap.error("--procs, --steps and --batch must be positive")
    if not 1 <= a.pairs <= KEY:
        ap.error(f"--pairs must be in 1..{KEY}")

    if a.check:
        worst = {}
        for steps in sorted({1, a.check_steps}):
            one = run(1, steps, a.batch, optimizer=a.optimizer)
            many = run(a.procs, steps, a.batch, optimizer=a.optimizer)
            worst[steps] = max(max_difference(one["params"], many["params"]),
                               max_difference(one["first_grads"], many["first_grads"]))
            loss_diff = max(abs(x - y) for x, y in zip(one["losses"], many["losses"]))
            print(f"after {steps} step(s): {a.procs} ranks against 1 process: max |difference| of the parameters "
                  f"{max_difference(one['params'], many['params']):.3g}, of the first step's gradients "
                  f"{max_difference(one['first_grads'], many['first_grads']):.3g}, of the losses {loss_diff:.3g}")
        ok = all(w <= 1e-12 for w in worst.values())
        if a.json:
            print(json.dumps(dict(check="ddp_equals_one_process", procs=a.procs, worst=worst, ok=ok)))
        print("ok" if ok else "FAILED: above 1e-12")
        return 0 if ok else 1

    if a.time:
        rows = {}
        for procs in (1, a.procs):
            r = run(procs, a.steps, a.batch, time_allreduce=True, pairs=a.pairs, optimizer=a.optimizer)
            t = sorted(r["times"][min(5, len(r["times"]) - 1):])  # past the first steps
            rows[procs] = dict(median_ms=1e3 * statistics.median(t), min_ms=1e3 * t[0],
                               sequences_per_s=a.batch / statistics.median(t))
            print(f"{procs} rank(s), global batch {a.batch} of {a.pairs} pairs: step median {rows[procs]['median_ms']:.2f} ms, "
                  f"min {rows[procs]['min_ms']:.2f} ms ({rows[procs]['sequences_per_s']:.0f} sequences/s)")
            if r["allreduce"]:
                rows[procs]["allreduce"] = r["allreduce"]
                print(f"  all-reduce of the {r['allreduce']['numel']} gradient entries alone (gloo, float64): "
                      f"median {r['allreduce']['median_ms']:.3f} ms")
        print(f"speed-up of {a.procs} ranks: {rows[1]['median_ms'] / rows[a.procs]['median_ms']:.2f}x")
        if a.json:
            print(json.dumps(dict(batch=a.batch, steps=a.steps, rows=rows)))
        return 0

    r = run(a.procs, a.steps, a.batch, evaluate=True, optimizer=a.optimizer)
    L = r["losses"]
    k = max(1, len(L) // 10)
    print(f"{a.procs} rank(s), {a.steps} steps of a global batch of {a.batch}: loss {sum(L[:k]) / k:.4f} "
          f"(first {k} steps) -> {sum(L[-k:]) / k:.4f} (last {k}); recall at N = 4 on 256 held-out sequences: "
          f"{100 * r['accuracy_n4']:.1f}%; step median {1e3 * statistics.median(r['times']):.2f} ms")
    if a.json:
        print(json.dumps(dict(procs=a.procs, steps=a.steps, batch=a.batch, loss_first=sum(L[:k]) / k,
                              loss_last=sum(L[-k:]) / k, accuracy_n4=r["accuracy_n4"],
                              step_median_ms=1e3 * statistics.median(r["times"]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
