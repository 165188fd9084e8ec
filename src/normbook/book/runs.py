"""Runs over seeds and sweeps, on the book's train / validation / test splits, summarized as tables.

Every runner trains with :func:`normbook.book.train.train` on in-memory Fashion-MNIST and returns pandas
DataFrames, one row per (setting, seed, epoch) for curves or per (setting, seed) for sweeps, so a chapter can
aggregate them with :func:`summarize` and draw its verdicts with :mod:`normbook.book.stats`.

The protocol (CONTRIBUTING.md): sweeps choose settings on the **validation** split (they cannot be pointed at the
test set); the chosen settings are then trained once per seed and reported on the **test** split
(``run_seeds(..., split="test")``).

- :class:`Data`: the three splits (or FAST-mode subsets of them) as tensors, and loaders over them.
- :func:`run_seeds` trains one configuration once per seed and returns its per-epoch history as a frame.
- :func:`lr_sweep`, :func:`init_sweep`: the final validation accuracy of each setting per seed.
- :func:`trainable_settings`: per model, the outcome (:func:`normbook.book.stats.training_outcome`) at each value.
- :func:`compare_layers`: the same network from the same seed built from two layer libraries, step by step.
- :func:`recomputed_stats_accuracy`: an ``on_epoch_end`` hook measuring accuracy after recomputing BN statistics.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd
import torch
from torch import nn

from .. import data
from ..batchnorm import recompute_batchnorm_stats
from ..config import cpu_threads
from ..config import device as default_device
from ..config import in_ci
from . import models
from .parallel import parallel_map
from .stats import training_outcome
from .train import History, evaluate, scaled_normal_init, train, xavier_init

__all__ = [
    "SPLITS", "Data", "load", "lenet_model", "history_frame", "run_seeds", "final_rows", "summarize",
    "lr_sweep", "init_sweep", "trainable_settings", "compare_layers", "epoch_spread", "recomputed_stats_accuracy",
]

#: The names of the splits a run can be evaluated on.
SPLITS = ("val", "test")


class Data:
    """The book's three splits for a set of runs: ``X, y`` (train: 50,000 images), ``X_val, y_val`` (validation:
    10,000 held out of the training file) and ``X_test, y_test`` (the test file); see
    :func:`normbook.data.train_val_split`. ``loaders(batch_size, seed, split)`` makes fresh in-memory loaders whose
    shuffling order depends on ``seed`` only (the subsets stay the same for every seed).

    ``train_size`` / ``val_size`` / ``test_size``: a random subset of each split (chosen with ``subset_seed``),
    None for the whole split. ``threads``: on a CPU, the runners train with this many threads (see
    :func:`normbook.config.cpu_threads`; None keeps torch's setting). One is the default: LeNet-sized steps gain
    little from a second thread and lose much when other processes share the cores.
    """

    def __init__(self, train_size: Optional[int] = None, val_size: Optional[int] = None,
                 test_size: Optional[int] = None, *, subset_seed: int = 0, device: torch.device | str | None = None,
                 eval_batch_size: int = 1000, threads: Optional[int] = 1):
        self.device = torch.device(device) if device is not None else default_device()
        splits = data.load_splits(256, train_size=train_size, val_size=val_size, test_size=test_size,
                                  seed=subset_seed, device=self.device)
        self.X, self.y = splits.train.X, splits.train.y
        self.X_val, self.y_val = splits.val.X, splits.val.y
        self.X_test, self.y_test = splits.test.X, splits.test.y
        self.eval_batch_size = eval_batch_size
        self.threads = threads

    def threads_context(self):
        """:func:`normbook.config.cpu_threads` with this data's thread count on a CPU; no change on a GPU."""
        return cpu_threads(self.threads if self.device.type == "cpu" else None)

    @property
    def train_size(self) -> int:
        return len(self.X)

    @property
    def val_size(self) -> int:
        return len(self.X_val)

    @property
    def test_size(self) -> int:
        return len(self.X_test)

    def eval_loader(self, split: str = "val", batch_size: Optional[int] = None) -> data.TensorLoader:
        """A loader over the validation (``"val"``) or test (``"test"``) split, in order."""
        X, y = self.split(split)
        return data.TensorLoader(X, y, batch_size or self.eval_batch_size)

    def split(self, split: str) -> tuple:
        """``(X, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if split == "train":
            return self.X, self.y
        if split == "val":
            return self.X_val, self.y_val
        if split == "test":
            return self.X_test, self.y_test
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")

    def loaders(self, batch_size: int, seed: int = 0, split: str = "val", drop_last: bool = False):
        """``(train_loader, eval_loader)``: shuffled training batches (B, 1, 28, 28) / (B,) on this data's device,
        and the ``split`` ("val" while tuning, "test" to report) to evaluate on after every epoch."""
        if split not in SPLITS:
            raise ValueError(f"a run is evaluated on one of {SPLITS}, got {split!r}")
        train_loader = data.TensorLoader(self.X, self.y, batch_size, shuffle=True, seed=seed, drop_last=drop_last)
        return train_loader, self.eval_loader(split)


def load(train_size: Optional[int] = None, val_size: Optional[int] = None, test_size: Optional[int] = None,
         **kwargs) -> Data:
    """Shorthand for :class:`Data`."""
    return Data(train_size, val_size, test_size, **kwargs)


def lenet_model(bn: bool, layers=nn) -> nn.Module:
    """d2l's sigmoid LeNet (``bn=False``) or its BatchNorm LeNet (``bn=True``, BN from ``layers``: ``torch.nn``
    by default, or ``normbook.nn``)."""
    if not bn:
        return models.lenet()
    return models.lenet(models.batch_norm(layers=layers))


def history_frame(history: History, split: str = "val", **labels) -> pd.DataFrame:
    """One row per epoch: the labels given (e.g. model="BN", seed=0), then epoch, train_loss, train_acc,
    ``<split>_acc`` (the accuracy on the split the run was evaluated on), examples_per_sec, then one column per
    entry of ``history.extra``."""
    frame = pd.DataFrame({name: getattr(history, name) for name in History.FIELDS})
    frame = frame.rename(columns={"eval_acc": f"{split}_acc"})
    for name, values in history.extra.items():
        frame[name] = values
    for i, (key, value) in enumerate(labels.items()):
        frame.insert(i, key, value)
    return frame


def run_seeds(make_model: Callable[[], nn.Module], dataset: Data, *, seeds: Sequence[int], epochs: int, lr: float,
              split: str = "val", batch_size: int = 256, init: Optional[Callable] = xavier_init,
              optimizer: str = "sgd", progress: bool = False, label: Optional[str] = None,
              extra: Optional[Callable[[nn.Module, Iterable, Iterable], dict]] = None,
              **train_kwargs) -> pd.DataFrame:
    """Train ``make_model()`` once per seed (the seed fixes the initial weights and the batch order), evaluating on
    ``split`` ("val" while choosing settings; "test" once, for the chosen ones), and return the per-epoch
    histories stacked: columns ``label`` (if given), ``seed``, epoch, train_loss, train_acc, ``<split>_acc``,
    examples_per_sec; ``len(seeds) * epochs`` rows.

    ``extra(model, train_loader, eval_loader) -> dict``, if given, runs on each trained model; its values become
    columns (constant over that run's rows), e.g. the accuracy after recomputing BN statistics."""
    _check_seeds(seeds)
    frames = []
    with dataset.threads_context():
        for seed in seeds:
            torch.manual_seed(seed)  # the model's construction-time parameters (biases, BN) depend on the seed
            model = make_model()
            train_loader, eval_loader = dataset.loaders(batch_size, seed, split)
            history = train(model, train_loader, eval_loader, epochs=epochs, lr=lr, init=init, optimizer=optimizer,
                            seed=seed, device=dataset.device, progress=progress,
                            desc=f"{label or 'run'} seed {seed}", **train_kwargs)
            labels = {"label": label} if label is not None else {}
            frame = history_frame(history, split, **labels, seed=seed)
            if extra is not None:
                for key, value in extra(model, train_loader, eval_loader).items():
                    frame[key] = value
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def final_rows(frame: pd.DataFrame, by: Sequence[str] = ("label", "seed")) -> pd.DataFrame:
    """The last epoch of every run in a per-epoch frame (one row per combination of ``by``)."""
    by = [c for c in by if c in frame.columns]
    return frame.groupby(by, sort=False).tail(1).reset_index(drop=True)  # rows are in epoch order per run


def summarize(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = ("val_acc",)) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1, NaN for one run) and count over seeds of each metric, per group of
    ``by``. Columns: ``by``..., then ``<metric>_mean``, ``<metric>_std`` for each metric, and ``runs``."""
    grouped = frame.groupby(list(by), sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["runs"] = grouped.size()
    return out.reset_index()


def epoch_spread(frame: pd.DataFrame, metric: str = "val_acc", last: int = 5,
                 by: Sequence[str] = ("label", "seed")) -> pd.DataFrame:
    """How much ``metric`` moves from epoch to epoch: per run, over its last ``last`` epochs, the standard
    deviation of the metric (``<metric>_epoch_std``, which includes any trend), the largest drop between two
    consecutive epochs (``largest_drop``, 0 if it never falls) and the sum of all drops (``total_drop``: how much
    the metric lost in the epochs in which it fell)."""
    by = [c for c in by if c in frame.columns]
    rows = []
    for key, run in frame.sort_values("epoch").groupby(by, sort=False):
        values = run[metric].to_numpy()[-last:]
        drops = values[:-1] - values[1:]
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), f"{metric}_epoch_std": float(values.std(ddof=1)) if len(values) > 1
                     else float("nan"),
                     "largest_drop": float(max(drops.max(), 0.0)) if len(drops) else float("nan"),
                     "total_drop": float(drops[drops > 0].sum()) if len(drops) else float("nan")})
    return pd.DataFrame(rows)


def _check_seeds(seeds: Sequence[int]) -> None:
    if len(seeds) < 1:
        raise ValueError("give at least one seed")


def _sweep(values: Iterable, settings: dict, dataset: Data, *, column: str, seeds: Sequence[int],
           progress: bool, run: Callable, processes: int) -> pd.DataFrame:
    """Train every (setting, value, seed) on the training split, evaluated on the validation split;
    ``run(setting, value, seed)`` returns a History. ``processes > 1``: that many forked workers."""
    _check_seeds(seeds)
    values = list(values)
    if not values:
        raise ValueError(f"give at least one {column}")
    jobs = [(name, value, seed) for name in settings for value in values for seed in seeds]

    def one(job) -> dict:
        name, value, seed = job
        with dataset.threads_context():
            history = run(settings[name], value, seed)
        final = history.final()
        row = {"model": name, column: value, "seed": seed, "train_loss": final["train_loss"],
               "train_acc": final["train_acc"], "val_acc": final["eval_acc"],
               "best_val_acc": max((a for a in history.eval_acc if not math.isnan(a)), default=float("nan")),
               "diverged": history.diverged, "epochs": len(history)}
        # what an on_epoch_end hook measured, after the last epoch
        row.update({key: values[-1] for key, values in history.extra.items() if key not in row})
        return row

    if processes > 1:
        rows = parallel_map(one, jobs, processes)
    else:
        from tqdm.auto import tqdm
        rows = [one(job) for job in tqdm(jobs, desc=f"{column} sweep", unit="run",
                                         disable=(not progress) or in_ci())]
    return pd.DataFrame(rows)


def lr_sweep(models_: dict[str, Callable[[], nn.Module]], dataset: Data, lrs: Sequence[float], *,
             seeds: Sequence[int] = (0, 1, 2), epochs: int, batch_size: int = 256,
             init: Optional[Callable] = xavier_init, progress: bool = False, processes: int = 1,
             **train_kwargs) -> pd.DataFrame:
    """Final **validation** accuracy for each model (name -> constructor) at each learning rate, per seed.
    ``train_kwargs`` (e.g. ``compile=True``) go to :func:`normbook.book.train.train`.

    Returns one row per (model, lr, seed): model, lr, seed, train_loss, train_acc, val_acc, best_val_acc,
    diverged, epochs, then the last epoch's value of whatever an ``on_epoch_end`` hook (a train_kwarg)
    returned."""
    def run(make_model, lr, seed):
        torch.manual_seed(seed)
        train_loader, val_loader = dataset.loaders(batch_size, seed, "val")
        return train(make_model(), train_loader, val_loader, epochs=epochs, lr=float(lr), init=init, seed=seed,
                     device=dataset.device, progress=False, **train_kwargs)
    return _sweep(lrs, models_, dataset, column="lr", seeds=seeds, progress=progress, run=run,
                  processes=processes)


def init_sweep(models_: dict[str, tuple[Callable[[], nn.Module], float]], dataset: Data, scales: Sequence[float],
               *, seeds: Sequence[int] = (0, 1, 2), epochs: int, batch_size: int = 256, progress: bool = False,
               processes: int = 1, init: Callable[[float], Callable] = scaled_normal_init,
               **train_kwargs) -> pd.DataFrame:
    """Final **validation** accuracy for each model (name -> (constructor, lr)) with every Linear/Conv weight
    drawn from N(0, scale^2), biases zero, at each scale, per seed (cs231n's weight-scale sweep). ``init(scale)``
    makes the initializer (default :func:`normbook.book.train.scaled_normal_init`; e.g. one that keeps some
    layer at another scale).

    Returns one row per (model, scale, seed), columns as :func:`lr_sweep` with ``scale`` for ``lr``."""
    def run(setting, scale, seed):
        make_model, lr = setting
        torch.manual_seed(seed)
        train_loader, val_loader = dataset.loaders(batch_size, seed, "val")
        return train(make_model(), train_loader, val_loader, epochs=epochs, lr=lr, init=init(scale),
                     seed=seed, device=dataset.device, progress=False, **train_kwargs)
    return _sweep(scales, models_, dataset, column="scale", seeds=seeds, progress=progress, run=run,
                  processes=processes)


def trainable_settings(sweep: pd.DataFrame, column: str = "lr", *, chance: float = 0.1,
                       metric: str = "val_acc") -> pd.DataFrame:
    """Per (model, value of ``column``) of a sweep: the training outcome over its seeds
    (:func:`normbook.book.stats.training_outcome`: "trains", "does not train" or "unclear") with its mean and
    interval. Columns: model, ``column``, outcome, mean, low, high, runs."""
    rows = []
    for (name, value), group in sweep.groupby(["model", column], sort=False):
        outcome = training_outcome(group[metric].to_numpy(), chance=chance)
        rows.append({"model": name, column: value, "outcome": outcome.verdict, "mean": outcome.mean,
                     "low": outcome.low, "high": outcome.high, "runs": outcome.n})
    return pd.DataFrame(rows)


def compare_layers(make_a: Callable[[], nn.Module], make_b: Callable[[], nn.Module], dataset: Data, *, seed: int,
                   epochs: int, lr: float, batch_size: int = 256, init: Optional[Callable] = xavier_init,
                   compile: Sequence[bool] = (False, False), processes: int = 1) -> dict:
    """Train two builds of the same architecture (e.g. from normbook.nn and from torch.nn) from the same seed:
    the same initial weights (``b`` starts from ``a``'s state_dict), the same batches in the same order,
    evaluated on the validation split. ``compile``: whether each of the two trains through ``torch.compile``.
    ``processes=2`` trains the two at the same time in two forked processes
    (:func:`normbook.book.parallel.parallel_map`), one thread each; the models passed in stay untrained then
    (only the histories come back).

    Returns ``{"a": History, "b": History, "max_loss_diff": max |loss_a - loss_b| over all steps,
    "step_loss_diff": the per-step differences (list), "initial_param_diff": max difference of the initial
    parameters (0.0 when the state_dicts match)}``."""
    torch.manual_seed(seed)
    model_a = make_a()
    if init is not None:
        torch.manual_seed(seed)
        init(model_a)
    model_b = make_b()
    model_b.load_state_dict(model_a.state_dict())
    initial = max((a - b).abs().max().item() for a, b in zip(model_a.state_dict().values(),
                                                               model_b.state_dict().values())
                  if a.is_floating_point())

    def run(i: int) -> History:
        train_loader, val_loader = dataset.loaders(batch_size, seed, "val")
        with dataset.threads_context():
            return train((model_a, model_b)[i], train_loader, val_loader, epochs=epochs, lr=lr, init=None,
                         seed=seed, device=dataset.device, progress=False, compile=bool(compile[i]))
    a, b = parallel_map(run, [0, 1], processes)
    diffs = [abs(x - y) for x, y in zip(a.batch_loss, b.batch_loss)]
    return {"a": a, "b": b, "max_loss_diff": max(diffs), "step_loss_diff": diffs, "initial_param_diff": initial}


def recomputed_stats_accuracy(dataset: Data, size: int = 10000, batch_size: int = 1000, split: str = "val",
                              name: Optional[str] = None) -> Callable[[nn.Module, int], dict]:
    """An ``on_epoch_end`` hook for :func:`normbook.book.train.train`: the accuracy on ``split`` of a copy of the
    model whose BN running averages are replaced by statistics of the first ``size`` training examples under the
    current weights (:func:`normbook.batchnorm.recompute_batchnorm_stats`). The model being trained is not
    touched. Returns ``{name: acc}`` (``name`` defaults to ``"<split>_acc_recomputed"``)."""
    name = name or f"{split}_acc_recomputed"
    X, y = dataset.X[:size], dataset.y[:size]

    def hook(model: nn.Module, epoch: int) -> dict:
        twin = copy.deepcopy(model)
        recompute_batchnorm_stats(twin, data.TensorLoader(X, y, batch_size))
        return {name: evaluate(twin, dataset.eval_loader(split, batch_size))}
    return hook
