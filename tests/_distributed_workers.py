"""Test-only workers for ``normbook.distributed.launch`` (spawned processes import them from this module; the
tests folder is on their ``sys.path``, which ``multiprocessing`` passes to spawned children)."""
from __future__ import annotations

from typing import List

import torch

from normbook import distributed as D
from normbook.book.ch08 import make_batch, shard


def torch_cuda_worker(rank: int, world_size: int, sizes: List[int], channels: int) -> dict:
    """On CUDA (NCCL): the same shard through torch.nn.SyncBatchNorm and normbook's SyncBatchNorm; max
    differences of outputs, input gradients, weight gradients and running statistics."""
    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    x, dy, w, b = make_batch(sizes, channels, (5, 5), torch.float32)
    diffs = {}
    mods = [torch.nn.SyncBatchNorm(channels).to(dev), D.SyncBatchNorm(channels).to(dev)]
    outs = []
    for m in mods:
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
        xs = shard(x, sizes, rank).to(dev).requires_grad_(True)
        y = m(xs)
        y.backward(shard(dy, sizes, rank).to(dev))
        outs.append((y, xs.grad, m.weight.grad, m.running_mean, m.running_var))
    for name, a, c in zip(["y", "dx", "dw", "running_mean", "running_var"], *outs):
        diffs[name] = float((a - c).abs().max())
    return diffs


