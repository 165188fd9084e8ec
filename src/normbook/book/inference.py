r"""Inference-mode BatchNorm: running estimates, population statistics, the train/eval pitfalls, timing.

**Three conventions for one update.** Every framework keeps an exponential moving average of the batch
statistics, but the number called ``momentum`` weighs different terms:

- PyTorch (``torch_update``):        ``running = (1 - m) * running + m * batch``, default m = 0.1;
- d2l-zh, cs231n (``d2l_update``):   ``running = m * running + (1 - m) * batch``, default m = 0.9;
- Keras (``keras_update``):          ``running = m * running + (1 - m) * batch``, default m = 0.99.

PyTorch's ``m`` weighs the new batch, the others' ``m`` weighs the old estimate: torch's 0.1 is d2l's 0.9, and
Keras's 0.99 is torch's 0.01. ``momentum=None`` in PyTorch is a cumulative average (``cumulative_update``).
"""
from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "torch_update", "d2l_update", "keras_update", "cumulative_update", "running_estimates",
    "is_batchnorm", "batchnorm_layers", "recompute_batchnorm_stats", "predict", "accuracy", "eval_batch_size_lab",
    "median_time", "compare_times", "time_forward",
]


# --- the three momentum conventions, and momentum=None ------------------------------------------------------------

def torch_update(running, batch, momentum: float = 0.1):
    """PyTorch's convention: ``momentum`` is the weight of the *new* batch statistic."""
    return (1 - momentum) * running + momentum * batch


def d2l_update(running, batch, momentum: float = 0.9):
    """d2l-zh's and cs231n's convention: ``momentum`` is the weight of the *old* running value."""
    return momentum * running + (1 - momentum) * batch


def keras_update(running, batch, momentum: float = 0.99):
    """Keras's convention (``BatchNormalization(momentum=0.99)``): the weight of the old value, as in d2l-zh,
    with a default ten times closer to 1."""
    return momentum * running + (1 - momentum) * batch


def cumulative_update(running, batch, count: int):
    """PyTorch's ``momentum=None``: after ``count`` batches, the running value is the plain average of the
    ``count`` batch statistics (the new one gets weight ``1 / count``)."""
    if count < 1:
        raise ValueError(f"count is the number of batches seen so far, including this one: >= 1, got {count}")
    return running + (batch - running) / count


def running_estimates(batch_stats: Iterable, update: Callable = torch_update, init=0.0, **kwargs) -> List:
    """The sequence of running values after each batch statistic in ``batch_stats``.

    ``update`` is one of the conventions above (keyword arguments such as ``momentum`` pass through), or
    ``cumulative_update``, which is given the batch count. ``init`` is the starting value (torch starts the
    running mean at 0 and the running variance at 1).
    """
    running, out = init, []
    for k, stat in enumerate(batch_stats, start=1):
        running = update(running, stat, count=k) if update is cumulative_update else update(running, stat, **kwargs)
        out.append(running)
    return out


# --- BatchNorm layers in a model, and population statistics ---------------------------------------------------------

def is_batchnorm(module: nn.Module) -> bool:
    """True for BatchNorm layers of torch.nn (BatchNorm1d/2d/3d, SyncBatchNorm, lazy ones) and of normbook.nn."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    return any(cls.__name__ == "_BatchNorm" for cls in type(module).__mro__)


def batchnorm_layers(model: nn.Module) -> List[nn.Module]:
    """The BatchNorm layers of ``model`` (itself included), in module order."""
    return [m for m in model.modules() if is_batchnorm(m)]


def _device_of(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def recompute_batchnorm_stats(model: nn.Module, loader: Iterable, num_batches: Optional[int] = None) -> nn.Module:
    """Replace every BatchNorm layer's running estimates by population statistics of the training data.

    One pass over ``loader`` (batches ``X`` or ``(X, y, ...)``; at most ``num_batches`` of them) in train mode,
    without gradients, with each BatchNorm's running statistics reset and ``momentum=None``, so that afterwards
    ``running_mean`` is the average of the batch means and ``running_var`` the average of the batches' unbiased
    variances under the *final* weights (the procedure of Ioffe & Szegedy's Algorithm 2, instead of the moving
    averages collected while the weights were still changing). Each layer's momentum and every module's
    train/eval mode are restored afterwards. Works in place and returns ``model``.

    Layers with ``track_running_stats=False`` are left alone. Batches of one example would make BatchNorm1d raise
    (one value per channel); a loader with ``drop_last=True`` avoids them.
    """
    layers = [m for m in batchnorm_layers(model) if m.track_running_stats and m.running_mean is not None]
    if not layers:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    device = _device_of(model)
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        for i, batch in enumerate(loader):
            if num_batches is not None and i >= num_batches:
                break
            X = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(X.to(device))
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, training in modes.items():
            m.training = training
    return model


# --- predictions in either mode, on a copy ----------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, X: Tensor, batch_size: int = 256, train_mode: bool = False) -> Tensor:
    """Logits for ``X``, computed ``batch_size`` examples at a time, in eval mode or (``train_mode=True``) in
    train mode, i.e. with each batch's own statistics, as if ``model.eval()`` had been forgotten.

    Runs on a deep copy, so the model's running statistics and mode are untouched (in train mode, a forward pass
    would otherwise move the running estimates towards the evaluation batches).
    """
    net = copy.deepcopy(model)
    net.train(train_mode)
    device = _device_of(net)
    return torch.cat([net(X[i:i + batch_size].to(device)) for i in range(0, len(X), batch_size)])


def accuracy(model: nn.Module, X: Tensor, y: Tensor, batch_size: int = 256, train_mode: bool = False) -> float:
    """Fraction of ``X`` classified as ``y`` (see :func:`predict` for the arguments)."""
    logits = predict(model, X, batch_size, train_mode)
    return (logits.argmax(dim=1).cpu() == y.cpu()).float().mean().item()


def eval_batch_size_lab(model: nn.Module, X: Tensor, y: Tensor, batch_sizes: Sequence[int]) -> Dict[str, list]:
    """For each evaluation batch size: accuracy in eval mode, accuracy in train mode (``model.eval()``
    forgotten), and the mean absolute difference between the train-mode and eval-mode logits.

    Returns ``{"batch_size": [...], "eval": [...], "train": [...], "gap": [...]}``. Batch sizes must be at least
    2 if the model has a BatchNorm1d: one example gives one value per channel, which train mode refuses.
    """
    eval_logits = predict(model, X, batch_size=max(batch_sizes), train_mode=False).cpu()
    eval_acc = (eval_logits.argmax(1) == y.cpu()).float().mean().item()
    out: Dict[str, list] = {"batch_size": [], "eval": [], "train": [], "gap": []}
    for b in batch_sizes:
        n = (len(X) // b) * b  # whole batches only: a last batch of one would raise in train mode
        train_logits = predict(model, X[:n], batch_size=b, train_mode=True).cpu()
        out["batch_size"].append(b)
        out["eval"].append((eval_logits[:n].argmax(1) == y[:n].cpu()).float().mean().item() if n < len(X)
                           else eval_acc)
        out["train"].append((train_logits.argmax(1) == y[:n].cpu()).float().mean().item())
        out["gap"].append((train_logits - eval_logits[:n]).abs().mean().item())
    return out


# --- timing with repeats ------------------------------------------------------------------------------------------

def _sync(device: Optional[torch.device]) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], repeats: int = 7, number: Optional[int] = None, warmup: int = 1,
                device: Optional[torch.device] = None, min_time: float = 0.02) -> float:
    """Median over ``repeats`` runs of the seconds one call of ``fn`` takes (each run times ``number`` calls).

    ``number=None`` picks the number of calls so that one run lasts at least ``min_time`` seconds: single calls
    of a fast function are below the timer's resolution (cs231n's "100159645x speed-up" came from timing one
    call with ``time.time()``). The median, unlike the mean, ignores the odd run the operating system slowed
    down. ``device``: a CUDA device is synchronized before each clock reading.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    if number is None:
        number = 1
        while True:
            _sync(device)
            start = time.perf_counter()
            for _ in range(number):
                fn()
            _sync(device)
            if time.perf_counter() - start >= min_time or number >= 1 << 20:
                break
            number *= 2
    runs = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(number):
            fn()
        _sync(device)
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


def compare_times(fns: Dict[str, Callable[[], object]], repeats: int = 7, number: Optional[int] = None,
                  device: Optional[torch.device] = None, num_threads: Optional[int] = None) -> Dict[str, float]:
    """Median seconds per call of each function, measured interleaved call by call (A, B, C, A, B, C, ...) so
    that a machine that speeds up or slows down during the measurement (other programs, CPU frequency) affects
    all of them alike. Each of the ``repeats`` runs makes ``number`` calls of every function (by default enough
    for the slowest to take about 20 ms) and records their mean; the result is the median over the runs.

    ``num_threads``: the number of CPU threads torch may use while timing (restored afterwards). One thread
    measures the work itself and is far less disturbed by other programs competing for the cores than several
    threads waiting for each other; it does not matter on a GPU.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _compare_times(fns, repeats, number, device)
    finally:
        torch.set_num_threads(threads)


def _compare_times(fns, repeats, number, device):
    for fn in fns.values():  # warm up, and fix a common number of calls per run from the slowest function
        fn()
    if number is None:
        slowest = max(median_time(fn, repeats=1, number=1, warmup=0, device=device) for fn in fns.values())
        number = max(1, math.ceil(0.02 / max(slowest, 1e-9)))
    runs: Dict[str, list] = {name: [] for name in fns}
    for _ in range(repeats):
        total = dict.fromkeys(fns, 0.0)
        for _ in range(number):
            for name, fn in fns.items():
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                total[name] += time.perf_counter() - start
        for name in fns:
            runs[name].append(total[name] / number)
    return {name: statistics.median(r) for name, r in runs.items()}


def time_forward(models: Dict[str, nn.Module], X: Tensor, repeats: int = 7, number: Optional[int] = None,
                 num_threads: Optional[int] = None) -> Dict[str, float]:
    """Median seconds of one forward pass of each model on ``X`` (eval mode, no gradients), interleaved call by
    call (see :func:`compare_times`). Each model's train/eval mode is restored afterwards.

    ``num_threads``: as in :func:`compare_times`.
    """
    device = X.device

    def forward(m: nn.Module) -> Callable[[], object]:
        def run():
            with torch.no_grad():
                return m(X)
        return run

    modes = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        return compare_times({name: forward(m) for name, m in models.items()}, repeats=repeats, number=number,
                             device=device, num_threads=num_threads)
    finally:
        for name, m in models.items():
            m.train(modes[name])
