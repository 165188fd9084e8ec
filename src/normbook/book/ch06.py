"""Chapter 6's own helpers: the measurements behind its explanations, and E4 (batch size, BN against GN).

- :func:`recomputed_accuracies`: an ``on_epoch_end`` hook separating the lag of BN's running averages from their
  estimation noise (statistics recomputed under the current weights from a small and from a large sample).
- :func:`ema_effective_batches`: how many batches a running average with a given momentum is worth.
- :func:`sweep_diagnostics`: an ``on_epoch_end`` hook recording sigmoid saturation and the size of the weights
  that feed a BatchNorm layer (E2's explanations).
- :func:`scaled_init_last_xavier`, :func:`weights_before_norm`: E3's control (the last layer at Xavier's scale,
  every other weight from N(0, s^2)) and the weights whose scale BN cancels.
- :func:`effective_sample_size`: how many independent values a BN channel mean is worth (E4's test of "values
  per statistic").
- :func:`e4_model`: an MLP with a normalization after each hidden Linear layer; :func:`ghost_batch_norm`: a
  norm factory normalizing groups of a few examples inside a larger batch (E4's intervention).
- :func:`values_per_statistic`: how many numbers one mean/variance of a layer averages.
- :func:`e4_sweep`: error per (normalization, batch size, seed), in forked workers
  (:func:`normbook.book.parallel.parallel_map`), evaluated on the validation split while choosing and
  analysing (``split="test"`` reports chosen settings once).
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from torch import nn

from .. import data
from .. import nn as nbnn
from ..batchnorm import is_batchnorm, recompute_batchnorm_stats
from .parallel import parallel_map
from .runs import SPLITS, Data
from .train import evaluate, train

__all__ = ["ema_effective_batches", "recomputed_accuracies", "sweep_diagnostics", "weights_before_norm",
           "scaled_init_last_xavier", "effective_sample_size", "GhostBatchNorm1d", "ghost_batch_norm",
           "e4_model", "values_per_statistic", "e4_sweep"]


# ---------------------------------------------------------------- E1: why the test accuracy jumps
def ema_effective_batches(momentum: float) -> float:
    """How many batches BN's running average is worth, for noise: the running mean after many steps weighs the
    batch k steps back by ``momentum * (1 - momentum) ** k``; the variance of such a weighted mean of
    independent batch means is that of a plain mean over ``1 / sum(w_k^2) = (2 - momentum) / momentum``
    batches (19 for PyTorch's default 0.1)."""
    if not 0 < momentum <= 1:
        raise ValueError(f"momentum must be in (0, 1], got {momentum!r}")
    return (2.0 - momentum) / momentum


def recomputed_accuracies(dataset: Data, sizes: dict, *, split: str = "test", batch_size: int = 256,
                          seed: int = 0) -> Callable[[nn.Module, int], dict]:
    """An ``on_epoch_end`` hook for :func:`normbook.book.train.train` that evaluates, after every epoch, copies of
    the model whose BN statistics are recomputed under the *current* weights
    (:func:`normbook.batchnorm.recompute_batchnorm_stats`, batches of ``batch_size`` as in training) from
    ``n`` training examples drawn at random, afresh each epoch, for each ``name -> n`` in ``sizes``. Such
    statistics have no lag; their noise is set by ``n``. With one ``n`` equal to what the running averages are
    worth (``ema_effective_batches(momentum) * batch_size``) and one much larger, the running averages'
    accuracy minus the first isolates the lag, the first minus the second the noise.

    Returns ``{"<split>_acc_<name>": accuracy}`` per epoch; the model being trained is not touched, and the
    draws use their own generator (seeded by ``seed`` and the epoch), so training is the same with or without
    the hook."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name, n in sizes.items():
        if not isinstance(n, int) or not 0 < n <= dataset.train_size:
            raise ValueError(f"sample size {name}={n!r} must be an integer in [1, {dataset.train_size}]")

    def hook(model: nn.Module, epoch: int) -> dict:
        gen = torch.Generator().manual_seed(1_000_003 * seed + epoch)
        out = {}
        for name, n in sizes.items():
            idx = torch.randperm(dataset.train_size, generator=gen)[:n].to(dataset.X.device)
            twin = copy.deepcopy(model)
            recompute_batchnorm_stats(twin, data.TensorLoader(dataset.X[idx], dataset.y[idx], batch_size,
                                                              drop_last=n >= batch_size))
            out[f"{split}_acc_{name}"] = evaluate(twin, dataset.eval_loader(split))
        return out
    return hook


# ---------------------------------------------------------------- E2 and E3: what the weights do
def weights_before_norm(model: nn.Module) -> list:
    """The Linear/Conv2d layers of a Sequential-style model that are followed by a normalization layer before the
    next Linear/Conv2d: the weights whose scale BN cancels (in LeNet-BN, all but the last Linear)."""
    found, pending = [], None
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            pending = m
        elif pending is not None and (is_batchnorm(m) or _is_group_norm(m) or _is_layer_norm(m)):
            found.append(pending)
            pending = None
    return found


def sweep_diagnostics(X: torch.Tensor, *, low: float = 0.01, high: float = 0.99) -> Callable[[nn.Module, int],
                                                                                                dict]:
    """An ``on_epoch_end`` hook measuring, on the inputs ``X`` (in eval mode, without gradients):

    - ``saturated``: the fraction of sigmoid outputs (over every ``nn.Sigmoid`` of the model) below ``low`` or
      above ``high``, where the sigmoid's slope is below 0.01 (NaN without sigmoids);
    - ``weight_sq_norm``: the summed squared norm of the weights that feed a normalization layer
      (:func:`weights_before_norm`; NaN without normalization): their scale sets the effective step
      ``lr / ||W||^2`` of a scale-invariant layer."""
    def hook(model: nn.Module, epoch: int) -> dict:
        outputs = []
        handles = [m.register_forward_hook(lambda mod, inp, out: outputs.append(out.detach()))
                   for m in model.modules() if isinstance(m, nn.Sigmoid)]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(X)
        finally:
            model.train(was_training)
            for h in handles:
                h.remove()
        if outputs:
            total = sum(o.numel() for o in outputs)
            saturated = sum(((o < low) | (o > high)).sum().item() for o in outputs) / total
        else:
            saturated = float("nan")
        layers = weights_before_norm(model)
        norm = sum(float(m.weight.detach().pow(2).sum()) for m in layers) if layers else float("nan")
        return {"saturated": saturated, "weight_sq_norm": norm}
    return hook


def scaled_init_last_xavier(scale: float) -> Callable[[nn.Module], nn.Module]:
    """E3's control: every Linear/Conv2d weight from N(0, scale^2) with zero bias, except the last Linear layer,
    which gets Xavier-uniform weights and a zero bias whatever ``scale`` is. Returns ``init(model) -> model``."""
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")

    def init(model: nn.Module) -> nn.Module:
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        with torch.no_grad():
            for m in layers[:-1]:
                m.weight.normal_(0.0, float(scale))
                if m.bias is not None:
                    m.bias.zero_()
            nn.init.xavier_uniform_(layers[-1].weight)
            if layers[-1].bias is not None:
                layers[-1].bias.zero_()
        return model
    return init


# ---------------------------------------------------------------- E4: values per statistic, examples per statistic
def effective_sample_size(x: torch.Tensor, batch_size: int, *, stride: int = 1, draws: int = 4000,
                          seed: int = 0) -> float:
    """How many independent values a BatchNorm channel mean over ``batch_size`` examples is worth.

    ``x``: activations (N, C, H, W) of N examples (a BN layer's input). A batch of ``batch_size`` examples drawn
    at random, with the positions ``[::stride, ::stride]`` of each, gives each channel a mean over
    ``batch_size * P`` values (P positions). Returns the channel average of ``Var(x) / Var(batch mean)`` (the
    variance of one value over the variance of the mean, estimated over ``draws`` random batches): ``B * P``
    if the values were independent, less when they are correlated."""
    if x.dim() != 4:
        raise ValueError(f"expected activations (N, C, H, W), got shape {tuple(x.shape)}")
    if not isinstance(batch_size, int) or not 1 <= batch_size <= len(x):
        raise ValueError(f"batch_size must be an integer in [1, {len(x)}], got {batch_size!r}")
    x = x.detach().double()[:, :, ::stride, ::stride]
    value_var = x.transpose(0, 1).flatten(1).var(1)            # (C,): over examples and positions
    example_means = x.mean((2, 3))                             # (N, C)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(x), (draws, batch_size), generator=gen)
    batch_means = example_means[idx].mean(1)                   # (draws, C)
    return float((value_var / batch_means.var(0)).mean())


class GhostBatchNorm1d(nbnn.GhostBatchNorm2d):
    """Ghost Batch Normalization of an (N, C) input (after a Linear layer): in training, each group of
    ``virtual_batch_size`` consecutive examples is normalized with its own statistics
    (:class:`normbook.nn.GhostBatchNorm2d` on the input viewed as (N, C, 1, 1)); evaluation uses the running
    averages, as BatchNorm1d does."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"expected 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() == 2:
            return super().forward(input[:, :, None, None])[:, :, 0, 0]
        return super().forward(input)


def ghost_batch_norm(ghost_size: int, **kwargs) -> Callable[[int, int], nn.Module]:
    """A norm factory (see :mod:`normbook.book.models`) for :class:`GhostBatchNorm1d` after Linear layers and
    :class:`normbook.nn.GhostBatchNorm2d` after convolutions, with ghost batches of ``ghost_size`` examples."""
    def make(num_features: int, spatial_dims: int) -> nn.Module:
        cls = GhostBatchNorm1d if spatial_dims == 0 else nbnn.GhostBatchNorm2d
        return cls(num_features, ghost_size, **kwargs)
    return make


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
    ``spatial`` positions per channel (H*W; 1 after a Linear layer): B*H*W for BatchNorm (g*H*W for Ghost BN with
    ghost batches of g < B), (C/G)*H*W for GroupNorm (independent of B), the normalized features for LayerNorm.
    It counts values, not independent ones: neighbouring pixels are correlated, so a channel's H*W values carry
    less information than H*W examples (:func:`effective_sample_size` measures how much)."""
    if is_batchnorm(layer):
        ghost = getattr(layer, "virtual_batch_size", None)  # Ghost BN normalizes groups of examples
        return (min(batch_size, ghost) if ghost else batch_size) * spatial
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
    recomputed = float("nan")
    if any(is_batchnorm(m) for m in model.modules()):
        twin = copy.deepcopy(model)
        recompute_batchnorm_stats(twin, data.TensorLoader(dataset.X, dataset.y, b, drop_last=True))
        recomputed = 1.0 - evaluate(twin, eval_loader)
    norm_layer = _first_norm(model)
    final = history.final()
    return {"model": job["name"], "batch_size": b, "lr": job["lr"], "seed": seed,
            "values_per_stat": values_per_statistic(norm_layer, b) if norm_layer is not None else float("nan"),
            "train_loss": final["train_loss"], "train_acc": final["train_acc"], f"{split}_acc": final["eval_acc"],
            f"{split}_error": 1.0 - final["eval_acc"], f"{split}_error_batch_stats": 1.0 - correct / max(total, 1),
            f"{split}_error_recomputed": recomputed,
            f"{split}_error_by_epoch": [1.0 - a for a in history.eval_acc],
            "diverged": history.diverged, "epochs": len(history), "seconds": seconds,
            "examples_per_sec": float(sum(history.examples_per_sec) / len(history))}


def e4_sweep(norms: dict, batch_sizes: Sequence[int], seeds: Sequence[int], *, epochs=3,
             base_lr: float = 0.05, base_batch_size: int = 32, train_size: Optional[int] = 12000,
             val_size: Optional[int] = 5000, test_size: Optional[int] = 5000, split: str = "val",
             optimizer: str = "momentum", make_model: Callable = e4_model, processes: int = 2) -> pd.DataFrame:
    """E4: error of ``make_model(norm)`` (default :func:`e4_model`) for each norm factory in ``norms`` (name ->
    factory ``norm(num_features, spatial_dims)``, e.g. ``models.batch_norm()``; None for no norm) at each batch
    size and seed, evaluated on ``split``. The learning rate follows the linear scaling rule
    ``lr = base_lr * B / base_batch_size``, every batch size trains on the same ``train_size`` examples (the
    last incomplete batch dropped) for ``epochs`` epochs: one number for all, or a dict ``{batch_size:
    epochs}`` (e.g. as many as each needs for its validation error to stop falling), SGD with momentum 0.9 by
    default. Runs go two at a time in forked processes, one thread each.

    Returns one row per (model, batch_size, seed): model, batch_size, lr, seed, values_per_stat (the values one
    statistic of the first norm layer averages), train_loss, train_acc, ``<split>_acc``, ``<split>_error`` (eval
    mode: running averages), ``<split>_error_batch_stats`` (train mode on batches of size B: batch statistics),
    ``<split>_error_recomputed`` (BN statistics recomputed on the training set under the final weights; NaN
    without BN), ``<split>_error_by_epoch`` (eval-mode error after every epoch, a list), diverged, epochs,
    seconds, examples_per_sec."""
    if len(seeds) < 1:
        raise ValueError("give at least one seed")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for b in batch_sizes:
        if not isinstance(b, int) or b < 2:
            raise ValueError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples), got {b!r}")
    per_size = epochs if isinstance(epochs, dict) else {b: epochs for b in batch_sizes}
    missing = [b for b in batch_sizes if b not in per_size]
    if missing:
        raise ValueError(f"epochs has no entry for batch sizes {missing}")
    jobs = [{"name": name, "norm": norm, "batch_size": b, "seed": s, "lr": base_lr * b / base_batch_size,
             "epochs": per_size[b], "optimizer": optimizer, "split": split, "make_model": make_model}
            for name, norm in norms.items() for b in batch_sizes for s in seeds]
    dataset = Data(train_size, val_size, test_size, device="cpu", threads=1)  # loaded once, before forking
    # the longest runs (most steps) first, so the two workers finish together
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i]["epochs"] / jobs[i]["batch_size"])
    rows = parallel_map(lambda job: _e4_run(job, dataset), [jobs[i] for i in order], processes)
    by_job = dict(zip(order, rows))
    return pd.DataFrame([by_job[i] for i in range(len(jobs))])
