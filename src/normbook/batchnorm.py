"""BatchNorm layers inside a model: find them, recompute their population statistics, freeze them.

These are the one implementation of each helper in the package (the chapters, the book's runs and the folding
code all call them):

- :func:`is_batchnorm` -- one rule for "is this module a BatchNorm": torch's ``_BatchNorm`` subclasses
  (BatchNorm1d/2d/3d, SyncBatchNorm, the lazy ones) and normbook's (``normbook.nn.BatchNorm1d/2d/3d``, Batch
  Renorm, Ghost BN, ``normbook.distributed.SyncBatchNorm``);
- :func:`batchnorm_layers` -- all of them in a model, in module order;
- :func:`recompute_batchnorm_stats` -- replace the running averages by population statistics under the final
  weights (Ioffe & Szegedy's Algorithm 2; "precise BN" in Wu & Johnson 2021);
- :func:`freeze_batch_norm` -- replace every BatchNorm2d by a :class:`normbook.nn.FrozenBatchNorm2d`.
"""
from __future__ import annotations

from typing import Iterable, List, Optional

import torch
from torch import nn

from . import nn as nbnn
from .config import device_of

__all__ = ["is_batchnorm", "batchnorm_layers", "recompute_batchnorm_stats", "freeze_batch_norm"]


def is_batchnorm(module: nn.Module) -> bool:
    """True for BatchNorm layers of torch.nn (BatchNorm1d/2d/3d, SyncBatchNorm, the lazy variants) and of
    normbook (``normbook.nn``'s BatchNorm1d/2d/3d and the layers built on them, ``normbook.distributed``'s
    SyncBatchNorm). Instance norms, which share the base class ``_NormBase`` with BatchNorm, are not."""
    return isinstance(module, (nn.modules.batchnorm._BatchNorm, nbnn._BatchNorm))


def batchnorm_layers(model: nn.Module) -> List[nn.Module]:
    """The BatchNorm layers of ``model`` (itself included), in module order."""
    return [m for m in model.modules() if is_batchnorm(m)]


@torch.no_grad()
def recompute_batchnorm_stats(model: nn.Module, loader: Iterable, num_batches: Optional[int] = None, *,
                              batchnorm_only: bool = False) -> nn.Module:
    """Replace every BatchNorm layer's running estimates by population statistics of the data in ``loader``.

    One pass over ``loader`` (batches ``X`` or ``(X, y, ...)``; at most ``num_batches`` of them) in train mode,
    without gradients, with each BatchNorm's running statistics reset and ``momentum=None``, so that afterwards
    ``running_mean`` is the average of the batch means and ``running_var`` the average of the batches' unbiased
    variances under the *current* weights (instead of the moving averages collected while the weights were still
    changing). Each layer's own momentum and every module's train/eval mode are restored afterwards. Works in
    place and returns ``model``.

    ``batchnorm_only=True`` puts only the BatchNorm layers in train mode and every other module in eval mode, so
    that dropout is off while the statistics are collected: the statistics evaluation will see (the remedy for
    dropout's variance shift, Li et al. 2019). By default the whole model runs in train mode.

    Layers with ``track_running_stats=False`` are left alone. Batches of one example would make BatchNorm1d raise
    (one value per channel); a loader with ``drop_last=True`` avoids them.
    """
    layers = [m for m in batchnorm_layers(model) if m.track_running_stats and m.running_mean is not None]
    if not layers:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    device = device_of(model)
    seen = 0
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        if batchnorm_only:
            model.eval()
            for m in layers:
                m.train()
        for i, batch in enumerate(loader):
            if num_batches is not None and i >= num_batches:
                break
            X = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(X.to(device))
            seen += 1
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    if seen == 0:
        raise ValueError("the loader yielded no batches: the running statistics were reset and not recomputed")
    return model


def freeze_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d (torch's or normbook's) inside ``model`` by a
    :class:`normbook.nn.FrozenBatchNorm2d` holding its statistics and affine values (in place); return
    ``model``."""
    for name, child in model.named_children():
        if isinstance(child, (nn.BatchNorm2d, nbnn.BatchNorm2d)):
            setattr(model, name, nbnn.FrozenBatchNorm2d.from_batch_norm(child))
        else:
            freeze_batch_norm(child)
    return model
