"""Figures of chapter 6: learning curves over seeds and the sweeps (learning rate, initialization, batch size).

All take the pandas frames made by :mod:`normbook.book.runs` and return a matplotlib Figure. Accuracy columns are
named after the split they were measured on (``val_acc`` while tuning, ``test_acc`` when reporting).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.ticker import MaxNLocator

from .common import COLORS, new_figure

__all__ = ["learning_curves", "per_seed_curves", "per_seed_panels", "sweep_curve", "sweep_panels", "accuracy_vs_lr",
           "accuracy_vs_init_scale", "error_vs_batch_size", "loss_comparison"]

_LABELS = {"train_loss": "training loss", "train_acc": "training accuracy", "test_acc": "test accuracy",
           "val_acc": "validation accuracy", "test_error": "test error", "val_error": "validation error",
           "best_test_acc": "best test accuracy", "best_val_acc": "best validation accuracy", "lr": "learning rate",
           "scale": "weight scale (std of the initial weights)", "batch_size": "batch size (examples per batch)"}


def _band(ax, x, values, color, label, marker=None):
    """Mean over the rows of ``values`` (runs x points) with a band of min..max over runs."""
    values = np.asarray(values, dtype=float)
    mean = np.nanmean(values, axis=0)
    if len(x) == 1 and len(values) > 1:  # a single setting: the range over runs as an error bar
        low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], color=color, label=label, marker=marker, lw=1.8,
                    capsize=4)
        return
    ax.plot(x, mean, color=color, label=label, marker=marker, lw=1.8)
    if len(values) > 1:
        ax.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0), color=color, alpha=0.2, lw=0)


def _accuracy_column(frame) -> str:
    """``val_acc`` or ``test_acc``, whichever the frame holds."""
    for name in ("val_acc", "test_acc"):
        if name in frame.columns:
            return name
    raise ValueError(f"the frame has no val_acc or test_acc column (columns: {list(frame.columns)})")


def learning_curves(frame, metrics: Optional[Sequence[str]] = None, by: str = "label",
                    width: float = 10.0, height: float = 3.4):
    """One panel per metric against the epoch: for each value of ``by`` (e.g. "BN", "no BN") the mean over
    seeds as a line and the range over seeds (min to max) as a band. ``frame``: per-epoch rows with columns
    ``by``, seed, epoch and the metrics (from :func:`normbook.book.runs.run_seeds`); by default training loss,
    training accuracy and the accuracy on the split the runs were evaluated on."""
    if metrics is None:
        metrics = ("train_loss", "train_acc", _accuracy_column(frame))
    fig, axes = new_figure(1, len(metrics), width, height, squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, (name, group) in enumerate(frame.groupby(by, sort=False)):
            table = group.pivot(index="seed", columns="epoch", values=metric)
            _band(ax, table.columns.to_numpy(), table.to_numpy(), COLORS[i % len(COLORS)],
                  f"{name} ({len(table)} seeds)", marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(_LABELS.get(metric, metric))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].legend()
    return fig


def per_seed_curves(frame, metrics: Sequence[str], labels: Sequence[str], *, ylabel: str = "test accuracy",
                    title: Optional[str] = None, width: float = 6.4, height: float = 3.8):
    """Every seed's curve of each metric against the epoch (one colour per seed, one line style per metric):
    for telling apart what moves from epoch to epoch in every run from what differs between runs.
    ``frame``: per-epoch rows with columns seed, epoch and the metrics; ``labels``: one legend text per metric."""
    fig, ax = new_figure(1, 1, width, height)
    styles = ["-", "--", ":", "-."]
    for i, (seed, run) in enumerate(frame.sort_values("epoch").groupby("seed", sort=True)):
        for j, (metric, label) in enumerate(zip(metrics, labels)):
            ax.plot(run["epoch"], run[metric], color=COLORS[i % len(COLORS)], ls=styles[j % len(styles)],
                    marker="o", ms=3, lw=1.5, label=f"{label}, seed {seed}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small", ncol=2)
    return fig


def per_seed_panels(frame, metrics: Sequence[str], labels: Sequence[str], *, ylabel: str = "test accuracy",
                    title: Optional[str] = None, width: float = 10.0, height: float = 3.4):
    """One panel per seed (shared y axis), one line per metric against the epoch: for comparing several ways
    of evaluating the same run epoch by epoch. ``frame``: per-epoch rows with columns seed, epoch and the
    metrics; ``labels``: one legend text per metric (the legend is in the first panel)."""
    seeds = sorted(frame["seed"].unique())
    fig, axes = new_figure(1, len(seeds), width, height, sharey=True, squeeze=False)
    styles = ["-", "--", ":", "-."]
    for ax, seed in zip(axes[0], seeds):
        run = frame[frame["seed"] == seed].sort_values("epoch")
        for j, (metric, label) in enumerate(zip(metrics, labels)):
            ax.plot(run["epoch"], run[metric], color=COLORS[j % len(COLORS)], ls=styles[j % len(styles)],
                    marker="o", ms=3, lw=1.5, label=label)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


def sweep_curve(sweep, x: str, y: Optional[str] = None, by: str = "model", *, logx: bool = True,
                chance: Optional[float] = 0.1, ax=None, title: Optional[str] = None, width: float = 5.6,
                height: float = 3.8):
    """``y`` against ``x`` for each value of ``by``: the mean over seeds with markers and the min..max range
    over seeds as a band. A dashed line marks chance level when ``chance`` is given. ``y`` defaults to the
    accuracy column of the sweep (``val_acc``)."""
    y = y or _accuracy_column(sweep)
    if ax is None:
        fig, ax = new_figure(1, 1, width, height)
    else:
        fig = ax.figure
    for i, (name, group) in enumerate(sweep.groupby(by, sort=False)):
        table = group.pivot(index="seed", columns=x, values=y)
        _band(ax, table.columns.to_numpy(dtype=float), table.to_numpy(), COLORS[i % len(COLORS)], str(name),
              marker="o")
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", lw=1, label="chance")
    if logx:
        ax.set_xscale("log", base=2 if x == "batch_size" else 10)
    if x == "batch_size":
        ticks = sorted(sweep[x].unique())
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.minorticks_off()
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel(_LABELS.get(y, y))
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def sweep_panels(sweep, x: str, groups: dict, y: Optional[str] = None, *, title: Optional[str] = None,
                 width: float = 10.0, height: float = 3.6, **kwargs):
    """One :func:`sweep_curve` panel per group of models, side by side with a shared y axis: ``groups`` maps a
    panel title to the model names it shows (e.g. ``{"sigmoid": [...], "ReLU": [...]}``; any iterable of names,
    a dict's keys included). ``title`` goes above the figure; other keyword arguments go to each panel."""
    fig, axes = new_figure(1, len(groups), width, height, sharey=True, squeeze=False)
    for ax, (name, models) in zip(axes[0], groups.items()):
        sweep_curve(sweep[sweep["model"].isin(list(models))], x, y, ax=ax, title=str(name), **kwargs)
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    if title:
        fig.suptitle(title)
    return fig


def accuracy_vs_lr(sweep, **kwargs):
    """Final (validation) accuracy against the learning rate (log axis), one curve per model."""
    return sweep_curve(sweep, "lr", **kwargs)


def accuracy_vs_init_scale(sweep, **kwargs):
    """Final (validation) accuracy against the standard deviation of the initial weights (log axis), per model."""
    return sweep_curve(sweep, "scale", **kwargs)


def error_vs_batch_size(sweep, **kwargs):
    """Error (``val_error`` or ``test_error``) against the batch size (log2 axis), one curve per normalization,
    in the layout of Wu & He (2018), Fig. 1 (E4)."""
    kwargs.setdefault("chance", None)
    y = kwargs.pop("y", None) or ("val_error" if "val_error" in sweep.columns else "test_error")
    return sweep_curve(sweep, "batch_size", y, **kwargs)


def loss_comparison(result: dict, labels: Sequence[str] = ("normbook.nn", "torch.nn"), width: float = 10.0,
                    height: float = 3.4):
    """Left: the per-step training losses of two runs (``result["a"]``, ``result["b"]`` Histories, from
    :func:`normbook.book.runs.compare_layers`). Right: their absolute difference per step on a log scale."""
    fig, (left, right) = new_figure(1, 2, width, height)
    a, b = result["a"].batch_loss, result["b"].batch_loss
    steps = np.arange(1, len(a) + 1)
    left.plot(steps, a, color=COLORS[0], lw=1.5, label=labels[0])
    left.plot(steps, b, color=COLORS[1], lw=1.0, ls="--", label=labels[1])
    left.set_xlabel("training step")
    left.set_ylabel("training loss (mini-batch)")
    left.legend()
    diff = np.asarray(result["step_loss_diff"], dtype=float)
    right.plot(steps, np.where(diff > 0, diff, np.nan), color=COLORS[2], lw=1.0)
    right.set_yscale("log")
    right.set_xlabel("training step")
    right.set_ylabel("|loss difference|")
    return fig
