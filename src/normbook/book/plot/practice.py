"""Figures of chapter 7 (BatchNorm in practice): accuracy per fine-tuning treatment, the residual stream's scale
per block with the early loss curves, the norm and the rotation of BN's (gamma, beta) under weight decay, and the
validation error of the small-batch remedies."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

from .common import COLORS, new_figure

__all__ = ["mean_std_bars", "residual_scale", "weight_decay_curves", "grouped_error_bars"]


def mean_std_bars(names: Sequence[str], runs: Sequence[Sequence[float]], *, ylabel: str, width: float = 6.4,
                  height: float = 3.4, ylim=None):
    """One bar per setting: the mean over runs, an error bar of one sample standard deviation (ddof = 1) and each
    run as a dot. ``runs[i]`` holds the values (one per seed) of ``names[i]``; a name may contain line breaks."""
    fig, ax = new_figure(1, 1, width, height)
    x = np.arange(len(names))
    for i, values in enumerate(runs):
        values = np.asarray(values, dtype=float)
        ax.bar(x[i], values.mean(), color=COLORS[i % len(COLORS)], alpha=0.75,
               yerr=values.std(ddof=1) if len(values) > 1 else None, capsize=4)
        ax.plot(np.full(len(values), x[i]), values, "k.", ms=5)
    ax.set_xticks(x, names, fontsize=9)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return fig


def residual_scale(scales: Mapping[str, Sequence[float]], curves: Mapping[str, Sequence[Sequence[float]]], *,
                   steps_per_point: int = 1, width: float = 10.0, height: float = 3.6):
    """Left: the standard deviation of the residual stream after the stem (block 0) and after each block, one
    line per network (log scale). Right: the training loss of the first steps, mean over seeds with a min-max
    band, one line per network; ``curves[name]`` is (seeds x points), each point the mean of
    ``steps_per_point`` steps."""
    fig, (ax0, ax1) = new_figure(1, 2, width, height)
    for i, (name, values) in enumerate(scales.items()):
        ax0.plot(np.arange(len(values)), values, marker="o", color=COLORS[i % len(COLORS)], label=name)
    ax0.set_yscale("log")
    low = min(min(v) for v in scales.values())
    high = max(max(v) for v in scales.values())
    ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100) if low / 1.5 <= t <= high * 1.5]
    ax0.set_yticks(ticks)
    ax0.yaxis.set_major_formatter(ScalarFormatter())
    ax0.yaxis.set_minor_formatter(NullFormatter())
    ax0.set_xlabel("residual block")
    ax0.set_ylabel("std of the residual stream")
    ax0.legend(fontsize=9)
    for i, (name, runs) in enumerate(curves.items()):
        runs = np.asarray(runs, dtype=float)
        x = (np.arange(runs.shape[1]) + 1) * steps_per_point
        ax1.plot(x, runs.mean(0), color=COLORS[i % len(COLORS)], label=f"{name} ({len(runs)} seeds)")
        ax1.fill_between(x, runs.min(0), runs.max(0), color=COLORS[i % len(COLORS)], alpha=0.2, lw=0)
    ax1.set_xlabel("training step")
    ax1.set_ylabel("training loss")
    ax1.legend(fontsize=9)
    return fig


def weight_decay_curves(norms: Mapping[str, Sequence[Sequence[float]]],
                        turns: Mapping[str, Sequence[Sequence[float]]], *, window: int = 25,
                        width: float = 10.0, height: float = 3.6):
    """Left: the norm of a parameter group (e.g. one BN layer's gamma and beta) after every training step, mean
    over seeds with a min-max band, one line per setting. Right: the angle (radians) by which the group turned
    in each step, averaged over ``window`` steps and over seeds. ``norms[name]`` and ``turns[name]`` are
    (seeds x steps)."""
    fig, (ax0, ax1) = new_figure(1, 2, width, height)
    for i, name in enumerate(norms):
        color = COLORS[i % len(COLORS)]
        runs = np.asarray(norms[name], dtype=float)
        x = np.arange(1, runs.shape[1] + 1)
        ax0.plot(x, runs.mean(0), color=color, label=name)
        ax0.fill_between(x, runs.min(0), runs.max(0), color=color, alpha=0.2, lw=0)
        angle = np.asarray(turns[name], dtype=float).mean(0)
        kernel = np.ones(window) / window
        smooth = np.convolve(angle, kernel, mode="valid")
        ax1.plot(np.arange(window, len(angle) + 1), smooth, color=color, label=name)
    ax0.set_xlabel("training step")
    ax0.set_ylabel(r"$\|(\gamma, \beta)\|$ of the first BN layer")
    ax0.legend(fontsize=9)
    ax1.set_yscale("log")
    ax1.set_xlabel("training step")
    ax1.set_ylabel(f"angle turned per step (mean of {window})")
    ax1.legend(fontsize=9)
    return fig


def grouped_error_bars(frame, *, group: str = "batch_size", by: str = "norm", metric: str = "test_error",
                       ylabel: str = "test error", width: float = 7.0, height: float = 3.6):
    """Bars of the mean of ``metric`` over seeds (error bar: one std, dots: the runs) for each value of ``by``,
    grouped by ``group`` (e.g. batch size). ``frame``: one row per (by, group, seed)."""
    fig, ax = new_figure(1, 1, width, height)
    groups = list(dict.fromkeys(frame[group]))
    names = list(dict.fromkeys(frame[by]))
    w = 0.8 / len(names)
    for j, name in enumerate(names):
        for k, g in enumerate(groups):
            values = frame.loc[(frame[by] == name) & (frame[group] == g), metric].to_numpy(dtype=float)
            x = k + (j - (len(names) - 1) / 2) * w
            ax.bar(x, values.mean(), w * 0.9, color=COLORS[j % len(COLORS)], alpha=0.75,
                   yerr=values.std(ddof=1) if len(values) > 1 else None, capsize=3,
                   label=name if k == 0 else None)
            ax.plot(np.full(len(values), x), values, "k.", ms=4)
    ax.set_xticks(range(len(groups)), [f"{group.replace('_', ' ')} {g}" for g in groups])
    ax.set_ylabel(ylabel)
    top = float(frame[metric].max())
    ax.set_ylim(0, top * 1.3)
    ax.legend(fontsize=9, ncol=len(names), loc="upper center")
    return fig
