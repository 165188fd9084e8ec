"""Chapter 8's workers for ``normbook.distributed.launch`` (its tests reuse them).

Spawned processes import their target by module path, so these live in the package (a function defined in a
notebook cannot be sent to a spawned process). Each worker is called as ``worker(rank, world_size, *args)``
inside an initialized process group and returns plain data (tensors are turned into NumPy arrays by ``launch``).

- :func:`exactness_worker`: SyncBatchNorm on this rank's shard, for comparison with BN on the whole batch.
- :func:`tasks_worker`: a list of tasks in the same processes (one spawn for a whole section): ``"train"``
  (:func:`train_task`, chapter 6's E4 MLP under DistributedDataParallel with per-process BN, SyncBN in groups, or
  SyncBN over every process), ``"buffers"`` (:func:`buffers_task`, what DDP's buffer sync does to the running
  statistics), ``"convert"`` (:func:`convert_task`, converting to SyncBN before or after wrapping in DDP) and
  ``"latency"`` (:func:`latency_task`, the time of one all_gather by message size).
"""
from __future__ import annotations

import inspect
import time
from typing import List

import torch
import torch.distributed as dist
from torch import nn

from .. import distributed as D

__all__ = ["make_batch", "shard", "exactness_worker", "ddp_kwargs", "sync_group", "copying_convert",
           "train_task", "buffers_task", "convert_task", "latency_task", "tasks_worker"]


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
    """For each case {sizes, channels, spatial, dtype, momentum, steps, group_size}: run ``steps`` training steps of
    SyncBatchNorm on this rank's shard (same weight/bias; synchronized within groups of ``group_size``
    consecutive ranks when given, see :func:`sync_group`), backward with the shard of a fixed upstream gradient,
    then one evaluation forward. Returns this rank's outputs, input gradients, local weight/bias gradients, the
    final buffers and the collectives SyncBatchNorm issued in each step (``calls``, ``checks``, ``bytes``). A
    case that raises returns the error's type name and message instead."""
    out = []
    for case in cases:
        sizes = case["sizes"]
        dtype = getattr(torch, case.get("dtype", "float64"))
        channels = case["channels"]
        if isinstance(channels, list):  # a different channel count per rank (an error case)
            channels = channels[rank]
        x, dy, w, b = make_batch(sizes, channels, tuple(case.get("spatial", ())), dtype, case.get("seed", 0))
        group = sync_group(rank, world_size, case["group_size"]) if "group_size" in case else None
        m = D.SyncBatchNorm(channels, momentum=case.get("momentum", 0.1), process_group=group, dtype=dtype)
        with torch.no_grad():
            m.weight.copy_(w)
            m.bias.copy_(b)
        res = {"ys": [], "dxs": [], "dws": [], "dbs": [], "calls": [], "checks": [], "bytes": []}
        try:
            for _ in range(case.get("steps", 2)):
                xs = shard(x, sizes, rank).clone().requires_grad_(True)
                m.weight.grad = m.bias.grad = None
                D.reset_comm_stats()
                y = m(xs)
                y.backward(shard(dy, sizes, rank))
                comm = D.comm_stats()
                for key in ("calls", "checks", "bytes"):
                    res[key].append(comm[key])
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
# Chapter 8's experiments under DistributedDataParallel
# --------------------------------------------------------------------------------------------------------------
def ddp_kwargs(sync_buffers: bool) -> dict:
    """DistributedDataParallel's switch for copying rank 0's buffers to every process at each forward pass:
    ``forward_sync_buffers`` since torch 2.13, ``broadcast_buffers`` (deprecated there) before."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
        return {"forward_sync_buffers": sync_buffers}
    return {"broadcast_buffers": sync_buffers}


def sync_group(rank: int, world_size: int, group_size: int):
    """The process group SyncBatchNorm synchronizes over when the processes form groups of ``group_size``
    consecutive ranks (as apex's ``create_syncbn_process_group``): None (the whole world) when ``group_size``
    is the world size. Every process creates every group (``new_group`` is collective) and keeps its own."""
    if world_size % group_size:
        raise ValueError(f"group_size {group_size} must divide the world size {world_size}")
    if group_size == world_size:
        return None
    mine = None
    for start in range(0, world_size, group_size):
        group = dist.new_group(list(range(start, start + group_size)))
        if start <= rank < start + group_size:
            mine = group
    return mine


def copying_convert(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm for ``normbook.distributed.SyncBatchNorm`` the way apex's and Horovod's
    ``convert_syncbn_model`` do: the new layer gets *new* Parameter objects holding copies of the weight and bias
    (``mod.weight.data = module.weight.data.clone().detach()``). ``convert_sync_batchnorm`` (torch's and
    normbook's) reuses the Parameter objects instead. In place below the root; returns the module."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            new = D.SyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.running_mean, new.running_var = child.running_mean, child.running_var
            if child.affine:
                new.weight.data = child.weight.data.clone().detach()
                new.bias.data = child.bias.data.clone().detach()
            setattr(module, name, new)
        else:
            copying_convert(child)
    return module


def _fashion(n_train: int, n_test: int):
    from ..data import load_fashion_mnist, train_val_split
    (X, y), _ = train_val_split()
    X_test, y_test = load_fashion_mnist("test")
    return X[:n_train], y[:n_train], X_test[:n_test], y_test[:n_test]


def train_task(rank: int, world_size: int, cfg: dict) -> dict:
    """Chapter 6's E4 network (MLP 784-256-256-10, BatchNorm1d after each hidden Linear) trained with
    DistributedDataParallel, SGD with momentum 0.9, on this rank's shard of each global batch.

    cfg: ``group`` (SyncBatchNorm over groups of this many consecutive processes; 1: per-process
    ``torch.nn.BatchNorm1d``, no conversion), ``batch`` (examples per process), ``steps``, ``lr``, ``seed``,
    ``n_train`` (the first images of the book's training split), ``n_test`` (of the test file), ``sync_buffers``
    (DDP copies rank 0's buffers at each forward; default True, DDP's default). Each step draws a global batch of
    ``batch * world_size`` examples (the same order on every rank, from ``seed``); rank p takes the p-th
    contiguous shard, so a group of k consecutive ranks holds k consecutive shards.

    Returns this rank's test accuracy (its own copy, in eval mode: its own running statistics), the first BN
    layer's running mean and variance, ms per step, and per step after the first (which also checks channels):
    the time, calls and bytes of SyncBatchNorm's collectives.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from . import models
    from .ch06 import e4_model
    X, y, X_test, y_test = _fashion(cfg["n_train"], cfg["n_test"])
    torch.manual_seed(cfg["seed"])
    model = e4_model(models.batch_norm())
    if cfg["group"] > 1:
        model = D.convert_sync_batchnorm(model, sync_group(rank, world_size, cfg["group"]))
    ddp = DDP(model, **ddp_kwargs(cfg.get("sync_buffers", True)))
    opt = torch.optim.SGD(ddp.parameters(), lr=cfg["lr"], momentum=0.9)
    order = torch.Generator().manual_seed(cfg["seed"])
    b, global_batch = cfg["batch"], cfg["batch"] * world_size
    step, seconds, perm, pos = 0, 0.0, torch.randperm(len(X), generator=order), 0
    while step < cfg["steps"]:
        if pos + global_batch > len(X):
            perm, pos = torch.randperm(len(X), generator=order), 0
        idx = perm[pos:pos + global_batch][rank * b:(rank + 1) * b]
        pos += global_batch
        if step == 1:
            D.reset_comm_stats()   # steady state: leave out the first step's one-time channel check
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(ddp(X[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= 1:
            seconds += time.perf_counter() - t0
        step += 1
    comm = D.comm_stats()
    steady = max(step - 1, 1)
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(X_test[i:i + 1000]).argmax(1) for i in range(0, len(X_test), 1000)])
    bn = next(m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, D.SyncBatchNorm)))
    return {"acc": float((pred == y_test).float().mean()), "running_mean": bn.running_mean.clone(),
            "running_var": bn.running_var.clone(), "step_ms": 1e3 * seconds / steady,
            "sync_ms": 1e3 * comm["seconds"] / steady, "sync_calls": comm["calls"] / steady,
            "sync_bytes": comm["bytes"] / steady}


def buffers_task(rank: int, world_size: int, cfg: dict) -> dict:
    """One BatchNorm1d(1) layer under DDP; rank p's inputs have mean p (``p + N(0, 1)``), so every process's
    shards have their own mean and the population's is ``(P - 1) / 2``. cfg: ``sync_buffers`` (DDP's buffer
    sync), ``sync_bn`` (SyncBatchNorm instead), ``steps``, ``batch``, ``seed``. Returns this rank's running mean
    and running variance after training."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    torch.manual_seed(cfg["seed"])
    layer = D.SyncBatchNorm(1) if cfg.get("sync_bn") else nn.BatchNorm1d(1)
    ddp = DDP(layer, **ddp_kwargs(cfg.get("sync_buffers", True)))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.01)
    data = torch.Generator().manual_seed(cfg["seed"] * 100 + rank)
    for _ in range(cfg["steps"]):
        x = rank + torch.randn(cfg["batch"], 1, generator=data)
        loss = ddp(x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"running_mean": float(layer.running_mean[0]), "running_var": float(layer.running_var[0])}


def convert_task(rank: int, world_size: int, cfg: dict) -> dict:
    """Convert a small BN network to SyncBatchNorm before or after wrapping it in DDP and building the optimizer.

    cfg: ``order`` ("before" or "after"), ``converter`` ("convert_sync_batchnorm": normbook's, which reuses the
    Parameter objects as torch's does; "copying": :func:`copying_convert`, new Parameter objects), ``steps``.
    Returns whether every step ran (else the first line of the error and the step that raised), whether the
    BN layer is a SyncBatchNorm, whether its weight changed from its initial value, the weight itself (to compare
    across ranks) and SyncBatchNorm's collectives per step."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    convert = D.convert_sync_batchnorm if cfg["converter"] == "convert_sync_batchnorm" else copying_convert
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    if cfg["order"] == "before":
        net = convert(net)
    ddp = DDP(net, find_unused_parameters=cfg.get("find_unused", False))
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    if cfg["order"] == "after":
        convert(ddp)
    start = net[1].weight.detach().clone()
    data = torch.Generator().manual_seed(rank)
    error, failed_step = None, None
    D.reset_comm_stats()
    steps = 0
    for step in range(cfg.get("steps", 3)):
        try:
            x = rank + torch.randn(4, 4, generator=data)
            loss = ddp(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
        except RuntimeError as e:
            error, failed_step = str(e).strip().splitlines()[0], step
            break
    layer = net[1]
    return {"error": error, "failed_step": failed_step, "is_sync": isinstance(layer, D.SyncBatchNorm),
            "weight_changed": bool((layer.weight.detach() != start).any()), "weight": layer.weight.detach(),
            "sync_calls": D.comm_stats()["calls"] / max(steps, 1)}


def latency_task(rank: int, world_size: int, cfg: dict) -> dict:
    """Milliseconds of one ``all_gather`` of ``n`` float32 numbers from every process, for each ``n`` in
    ``cfg["sizes"]``: ``cfg["repeats"]`` timed calls after 5 untimed ones, the sizes interleaved round by round
    (``times_ms[i][k]``: size i, round k) and their medians. Separates a collective's fixed cost per call from
    its cost per byte."""
    times = {n: [] for n in cfg["sizes"]}
    for round_ in range(cfg.get("repeats", 30) + 5):
        for n in cfg["sizes"]:
            mine = torch.full((n,), float(rank))
            out = [torch.empty_like(mine) for _ in range(world_size)]
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_gather(out, mine)
            if round_ >= 5:
                times[n].append(1e3 * (time.perf_counter() - t0))
    return {"sizes": list(cfg["sizes"]), "times_ms": [times[n] for n in cfg["sizes"]],
            "median_ms": [float(torch.tensor(times[n]).median()) for n in cfg["sizes"]]}


_TASKS = {"train": train_task, "buffers": buffers_task, "convert": convert_task, "latency": latency_task}


def tasks_worker(rank: int, world_size: int, tasks: List[dict]) -> List[dict]:
    """Run each task ``{"kind": "train" | "buffers" | "convert" | "latency", ...cfg}`` in turn in the same processes (one
    spawn for a section's runs) and return their results in order."""
    return [_TASKS[task["kind"]](rank, world_size, task) for task in tasks]
