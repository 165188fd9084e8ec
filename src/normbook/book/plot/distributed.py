"""Chapter 8's figure: per-process BatchNorm vs SyncBatchNorm under data parallelism."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .common import COLORS, new_figure

__all__ = ["sync_comparison"]


def sync_comparison(acc: Mapping[str, Sequence[float]], step_ms: Mapping[str, Sequence[float]],
                    sync_ms: Mapping[str, Sequence[float]], width: float = 7.0):
    """Left: test accuracy (mean ± std over seeds) per variant. Right: milliseconds per training step, split
    into SyncBatchNorm's collectives and everything else (forward, backward, DDP's gradient all-reduce, SGD)."""
    fig, (ax1, ax2) = new_figure(1, 2, width=width, height=3.2)
    names = list(acc)
    x = np.arange(len(names))
    colors = [COLORS[i % len(COLORS)] for i in range(len(names))]
    ax1.bar(x, [np.mean(acc[k]) for k in names], yerr=[np.std(acc[k]) for k in names], color=colors, capsize=4)
    for i, k in enumerate(names):
        ax1.scatter(np.full(len(acc[k]), i), acc[k], color="black", s=10, zorder=3)
    lo = min(min(v) for v in acc.values())
    ax1.set_ylim(max(0.0, lo - 0.1), min(1.0, max(max(v) for v in acc.values()) + 0.05))
    ax1.set_xticks(x, names)
    ax1.set_ylabel("test accuracy")
    ax1.set_title("accuracy (dots: seeds)")
    other = [np.mean(step_ms[k]) - np.mean(sync_ms[k]) for k in names]
    sync = [np.mean(sync_ms[k]) for k in names]
    ax2.bar(x, other, color="0.7", label="compute + DDP")
    ax2.bar(x, sync, bottom=other, color=COLORS[1], label="SyncBN collectives")
    ax2.set_xticks(x, names)
    ax2.set_ylabel("ms per step")
    ax2.set_title("time per training step")
    ax2.legend(fontsize=8)
    return fig
