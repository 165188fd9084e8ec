"""The book's training loop: SGD (or Adam) on in-memory mini-batches, one history entry per epoch.

It measures what d2l's ``train_ch6`` measures (mean cross-entropy and accuracy over the epoch's training batches,
accuracy on an evaluation loader in eval mode after every epoch, examples per second), but it is seeded, works on any device,
records every mini-batch loss, and returns the numbers instead of plotting them::

    model = normbook.book.models.lenet(normbook.book.models.batch_norm())
    splits = normbook.data.load_splits(256)
    history = train(model, splits.train, splits.val, epochs=10, lr=1.0, init=xavier_init, seed=0)
    history.eval_acc[-1]      # accuracy on the loader passed as eval_loader (here: validation)
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Optional, Union

import torch
from torch import nn

from ..config import device as default_device
from ..config import device_of, in_ci, seed_everything

__all__ = ["History", "train", "evaluate", "xavier_init", "scaled_normal_init", "compile_available", "OPTIMIZERS",
           "cosine_schedule"]

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass
class History:
    """What :func:`train` measured, one entry per epoch in each list (``batch_loss`` holds one per step).

    - ``train_loss``: mean cross-entropy over the epoch's training examples (in train mode, as the weights moved);
    - ``train_acc``: fraction of those examples classified correctly as they were seen;
    - ``eval_acc``: accuracy on the evaluation loader after the epoch, in eval mode (the validation split while
      choosing settings, the test split when reporting them);
    - ``examples_per_sec``: training examples per second of that epoch's training steps (evaluation excluded);
    - ``batch_loss``: the loss of every training step, in order (``epochs * len(train_loader)`` values);
    - ``extra``: name -> per-epoch list of whatever ``train(..., on_epoch_end=...)`` returned.
    """
    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    eval_acc: list = field(default_factory=list)
    examples_per_sec: list = field(default_factory=list)
    batch_loss: list = field(default_factory=list)
    diverged: bool = False
    extra: dict = field(default_factory=dict)

    FIELDS = ("epoch", "train_loss", "train_acc", "eval_acc", "examples_per_sec")

    def as_dict(self) -> dict:
        """The per-epoch lists (and ``batch_loss``, ``diverged``) as a plain dict of lists."""
        return asdict(self)

    def final(self) -> dict:
        """The last epoch's numbers: ``{"train_loss": ..., "train_acc": ..., "eval_acc": ..., ...}``."""
        if not self.epoch:
            raise ValueError("the history is empty: no epoch was trained")
        return {name: getattr(self, name)[-1] for name in self.FIELDS}

    def __len__(self) -> int:
        return len(self.epoch)


def xavier_init(model: nn.Module) -> nn.Module:
    """d2l's initialization: Xavier-uniform weights for every ``nn.Linear`` and ``nn.Conv2d`` (Glorot & Bengio
    2010), biases and normalization parameters left as constructed. Returns the model (changed in place)."""
    for m in model.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    return model


def scaled_normal_init(scale: float) -> Callable[[nn.Module], nn.Module]:
    """An initializer drawing every Linear/Conv2d weight from N(0, scale^2) and zeroing their biases (the
    ``weight_scale`` of cs231n's initialization sweep). Returns a function ``init(model) -> model``."""
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")

    def init(model: nn.Module) -> nn.Module:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Linear, nn.Conv2d)):
                    m.weight.normal_(0.0, float(scale))
                    if m.bias is not None:
                        m.bias.zero_()
        return model
    return init


def evaluate(model: nn.Module, loader: Iterable, device: Union[torch.device, str, None] = None) -> float:
    """Accuracy of ``model`` on ``loader`` (batches ``(X, y)``: X (B, ...) inputs, y (B,) integer labels).

    Runs in eval mode (normalization layers use their running statistics) under ``torch.no_grad()`` and puts the
    model back in the train/eval mode it was in. ``device`` defaults to the device of the model's parameters.
    Returns a float in [0, 1].
    """
    if device is None:
        device = device_of(model)
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    try:
        with torch.no_grad():
            for X, y in loader:
                X, y = X.to(device), y.to(device)
                correct += (model(X).argmax(dim=1) == y).sum()
                total += len(y)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("the loader yielded no examples to evaluate on")
    return correct.item() / total


def _make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: expected one of {OPTIMIZERS}")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def train(model: nn.Module, train_loader: Iterable, eval_loader: Optional[Iterable], *, epochs: int, lr: float,
          optimizer: str = "sgd", weight_decay: float = 0.0, device: Union[torch.device, str, None] = None,
          init: Optional[Callable[[nn.Module], object]] = None, seed: Optional[int] = 0, progress: bool = True,
          desc: str = "train", stop_on_divergence: bool = True,
          on_epoch_end: Optional[Callable[[nn.Module, int], dict]] = None, compile: bool = False,
          lr_schedule: Optional[Callable[[float], float]] = None) -> History:
    """Train ``model`` with cross-entropy for ``epochs`` passes over ``train_loader``; return a :class:`History`.

    - ``model`` maps X (B, ...) to logits (B, num_classes); ``train_loader`` yields ``(X, y)`` with y (B,) int64
      labels (``normbook.data.load_splits`` gives in-memory loaders); ``eval_loader`` is evaluated in eval mode
      after every epoch (None skips it and records NaN): the validation split while choosing settings, the test
      split once, to report them.
    - ``optimizer``: "sgd" (plain SGD, as d2l), "momentum" (SGD with momentum 0.9) or "adam"; ``lr`` its rate.
    - ``seed``: seeds Python, NumPy and torch (:func:`normbook.seed_everything` with ``deterministic=False``: the
      generators only; the process-wide determinism and cuDNN switches stay as the caller set them) *before*
      ``init`` runs, so ``init`` (e.g. :func:`xavier_init`) and any randomness in the model (dropout) repeat
      exactly. The order of the batches is the loader's business (``load_data(seed=...)``). None leaves the
      generators alone.
    - ``device``: where to train (default :func:`normbook.device`); the model is moved there, batches too.
    - ``progress``: a tqdm bar over the epochs showing loss and accuracies; off when False or when ``CI`` is set.
    - ``stop_on_divergence``: when the loss becomes NaN or infinite, mark ``history.diverged`` and fill the
      remaining epochs with NaN loss and the last evaluation accuracy (chance level, typically) instead of training on.
    - ``on_epoch_end(model, epoch) -> dict``: called after each epoch's evaluation (leave the model as found);
      its values are appended to ``history.extra[name]`` (NaN for epochs skipped after divergence).
    - ``compile``: run the training steps through ``torch.compile(model)`` (chapter 10): the same arithmetic,
      fused into fewer kernels. Only the training forward is compiled, so evaluation and ``on_epoch_end`` see the
      eager ``model``; the first step pays the compilation (seconds to a minute; later models of the same
      architecture in the same process reuse it). PyTorch's autograd cannot be used in a process forked after a
      compiled backward ran, so compile inside the workers (as chapter 6 does with
      :func:`normbook.book.parallel.parallel_map`), not before forking them.
    - ``lr_schedule(progress) -> factor``: before every step the rate is ``lr * lr_schedule(progress)``, with
      ``progress = steps done / all steps`` in [0, 1) (e.g. :func:`cosine_schedule`); None keeps ``lr`` constant.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}: expected one of {OPTIMIZERS}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dev = torch.device(device) if device is not None else default_device()
    if seed is not None:
        seed_everything(seed, deterministic=False)
    if init is not None:
        init(model)
    model.to(dev)
    step_model = torch.compile(model) if compile else model
    opt = _make_optimizer(optimizer, model.parameters(), float(lr), weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = History()
    steps_per_epoch = len(train_loader) if lr_schedule is not None else 0
    step = 0

    from tqdm.auto import tqdm
    bar = tqdm(range(1, epochs + 1), desc=desc, unit="epoch", disable=(not progress) or in_ci(), leave=True)
    for epoch in bar:
        if history.diverged:
            _record(history, epoch, float("nan"), float("nan"), history.eval_acc[-1], float("nan"), [])
            for values in history.extra.values():
                values.append(float("nan"))
            continue
        model.train()
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        seen = 0
        losses = []
        _sync(dev)
        start = time.perf_counter()
        for X, y in train_loader:
            X, y = X.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if lr_schedule is not None:
                factor = float(lr_schedule(step / (epochs * steps_per_epoch)))
                for group in opt.param_groups:
                    group["lr"] = float(lr) * factor
                step += 1
            logits = step_model(X)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                detached = loss.detach()
                losses.append(detached)
                loss_sum += detached * len(y)
                correct += (logits.argmax(dim=1) == y).sum()
            seen += len(y)
        _sync(dev)
        elapsed = time.perf_counter() - start
        if seen == 0:
            raise ValueError("the training loader yielded no batches")
        batch_loss = torch.stack(losses).tolist()
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss) and stop_on_divergence:
            history.diverged = True
        eval_acc = evaluate(model, eval_loader, dev) if eval_loader is not None else float("nan")
        _record(history, epoch, train_loss, correct.item() / seen, eval_acc, seen / max(elapsed, 1e-12),
                batch_loss)
        if on_epoch_end is not None:
            for key, value in (on_epoch_end(model, epoch) or {}).items():
                history.extra.setdefault(key, [float("nan")] * (epoch - 1)).append(value)
        bar.set_postfix(loss=f"{train_loss:.3f}", train_acc=f"{history.train_acc[-1]:.3f}",
                        eval_acc=f"{eval_acc:.3f}")
    bar.close()
    return history


def cosine_schedule(progress: float) -> float:
    """The cosine decay of the learning rate (Loshchilov & Hutter 2017, without restarts): factor 1 at the
    start, falling to 0 at the end of training; ``progress`` in [0, 1]. For :func:`train`'s ``lr_schedule``."""
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _record(history: History, epoch: int, train_loss: float, train_acc: float, eval_acc: float,
            examples_per_sec: float, batch_loss: list) -> None:
    history.epoch.append(epoch)
    history.train_loss.append(train_loss)
    history.train_acc.append(train_acc)
    history.eval_acc.append(eval_acc)
    history.examples_per_sec.append(examples_per_sec)
    history.batch_loss.extend(batch_loss)


def compile_available(device: Union[torch.device, str, None] = None) -> bool:
    """Whether ``torch.compile`` works on this machine: it compiles and runs a tiny function (forward only, so a
    process may still fork afterwards). On a CPU it needs a C++ compiler, on a GPU Triton; where it fails, train
    without ``compile`` (the same arithmetic, eager)."""
    dev = torch.device(device) if device is not None else default_device()
    try:
        fn = torch.compile(lambda x: torch.sigmoid(x) * 2.0 + 1.0)
        return bool(torch.isfinite(fn(torch.ones(8, device=dev))).all())
    except Exception:  # noqa: BLE001 - any failure (no compiler, unsupported platform) means "not here"
        return False
