"""The experiments of the book's last chapter: runs over seeds and sweeps, summarized as tables.

Every runner trains with :func:`normbook.train.train` on in-memory Fashion-MNIST subsets and returns pandas
DataFrames, one row per (setting, seed, epoch) for curves or per (setting, seed) for sweeps, so the chapter can
aggregate them into mean ± std tables with :func:`summarize`.

- :func:`run_seeds` trains one configuration once per seed and returns its per-epoch history as a frame (E1).
- :func:`lr_sweep`, :func:`init_sweep`, :func:`batch_size_sweep`: the final accuracy of each setting per seed
  (E2, E3, E4).
- :func:`compare_layers`: the same network from the same seed built from two layer libraries, step by step (E5).
- :func:`recompute_bn_statistics`: replace BN running averages by population statistics of the training set.
"""
from __future__ import annotations

import contextlib
import time
import math
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd
import torch
from torch import nn

from . import data, models
from .config import device as default_device
from .train import History, scaled_normal_init, train, xavier_init

__all__ = [
    "Data", "load", "lenet_model", "history_frame", "run_seeds", "final_rows", "summarize", "mean_std",
    "lr_sweep", "init_sweep", "batch_size_sweep", "largest_trainable", "compare_layers",
    "recompute_bn_statistics", "epoch_spread", "cpu_threads", "recomputed_stats_accuracy",
    "e4_model", "e4_sweep", "values_per_statistic", "parallel_map",
]


@contextlib.contextmanager
def cpu_threads(n: Optional[int]):
    """Run the block with ``torch.set_num_threads(n)`` (None: leave it), restoring the previous count after.

    Tiny steps (a small CNN on 2 to 32 images) do too little work per operation to split over threads: the
    threads spend longer synchronizing than computing, badly so when other processes share the cores."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class Data:
    """Fixed train/test tensors for a set of runs; ``loaders(batch_size, seed)`` makes fresh in-memory loaders
    over them whose shuffling order depends on ``seed`` only (the subset itself stays the same for every seed).

    ``train_size`` / ``test_size``: a random subset (chosen with ``subset_seed``), None for the whole split.
    ``threads``: on a CPU, the runners train with this many threads (see :func:`cpu_threads`; None keeps torch's
    setting). One is the default: LeNet-sized steps gain little from a second thread and lose much when other
    processes share the cores.
    """

    def __init__(self, train_size: Optional[int] = None, test_size: Optional[int] = None, *, subset_seed: int = 0,
                 device: torch.device | str | None = None, test_batch_size: int = 1000,
                 threads: Optional[int] = 1):
        self.device = torch.device(device) if device is not None else default_device()
        train_loader, test_loader = data.load_data(256, train_size=train_size, test_size=test_size,
                                                   seed=subset_seed, device=self.device)
        self.X, self.y = train_loader.X, train_loader.y
        self.X_test, self.y_test = test_loader.X, test_loader.y
        self.test_batch_size = test_batch_size
        self.threads = threads

    def threads_context(self):
        """:func:`cpu_threads` with this data's thread count on a CPU; no change on a GPU."""
        return cpu_threads(self.threads if self.device.type == "cpu" else None)

    @property
    def train_size(self) -> int:
        return len(self.X)

    @property
    def test_size(self) -> int:
        return len(self.X_test)

    def loaders(self, batch_size: int, seed: int = 0, drop_last: bool = False):
        """(train_loader, test_loader): batches (B, 1, 28, 28) / (B,) on this data's device."""
        train_loader = data.TensorLoader(self.X, self.y, batch_size, shuffle=True, seed=seed, drop_last=drop_last)
        test_loader = data.TensorLoader(self.X_test, self.y_test, self.test_batch_size)
        return train_loader, test_loader


def load(train_size: Optional[int] = None, test_size: Optional[int] = None, **kwargs) -> Data:
    """Shorthand for :class:`Data`."""
    return Data(train_size, test_size, **kwargs)


def lenet_model(bn: bool, layers=None) -> nn.Module:
    """d2l's sigmoid LeNet (``bn=False``) or its BatchNorm LeNet (``bn=True``, BN from ``layers``: the book's
    ``normbook.nn`` by default, or ``torch.nn``)."""
    if not bn:
        return models.lenet()
    if layers is None:
        from . import nn as layers
    return models.lenet(models.batch_norm(layers=layers))


def history_frame(history: History, **labels) -> pd.DataFrame:
    """One row per epoch: the labels given (e.g. model="BN", seed=0), then epoch, train_loss, train_acc,
    test_acc, examples_per_sec, then one column per entry of ``history.extra``."""
    frame = pd.DataFrame({name: getattr(history, name) for name in History.FIELDS})
    for name, values in history.extra.items():
        frame[name] = values
    for i, (key, value) in enumerate(labels.items()):
        frame.insert(i, key, value)
    return frame


def run_seeds(make_model: Callable[[], nn.Module], dataset: Data, *, seeds: Sequence[int], epochs: int, lr: float,
              batch_size: int = 256, init: Optional[Callable] = xavier_init, optimizer: str = "sgd",
              progress: bool = False, label: Optional[str] = None,
              extra: Optional[Callable[[nn.Module, Iterable, Iterable], dict]] = None,
              **train_kwargs) -> pd.DataFrame:
    """Train ``make_model()`` once per seed (the seed fixes the initial weights and the batch order) and return
    the per-epoch histories stacked: columns ``label`` (if given), ``seed``, epoch, train_loss, train_acc,
    test_acc, examples_per_sec; ``len(seeds) * epochs`` rows.

    ``extra(model, train_loader, test_loader) -> dict``, if given, runs on each trained model; its values become
    columns (constant over that run's rows), e.g. the test accuracy after recomputing BN statistics."""
    _check_seeds(seeds)
    with dataset.threads_context():
        return _run_seeds(make_model, dataset, seeds, epochs, lr, batch_size, init, optimizer, progress, label,
                          extra, train_kwargs)


def _run_seeds(make_model, dataset, seeds, epochs, lr, batch_size, init, optimizer, progress, label, extra,
               train_kwargs):
    frames = []
    for seed in seeds:
        torch.manual_seed(seed)  # the model's construction-time parameters (biases, BN) depend on the seed too
        model = make_model()
        train_loader, test_loader = dataset.loaders(batch_size, seed)
        history = train(model, train_loader, test_loader, epochs=epochs, lr=lr, init=init, optimizer=optimizer,
                        seed=seed, device=dataset.device, progress=progress,
                        desc=f"{label or 'run'} seed {seed}", **train_kwargs)
        labels = {"label": label} if label is not None else {}
        frame = history_frame(history, **labels, seed=seed)
        if extra is not None:
            for key, value in extra(model, train_loader, test_loader).items():
                frame[key] = value
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def final_rows(frame: pd.DataFrame, by: Sequence[str] = ("label", "seed")) -> pd.DataFrame:
    """The last epoch of every run in a per-epoch frame (one row per combination of ``by``)."""
    by = [c for c in by if c in frame.columns]
    return frame.groupby(by, sort=False).tail(1).reset_index(drop=True)  # rows are in epoch order per run


def summarize(frame: pd.DataFrame, by: Sequence[str], metrics: Sequence[str] = ("test_acc",)) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1, NaN for one run) and count over seeds of each metric, per group of
    ``by``. Columns: ``by``..., then ``<metric>_mean``, ``<metric>_std`` for each metric, and ``runs``."""
    grouped = frame.groupby(list(by), sort=False)
    out = grouped[list(metrics)].agg(["mean", "std"])
    out.columns = [f"{metric}_{stat}" for metric, stat in out.columns]
    out["runs"] = grouped.size()
    return out.reset_index()


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.812 ± 0.010"``; the std part is left out when it is NaN (a single run)."""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def epoch_spread(frame: pd.DataFrame, metric: str = "test_acc", last: int = 5,
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


def _sweep(values: Iterable, settings: dict, dataset: Data, *, column: str, seeds: Sequence[int], epochs: int,
           progress: bool, run: Callable) -> pd.DataFrame:
    """Train every (setting, value, seed); ``run(setting, value, seed)`` returns a History."""
    _check_seeds(seeds)
    values = list(values)
    if not values:
        raise ValueError(f"give at least one {column}")
    jobs = [(name, value, seed) for name in settings for value in values for seed in seeds]
    from tqdm.auto import tqdm
    from .config import in_ci
    rows = []
    for name, value, seed in tqdm(jobs, desc=f"{column} sweep", unit="run", disable=(not progress) or in_ci()):
        with dataset.threads_context():
            history = run(settings[name], value, seed)
        final = history.final()
        rows.append({"model": name, column: value, "seed": seed, "train_loss": final["train_loss"],
                     "train_acc": final["train_acc"], "test_acc": final["test_acc"],
                     "best_test_acc": max((a for a in history.test_acc if not math.isnan(a)), default=float("nan")),
                     "diverged": history.diverged, "epochs": len(history)})
    return pd.DataFrame(rows)


def lr_sweep(models_: dict[str, Callable[[], nn.Module]], dataset: Data, lrs: Sequence[float], *,
             seeds: Sequence[int] = (0,), epochs: int, batch_size: int = 256, init: Optional[Callable] = xavier_init,
             progress: bool = False, **train_kwargs) -> pd.DataFrame:
    """Final test accuracy for each model (name -> constructor) at each learning rate, per seed (E2).
    ``train_kwargs`` (e.g. ``compile=True``) go to :func:`normbook.train.train`.

    Returns one row per (model, lr, seed): model, lr, seed, train_loss, train_acc, test_acc, best_test_acc,
    diverged, epochs."""
    def run(make_model, lr, seed):
        torch.manual_seed(seed)
        train_loader, test_loader = dataset.loaders(batch_size, seed)
        return train(make_model(), train_loader, test_loader, epochs=epochs, lr=float(lr), init=init, seed=seed,
                     device=dataset.device, progress=False, **train_kwargs)
    return _sweep(lrs, models_, dataset, column="lr", seeds=seeds, epochs=epochs, progress=progress, run=run)


def init_sweep(models_: dict[str, tuple[Callable[[], nn.Module], float]], dataset: Data, scales: Sequence[float], *,
               seeds: Sequence[int] = (0,), epochs: int, batch_size: int = 256,
               progress: bool = False, **train_kwargs) -> pd.DataFrame:
    """Final test accuracy for each model (name -> (constructor, lr)) with every Linear/Conv weight drawn from
    N(0, scale^2), biases zero, at each scale, per seed (E3; cs231n's weight-scale sweep). ``train_kwargs`` go
    to :func:`normbook.train.train`.

    Returns one row per (model, scale, seed), columns as :func:`lr_sweep` with ``scale`` for ``lr``."""
    def run(setting, scale, seed):
        make_model, lr = setting
        torch.manual_seed(seed)
        train_loader, test_loader = dataset.loaders(batch_size, seed)
        return train(make_model(), train_loader, test_loader, epochs=epochs, lr=lr, init=scaled_normal_init(scale),
                     seed=seed, device=dataset.device, progress=False, **train_kwargs)
    return _sweep(scales, models_, dataset, column="scale", seeds=seeds, epochs=epochs, progress=progress, run=run)


def batch_size_sweep(norms: dict[str, Callable], dataset: Data, batch_sizes: Sequence[int], *, base_lr: float,
                     base_batch_size: int = 32, seeds: Sequence[int] = (0,), epochs: int, width: int = 16,
                     optimizer: str = "momentum", progress: bool = False) -> pd.DataFrame:
    """Test error of ``small_cnn(norm)`` for each norm factory (name -> factory) at each batch size (E4).

    The learning rate follows the linear scaling rule, ``lr = base_lr * B / base_batch_size`` (as in Wu & He
    2018), and every batch size trains for the same number of epochs, so small batches take more, smaller steps.
    The last incomplete batch is dropped, so no step normalizes over a single example.
    Returns one row per (model, batch_size, seed) with the columns of :func:`lr_sweep` plus ``lr`` and
    ``test_error`` (= 1 - test_acc).
    """
    for b in batch_sizes:
        if not isinstance(b, int) or b < 2:
            raise ValueError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples), got {b!r}")

    def run(norm, batch_size, seed):
        torch.manual_seed(seed)
        train_loader, test_loader = dataset.loaders(batch_size, seed, drop_last=True)
        model = models.small_cnn(norm, width=width)
        return train(model, train_loader, test_loader, epochs=epochs, lr=base_lr * batch_size / base_batch_size,
                     optimizer=optimizer, seed=seed, device=dataset.device, progress=False)
    frame = _sweep(batch_sizes, norms, dataset, column="batch_size", seeds=seeds, epochs=epochs,
                   progress=progress, run=run)
    frame.insert(2, "lr", base_lr * frame["batch_size"] / base_batch_size)
    frame["test_error"] = 1.0 - frame["test_acc"]
    return frame


def largest_trainable(sweep: pd.DataFrame, column: str = "lr", threshold: float = 0.5) -> dict:
    """Per model, the largest value of ``column`` at which every seed reached mean final test accuracy above
    ``threshold`` (NaN if none did)."""
    summary = summarize(sweep, by=["model", column])
    out = {}
    for name, group in summary.groupby("model", sort=False):
        ok = group.loc[group["test_acc_mean"] > threshold, column]
        out[name] = float(ok.max()) if len(ok) else float("nan")
    return out


def compare_layers(make_a: Callable[[], nn.Module], make_b: Callable[[], nn.Module], dataset: Data, *, seed: int,
                   epochs: int, lr: float, batch_size: int = 256, init: Optional[Callable] = xavier_init,
                   compile: Sequence[bool] = (False, False), processes: int = 1) -> dict:
    """Train two builds of the same architecture (e.g. from normbook.nn and from torch.nn) from the same seed:
    the same initial weights (``b`` starts from ``a``'s state_dict), the same batches in the same order.
    ``compile``: whether each of the two trains through ``torch.compile`` (see :func:`normbook.train.train`).
    ``processes=2`` trains the two at the same time in two forked processes (:func:`parallel_map`), one thread
    each; the models passed in stay untrained then (only the histories come back).

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
        train_loader, test_loader = dataset.loaders(batch_size, seed)
        with dataset.threads_context():
            return train((model_a, model_b)[i], train_loader, test_loader, epochs=epochs, lr=lr, init=None,
                         seed=seed, device=dataset.device, progress=False, compile=bool(compile[i]))
    a, b = parallel_map(run, 2, processes)
    diffs = [abs(x - y) for x, y in zip(a.batch_loss, b.batch_loss)]
    return {"a": a, "b": b, "max_loss_diff": max(diffs), "step_loss_diff": diffs, "initial_param_diff": initial}


_BN_TYPES: tuple = (nn.modules.batchnorm._BatchNorm,)


def _bn_layers(model: nn.Module) -> list:
    from . import nn as nbnn
    types = _BN_TYPES + tuple(getattr(nbnn, name) for name in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")
                              if hasattr(nbnn, name))
    return [m for m in model.modules() if isinstance(m, types) and getattr(m, "track_running_stats", False)]


def recompute_bn_statistics(model: nn.Module, loader: Iterable, device: torch.device | str | None = None) -> int:
    """Replace every BatchNorm layer's running averages by the statistics of the data in ``loader`` under the
    current weights (a cumulative average over its batches, ``momentum=None``), as Ioffe & Szegedy prescribe for
    inference. Weights are not changed; the model's train/eval mode and each layer's momentum are restored.
    Returns the number of BN layers recomputed."""
    layers = _bn_layers(model)
    if not layers:
        return 0
    if device is None:
        device = next(model.parameters()).device
    was_training = model.training
    momenta = [m.momentum for m in layers]
    try:
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for X, _ in loader:
                model(X.to(device))
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return len(layers)


def recomputed_stats_accuracy(dataset: Data, size: int = 10000, batch_size: int = 1000,
                              name: str = "test_acc_recomputed") -> Callable[[nn.Module, int], dict]:
    """An ``on_epoch_end`` hook for :func:`normbook.train.train`: the test accuracy of a copy of the model whose
    BN running averages are replaced by statistics of the first ``size`` training examples under the current
    weights (:func:`recompute_bn_statistics`). The model being trained is not touched. Returns ``{name: acc}``."""
    import copy

    from .train import evaluate
    X, y = dataset.X[:size], dataset.y[:size]

    def hook(model: nn.Module, epoch: int) -> dict:
        twin = copy.deepcopy(model)
        recompute_bn_statistics(twin, data.TensorLoader(X, y, batch_size))
        _, test_loader = dataset.loaders(batch_size)
        return {name: evaluate(twin, test_loader)}
    return hook


# ---------------------------------------------------------------------------------------------------------------
# E4 (second edition): batch size where each statistic averages few values, run two at a time.

def e4_model(norm: Optional[Callable] = None, *, width: int = 256, depth: int = 2,
             num_classes: int = 10) -> nn.Sequential:
    """The E4 network: an MLP on flattened 1x28x28 images, ``depth`` blocks Linear(width) -> norm -> ReLU, then a
    linear head. After a Linear layer a BatchNorm statistic averages one value per example, so at batch size B
    it averages B values (2 at batch 2), the regime in which Wu & He's ResNet-50 fails; a GroupNorm statistic
    averages ``width / groups`` values of one example whatever B is (see :func:`values_per_statistic`).
    ``norm`` is a norm factory ``norm(num_features, spatial_dims)`` (spatial_dims 0 here), e.g.
    ``models.batch_norm()``; None builds the network without normalization (Linear layers then keep biases)."""
    bias = norm is None
    layers: list = [nn.Flatten()]
    fan_in = 28 * 28
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width, bias=bias), *([norm(width, 0)] if norm is not None else []), nn.ReLU()]
        fan_in = width
    layers.append(nn.Linear(fan_in, num_classes))
    return nn.Sequential(*layers)


def values_per_statistic(layer: nn.Module, batch_size: int, spatial: int = 1) -> int:
    """How many numbers one mean/variance of ``layer`` averages for a batch of ``batch_size`` inputs with
    ``spatial`` positions per channel (H*W; 1 after a Linear layer): B*H*W for BatchNorm, (C/G)*H*W for
    GroupNorm (independent of B), C*H*W / C for LayerNorm over C features."""
    name = type(layer).__name__
    if "BatchNorm" in name or "BatchRenorm" in name:
        return batch_size * spatial
    if isinstance(layer, nn.GroupNorm) or name == "GroupNorm":
        return layer.num_channels // layer.num_groups * spatial
    if isinstance(layer, nn.LayerNorm) or name == "LayerNorm":
        return math.prod(layer.normalized_shape)
    raise ValueError(f"no rule for {name}")


_E4_JOBS: list = []
_E4_DATA: dict = {}


def _e4_data(train_size, test_size):
    key = (train_size, test_size)
    if key not in _E4_DATA:
        _E4_DATA[key] = Data(train_size, test_size, device="cpu", threads=1)
    return _E4_DATA[key]


def _e4_run(index: int) -> dict:
    """One (model, batch size, seed) run of :func:`e4_sweep`, on one thread (a worker process or the caller)."""
    job = _E4_JOBS[index]
    torch.set_num_threads(1)
    dataset = _e4_data(job["train_size"], job["test_size"])
    b, seed = job["batch_size"], job["seed"]
    torch.manual_seed(seed)
    model = job["make_model"](job["norm"])
    train_loader, test_loader = dataset.loaders(b, seed, drop_last=True)
    start = time.perf_counter()
    history = train(model, train_loader, test_loader, epochs=job["epochs"], lr=job["lr"],
                    optimizer=job["optimizer"], init=None, seed=seed, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    # the same weights with batch statistics at test time: test batches of the training batch size, train mode
    import copy
    twin = copy.deepcopy(model).train()
    correct = total = 0
    with torch.no_grad():
        Xt, yt = dataset.X_test, dataset.y_test
        for i in range(0, len(Xt) - b + 1, b):
            correct += (twin(Xt[i:i + b]).argmax(1) == yt[i:i + b]).sum().item()
            total += b
    norm_layer = next((m for m in model.modules() if type(m).__name__ in
                       ("BatchNorm1d", "GroupNorm", "LayerNorm", "BatchRenorm1d", "GhostBatchNorm1d")), None)
    final = history.final()
    return {"model": job["name"], "batch_size": b, "lr": job["lr"], "seed": seed,
            "values_per_stat": values_per_statistic(norm_layer, b) if norm_layer is not None else float("nan"),
            "train_loss": final["train_loss"], "train_acc": final["train_acc"], "test_acc": final["test_acc"],
            "test_error": 1.0 - final["test_acc"], "test_error_batch_stats": 1.0 - correct / max(total, 1),
            "diverged": history.diverged, "epochs": len(history), "seconds": seconds,
            "examples_per_sec": float(sum(history.examples_per_sec) / len(history))}


def parallel_map(fn: Callable[[int], dict], n: int, processes: int = 2) -> list:
    """``[fn(i) for i in range(n)]`` in ``processes`` forked worker processes, one torch thread each (the order
    of the results is ``i``'s). Forking lets ``fn`` use closures and module-level state set up before the call.
    ``processes=1`` (or a platform without fork) runs in this process."""
    import multiprocessing as mp
    if processes <= 1 or n <= 1 or "fork" not in mp.get_all_start_methods():
        with cpu_threads(1):
            return [fn(i) for i in range(n)]
    _PMAP_FN[:] = [fn]
    try:
        with mp.get_context("fork").Pool(min(processes, n)) as pool:
            return pool.map(_pmap_call, range(n), chunksize=1)
    finally:
        _PMAP_FN.clear()


_PMAP_FN: list = []


def _pmap_call(i: int):
    torch.set_num_threads(1)
    return _PMAP_FN[0](i)


def e4_sweep(norms: dict, batch_sizes: Sequence[int], seeds: Sequence[int], *, epochs: int = 3,
             base_lr: float = 0.05, base_batch_size: int = 32, train_size: Optional[int] = 12000,
             test_size: Optional[int] = 5000, optimizer: str = "momentum",
             make_model: Callable = e4_model, processes: int = 2) -> pd.DataFrame:
    """E4: test error of ``make_model(norm)`` (default :func:`e4_model`) for each norm factory in ``norms``
    (name -> factory ``norm(num_features, spatial_dims)``, e.g. ``models.batch_norm()``; None for no norm) at
    each batch size and seed. The learning rate follows the linear scaling rule
    ``lr = base_lr * B / base_batch_size``, every batch size trains the same number of epochs on the same
    ``train_size`` examples (the last incomplete batch dropped), SGD with momentum 0.9 by default. Runs go two
    at a time in forked processes, one thread each (:func:`parallel_map`).

    Returns one row per (model, batch_size, seed): model, batch_size, lr, seed, values_per_stat (the values one
    statistic of the first norm layer averages), train_loss, train_acc, test_acc, test_error (eval mode: running
    averages), test_error_batch_stats (train mode on test batches of size B: batch statistics), diverged,
    epochs, seconds, examples_per_sec."""
    _check_seeds(seeds)
    for b in batch_sizes:
        if not isinstance(b, int) or b < 2:
            raise ValueError(f"batch sizes must be integers >= 2 (BatchNorm needs two examples), got {b!r}")
    jobs = [{"name": name, "norm": norm, "batch_size": b, "seed": s, "lr": base_lr * b / base_batch_size,
             "epochs": epochs, "optimizer": optimizer, "train_size": train_size, "test_size": test_size,
             "make_model": make_model}
            for name, norm in norms.items() for b in batch_sizes for s in seeds]
    # the longest runs (smallest batches) first, so the two workers finish together
    order = sorted(range(len(jobs)), key=lambda i: jobs[i]["batch_size"])
    _E4_JOBS[:] = [jobs[i] for i in order]
    _e4_data(train_size, test_size)  # loaded once, before forking
    try:
        rows = parallel_map(_e4_run, len(jobs), processes)  # _e4_run is module-level
    finally:
        _E4_JOBS.clear()
    frame = pd.DataFrame(rows)
    key = {(j["name"], j["batch_size"], j["seed"]): i for i, j in enumerate(jobs)}
    frame["_k"] = [key[(m, b, s)] for m, b, s in zip(frame.model, frame.batch_size, frame.seed)]
    return frame.sort_values("_k").drop(columns="_k").reset_index(drop=True)
