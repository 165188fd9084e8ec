"""Chapter 8's workers for ``normbook.distributed.launch`` (its tests reuse them).

Spawned processes import their target by module path, so these live in the package (a function defined in a
notebook cannot be sent to a spawned process). Each worker is called as ``worker(rank, world_size, *args)``
inside an initialized process group and returns plain data (tensors are turned into NumPy arrays by ``launch``).
"""
from __future__ import annotations

import time
from typing import List

import torch

from .. import distributed as D


def make_batch(sizes: List[int], channels: int, spatial=(), dtype=torch.float64, seed: int = 0):
    """The full batch (sum(sizes), C, *spatial), the upstream gradient of the same shape, weight and bias; the
    same on every process (seeded), so each process can take its shard."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    shape = (n, channels, *spatial)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 3).to(dtype)
    dy = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    w = (torch.rand(channels, generator=g, dtype=torch.float64) + 0.5).to(dtype)
    b = torch.randn(channels, generator=g, dtype=torch.float64).to(dtype)
    return x, dy, w, b


def shard(t: torch.Tensor, sizes: List[int], rank: int) -> torch.Tensor:
    start = sum(sizes[:rank])
    return t[start:start + sizes[rank]]


def exactness_worker(rank: int, world_size: int, cases: List[dict]) -> List[dict]:
    """For each case {sizes, channels, spatial, dtype, momentum, steps}: run ``steps`` training steps of
    SyncBatchNorm on this rank's shard (same weight/bias), backward with the shard of a fixed upstream gradient,
    then one evaluation forward. Returns this rank's outputs, input gradients, local weight/bias gradients and
    the final buffers. Cases with a key 'expect_error' return the error's type name and message instead."""
    out = []
    for case in cases:
        sizes = case["sizes"]
        dtype = getattr(torch, case.get("dtype", "float64"))
        channels = case["channels"]
        if isinstance(channels, list):  # a different channel count per rank (an error case)
            channels = channels[rank]
        x, dy, w, b = make_batch(sizes, channels, tuple(case.get("spatial", ())), dtype, case.get("seed", 0))
        m = D.SyncBatchNorm(channels, momentum=case.get("momentum", 0.1), dtype=dtype)
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
        res = {"ys": [], "dxs": [], "dws": [], "dbs": []}
        try:
            for _ in range(case.get("steps", 2)):
                xs = shard(x, sizes, rank).clone().requires_grad_(True)
                m.weight.grad = m.bias.grad = None
                y = m(xs)
                y.backward(shard(dy, sizes, rank))
                res["ys"].append(y.detach())
                res["dxs"].append(xs.grad)
                res["dws"].append(m.weight.grad.clone())
                res["dbs"].append(m.bias.grad.clone())
        except Exception as e:  # noqa: BLE001 - reported to the parent
            out.append({"error": type(e).__name__, "message": str(e)})
            continue
        m.eval()
        res["eval_y"] = m(shard(x, sizes, rank)).detach()
        res["running_mean"] = m.running_mean.clone()
        res["running_var"] = m.running_var.clone()
        res["num_batches_tracked"] = int(m.num_batches_tracked)
        out.append(res)
    return out


# --------------------------------------------------------------------------------------------------------------
# Chapter 8: data-parallel training of a small BN network on Fashion-MNIST, per-process BN vs SyncBatchNorm
# --------------------------------------------------------------------------------------------------------------
def _net(width: int = 16):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * width * 49, 10))


def train_worker(rank: int, world_size: int, cfg: dict) -> dict:
    """Train ``_net`` with DistributedDataParallel on this rank's shard of each global batch.

    cfg: sync (bool), batch (per process), steps, lr, seed, n_train, n_test. The data are the first n_train
    Fashion-MNIST training images (the same order on every rank: rank p takes rows p::P of each global batch).
    Returns test accuracy (evaluated on rank 0's copy; DDP keeps the copies' parameters equal), the time spent
    in SyncBatchNorm's collectives and in DDP's gradient all-reduce, and the bytes SyncBatchNorm sent per step.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from ..data import load_fashion_mnist
    torch.manual_seed(cfg["seed"])
    xtr, ytr = load_fashion_mnist("train")
    xte, yte = load_fashion_mnist("test")
    xtr, ytr = (xtr[:cfg["n_train"]] - 0.286) / 0.353, ytr[:cfg["n_train"]]
    xte, yte = (xte[:cfg["n_test"]] - 0.286) / 0.353, yte[:cfg["n_test"]]
    model = _net(cfg.get("width", 16))
    if cfg["sync"]:
        model = D.convert_sync_batchnorm(model)
    model = DDP(model)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=0.9)
    g = torch.Generator().manual_seed(cfg["seed"])
    global_batch = cfg["batch"] * world_size
    D.reset_comm_stats()
    t_step = 0.0
    losses = []
    step = 0
    while step < cfg["steps"]:
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(perm) - global_batch + 1, global_batch):
            if step >= cfg["steps"]:
                break
            idx = perm[i:i + global_batch][rank::world_size]
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            t_step += time.perf_counter() - t0
            losses.append(float(loss.detach()))
            step += 1
    comm = D.comm_stats()
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model.module(xte[i:i + 500]).argmax(1) for i in range(0, len(xte), 500)])
    acc = float((pred == yte).float().mean())
    return {"acc": acc, "loss": losses, "step_seconds": t_step / max(step, 1),
            "sync_seconds": comm["seconds"] / max(step, 1), "sync_bytes": comm["bytes"] / max(step, 1),
            "sync_calls": comm["calls"] / max(step, 1)}


def compare_worker(rank: int, world_size: int, cfgs: List[dict]) -> List[dict]:
    """``train_worker`` for each config in turn, in the same processes (one spawn for a whole comparison)."""
    return [train_worker(rank, world_size, cfg) for cfg in cfgs]
