"""Chapter 8's figure: per-process BatchNorm against SyncBatchNorm (over groups, over every process) under data
parallelism."""
from __future__ import annotations

import textwrap
from typing import Mapping, Sequence

import numpy as np

from .common import COLORS, new_figure

__all__ = ["sync_comparison"]


def sync_comparison(acc: Mapping[str, Sequence[float]], step_ms: Mapping[str, Sequence[float]],
                    sync_ms: Mapping[str, Sequence[float]], width: float = 7.4, height: float = 3.4):
    """Left: test accuracy per variant, the mean over seeds with an error bar of one sample standard deviation
    (ddof = 1) and each seed as a dot. Right: milliseconds per training step, split into SyncBatchNorm's
    collectives and everything else (forward, backward, DDP's gradient all-reduce, the SGD step). The keys of
    the three mappings are the variants' names, in the order to draw them."""
    fig, (ax1, ax2) = new_figure(1, 2, width=width, height=height)
    names = list(acc)
    labels = [textwrap.fill(name, 14) for name in names]
    x = np.arange(len(names))
    colors = [COLORS[i % len(COLORS)] for i in range(len(names))]
    for i, name in enumerate(names):
        values = np.asarray(acc[name], dtype=float)
        ax1.bar(x[i], values.mean(), color=colors[i], alpha=0.8,
                yerr=values.std(ddof=1) if len(values) > 1 else None, capsize=4)
        ax1.scatter(np.full(len(values), x[i]), values, color="black", s=10, zorder=3)
    lo = min(min(v) for v in acc.values())
    hi = max(max(v) for v in acc.values())
    ax1.set_ylim(max(0.0, lo - 0.1), min(1.0, hi + 0.05))
    ax1.set_xticks(x, labels, fontsize=8)
    ax1.set_ylabel("test accuracy")
    ax1.set_title("accuracy (dots: seeds)", fontsize=10)
    sync = np.array([np.mean(sync_ms[k]) for k in names])
    other = np.array([np.mean(step_ms[k]) for k in names]) - sync
    ax2.bar(x, other, color="0.7", label="compute + DDP")
    ax2.bar(x, sync, bottom=other, color=COLORS[1], label="SyncBN collectives")
    ax2.set_xticks(x, labels, fontsize=8)
    ax2.set_ylabel("ms per step")
    ax2.set_title("time per training step", fontsize=10)
    ax2.legend(fontsize=8)
    return fig
