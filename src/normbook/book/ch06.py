"""Chapter 6's own helpers: E4, batch size where each statistic averages few values, run two at a time.

- :func:`e4_model`: an MLP with a normalization after each hidden Linear layer.
- :func:`values_per_statistic`: how many numbers one mean/variance of a layer averages.
- :func:`e4_sweep`: error per (normalization, batch size, seed), in forked workers
  (:func:`normbook.book.parallel.parallel_map`), evaluated on ``split`` (validation while choosing, test to
  report).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from torch import nn

from ..batchnorm import is_batchnorm
from .parallel import parallel_map
from .runs import SPLITS, Data
from .train import train

__all__ = ["e4_model", "values_per_statistic", "e4_sweep"]


def e4_model(norm: Optional[Callable] = None, *, width: int = 256, depth: int = 2,
             num_classes: int = 10) -> nn.Sequential:
    """The E4 network: an MLP on flattened 1x28x28 images, ``depth`` blocks Linear(width) -> norm -> ReLU, then a
    linear head. After a Linear layer a BatchNorm statistic averages one value per example, so at batch size B
    it averages B values; a GroupNorm statistic averages ``width / groups`` values of one example whatever B is
    (see :func:`values_per_statistic`). ``norm`` is a norm factory ``norm(num_features, spatial_dims)``
    (spatial_dims 0 here), e.g. ``models.batch_norm()``; None builds the network without normalization (Linear
    layers then keep biases)."""
    bias = norm is None
    layers: list = [nn.Flatten()]
    fan_in = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=bias), *([norm(width, 0)] if norm is not None else []), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def _is_group_norm(layer: nn.Module) -> bool:
    return type(layer).__name__ == "GroupNorm"  # torch.nn.GroupNorm and normbook.nn.GroupNorm


def _is_layer_norm(layer: nn.Module) -> bool:
    return type(layer).__name__ == "LayerNorm"


def values_per_statistic(layer: nn.Module, batch_size: int, spatial: int = 1) -> int:
    """How many numbers one mean/variance of ``layer`` averages for a batch of ``batch_size`` inputs with
    ``spatial`` positions per channel (H*W; 1 after a Linear layer): B*H*W for BatchNorm, (C/G)*H*W for
    GroupNorm (independent of B), the normalized features for LayerNorm. It counts values, not independent ones:
    neighbouring pixels are correlated, so a channel's H*W values carry less information than H*W examples."""
    if is_batchnorm(layer):
        return batch_size * spatial
    if _is_group_norm(layer):
        return layer.num_channels // layer.num_groups * spatial
    if _is_layer_norm(layer):
        return math.prod(layer.normalized_shape)
    raise ValueError(f"no rule for {type(layer).__name__}: expected a BatchNorm, GroupNorm or LayerNorm layer")


def _first_norm(model: nn.Module) -> Optional[nn.Module]:
    return next((m for m in model.modules() if is_batchnorm(m) or _is_group_norm(m) or _is_layer_norm(m)), None)


def _e4_run(job: dict, dataset: Data) -> dict:
    """One (model, batch size, seed) run of :func:`e4_sweep`, on one thread (a worker process or the caller)."""
    torch.set_num_threads(1)
    b, seed, split = job["batch_size"], job["seed"], job["split"]
    torch.manual_seed(seed)
    model = job["make_model"](job["norm"])
    train_loader, eval_loader = dataset.loaders(b, seed, split, drop_last=True)
    start = time.perf_counter()
    history = train(model, train_loader, eval_loader, epochs=job["epochs"], lr=job["lr"],
                    optimizer=job["optimizer"], init=None, seed=seed, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    # the same weights with batch statistics at evaluation: batches of the training batch size, train mode
    twin = copy.deepcopy(model).train()
    correct = total = 0
    Xe, ye = dataset.split(split)
    with torch.no_grad():
        for i in range(0, len(Xe) - b + 1, b):
            correct += (twin(Xe[i:i + b]).argmax(1) == ye[i:i + b]).sum().item()
            total += b
    norm_layer = _first_norm(model)
    final = history.final()
    return {"model": job["name"], "batch_size": b, "lr": job["lr"], "seed": seed,
            "values_per_stat": values_per_statistic(norm_layer, b) if norm_layer is not None else float("nan"),
            "train_loss": final["train_loss"], "train_acc": final["train_acc"], f"{split}_acc": final["eval_acc"],
            f"{split}_error": 1.0 - final["eval_acc"], f"{split}_error_batch_stats": 1.0 - correct / max(total, 1),
            "diverged": history.diverged, "epochs": len(history), "seconds": seconds,
            "examples_per_sec": float(sum(history.examples_per_sec) / len(history))}


def e4_sweep(norms: dict, batch_sizes: Sequence[int], seeds: Sequence[int], *, epochs: int = 3,
             base_lr: float = 0.05, base_batch_size: int = 32, train_size: Optional[int] = 12000,
             val_size: Optional[int] = 5000, test_size: Optional[int] = 5000, split: str = "val",
             optimizer: str = "momentum", make_model: Callable = e4_model, processes: int = 2) -> pd.DataFrame:
    """E4: error of ``make_model(norm)`` (default :func:`e4_model`) for each norm factory in ``norms`` (name ->
    factory ``norm(num_features, spatial_dims)``, e.g. ``models.batch_norm()``; None for no norm) at each batch
    size and seed, evaluated on ``split``. The learning rate follows the linear scaling rule
    ``lr = base_lr * B / base_batch_size``, every batch size trains the same number of epochs on the same
    ``train_size`` examples (the last incomplete batch dropped), SGD with momentum 0.9 by default. Runs go two
    at a time in forked processes, one thread each.

    Returns one row per (model, batch_size, seed): model, batch_size, lr, seed, values_per_stat (the values one
    statistic of the first norm layer averages), train_loss, train_acc, ``<split>_acc``, ``<split>_error`` (eval
    mode: running averages), ``<split>_error_batch_stats`` (train mode on batches of size B: batch statistics),
    diverged, epochs, seconds, examples_per_sec."""
    if len(seeds) < 1:
        raise ValueError("give at least one seed")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for b in batch_sizes:
        if not isinstance(b, int) or b < 2:
            raise ValueError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples), got {b!r}")
    jobs = [{"name": name, "norm": norm, "batch_size": b, "seed": s, "lr": base_lr * b / base_batch_size,
             "epochs": epochs, "optimizer": optimizer, "split": split, "make_model": make_model}
            for name, norm in norms.items() for b in batch_sizes for s in seeds]
    dataset = Data(train_size, val_size, test_size, device="cpu", threads=1)  # loaded once, before forking
    # the longest runs (smallest batches) first, so the two workers finish together
    order = sorted(range(len(jobs)), key=lambda i: jobs[i]["batch_size"])
    rows = parallel_map(lambda job: _e4_run(job, dataset), [jobs[i] for i in order], processes)
    by_job = dict(zip(order, rows))
    return pd.DataFrame([by_job[i] for i in range(len(jobs))])
