r"""Chapter 4's helpers: the momentum conventions, predictions in either mode, forward passes timed side by side.

(Population statistics and the other BatchNorm helpers are in the library: :mod:`normbook.batchnorm`.)

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
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..config import device_of
from ..timing import TimingResult, compare_times

__all__ = [
    "torch_update", "d2l_update", "keras_update", "cumulative_update", "running_estimates",
    "predict", "accuracy", "eval_batch_size_lab", "time_forward",
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
    device = device_of(net)
    return torch.cat([net(X[i:i + batch_size].to(device)) for i in range(0, len(X), batch_size)])


def accuracy(model: nn.Module, X: Tensor, y: Tensor, batch_size: int = 256, train_mode: bool = False) -> float:
    """Fraction of ``X`` classified as ``y`` (see :func:`predict` for the arguments)."""
    logits = predict(model, X, batch_size, train_mode)
    return (logits.argmax(dim=1).cpu() == y.cpu()).float().mean().item()


def eval_batch_size_lab(model: nn.Module, X: Tensor, y: Tensor, batch_sizes: Sequence[int]) -> Dict[str, list]:
    """For each evaluation batch size: accuracy in eval mode, accuracy in train mode (``model.eval()``
    forgotten), and the mean absolute difference between the train-mode and eval-mode logits.

    Returns ``{"batch_size": [...], "eval": [...], "train": [...], "gap": [...], "eval_right": [...],
    "train_right": [...]}``; the last two hold, per batch size, a float tensor with 1.0 for every image (of the whole
    batches used) classified correctly, in eval and in train mode, for paired comparisons
    (:func:`normbook.book.stats.compare` with ``paired=True``). Batch sizes must be at least 2 if the model has a
    BatchNorm1d: one example gives one value per channel, which train mode refuses.
    """
    eval_logits = predict(model, X, batch_size=max(batch_sizes), train_mode=False).cpu()
    eval_acc = (eval_logits.argmax(1) == y.cpu()).float().mean().item()
    out: Dict[str, list] = {"batch_size": [], "eval": [], "train": [], "gap": [], "eval_right": [],
                            "train_right": []}
    for b in batch_sizes:
        n = (len(X) // b) * b  # whole batches only: a last batch of one would raise in train mode
        train_logits = predict(model, X[:n], batch_size=b, train_mode=True).cpu()
        eval_right = (eval_logits[:n].argmax(1) == y[:n].cpu()).float()
        train_right = (train_logits.argmax(1) == y[:n].cpu()).float()
        out["batch_size"].append(b)
        out["eval"].append(eval_right.mean().item() if n < len(X) else eval_acc)
        out["train"].append(train_right.mean().item())
        out["gap"].append((train_logits - eval_logits[:n]).abs().mean().item())
        out["eval_right"].append(eval_right)
        out["train_right"].append(train_right)
    return out


# --- timing forward passes side by side -------------------------------------------------------------------------------

def time_forward(models: Dict[str, nn.Module], X: Tensor, repeats: int = 7, num_threads: Optional[int] = 1
                 ) -> Dict[str, TimingResult]:
    """Seconds of one forward pass of each model on ``X`` (eval mode, no gradients), measured interleaved round by
    round (:func:`normbook.timing.compare_times`). Each model's train/eval mode is restored afterwards."""

    def forward(m: nn.Module) -> Callable[[], object]:
        def run():
            with torch.no_grad():
                return m(X)
        return run

    modes = {name: m.training for name, m in models.items()}
    for m in models.values():
        m.eval()
    try:
        return compare_times({name: forward(m) for name, m in models.items()}, repeats=repeats,
                             num_threads=num_threads)
    finally:
        for name, m in models.items():
            m.train(modes[name])
