"""Test-only workers for ``normbook.distributed.launch`` (spawned processes import them from this module; the
tests folder is on their ``sys.path``, which ``multiprocessing`` passes to spawned children)."""
from __future__ import annotations

from typing import List

import torch

from normbook import distributed as D
from normbook.book.ch08 import make_batch, shard


class _CountCollectives:
    """Counts calls of torch.distributed's gather and all-reduce functions while active (torch's SyncBatchNorm and
    normbook's both call them through the ``torch.distributed`` module, so patching its attributes sees them)."""
    NAMES = ("all_gather", "all_gather_into_tensor", "all_gather_single", "all_reduce")

    def __init__(self):
        import torch.distributed as dist
        self.dist, self.calls, self.saved = dist, 0, {}

    def __enter__(self):
        for name in self.NAMES:
            if hasattr(self.dist, name):
                original = getattr(self.dist, name)
                self.saved[name] = original

                def counted(*args, _original=original, **kwargs):
                    self.calls += 1
                    return _original(*args, **kwargs)
                setattr(self.dist, name, counted)
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(self.dist, name, original)


def torch_cuda_worker(rank: int, world_size: int, sizes: List[int], channels: int, steps: int = 2) -> dict:
    """On CUDA: the same shards through torch.nn.SyncBatchNorm and normbook's SyncBatchNorm for ``steps``
    training steps. Both ranks may share one GPU (gloo, which takes CUDA tensors) or use one each (NCCL).
    Returns the max differences of outputs, input gradients, weight/bias gradients and running statistics, and
    the collectives each module issued in its last step."""
    count = torch.cuda.device_count()
    dev = torch.device("cuda", rank % count)
    torch.cuda.set_device(dev)
    x, dy, w, b = make_batch(sizes, channels, (5, 5), torch.float32)
    mods = [torch.nn.SyncBatchNorm(channels).to(dev), D.SyncBatchNorm(channels).to(dev)]
    results, calls = [], []
    for m in mods:
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
        for _ in range(steps):
            m.weight.grad = m.bias.grad = None
            xs = shard(x, sizes, rank).to(dev).requires_grad_(True)
            with _CountCollectives() as counter:
                y = m(xs)
                y.backward(shard(dy, sizes, rank).to(dev))
                torch.cuda.synchronize(dev)
        calls.append(counter.calls)
        results.append((y, xs.grad, m.weight.grad, m.bias.grad, m.running_mean, m.running_var))
    diffs = {name: float((a - c).abs().max()) for name, a, c in
             zip(["y", "dx", "dw", "db", "running_mean", "running_var"], *results)}
    return {"diffs": diffs, "torch_calls": calls[0], "normbook_calls": calls[1]}


def exit_worker(rank: int, world_size: int) -> int:
    """Rank 1 dies without reporting (as a process aborted inside a collective would) while rank 0 keeps
    running. ``launch`` must report the dead process instead of waiting for its timeout."""
    import os
    import time
    if rank == 1:
        os._exit(3)
    time.sleep(120)   # longer than the test's timeout: only the dead-process check can end the launch early
    return rank
