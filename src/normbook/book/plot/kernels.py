"""Chapter 10's figure: achieved memory bandwidth of a layer's implementations against a copy."""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .common import COLORS, new_figure

__all__ = ["bandwidth_bars"]


def bandwidth_bars(gbps: Dict[str, Dict[str, Tuple[float, float]]], copy_gbps: float, title: str = ""):
    """Grouped bars of achieved GB/s per implementation, one group per pass.

    ``gbps[pass_name][path] = (centre, spread)`` (e.g. the median and the standard deviation over timing rounds);
    ``copy_gbps`` (a device copy of the same size) is drawn as a dashed
    line: the practical ceiling. Log scale, since the slowest and fastest paths differ by orders of magnitude."""
    passes = list(gbps)
    paths = list(dict.fromkeys(p for d in gbps.values() for p in d))
    fig, ax = new_figure(width=6.4, height=4.0)
    width = 0.8 / len(paths)
    x = np.arange(len(passes))
    for i, path in enumerate(paths):
        means = [gbps[p].get(path, (np.nan, 0))[0] for p in passes]
        stds = [gbps[p].get(path, (np.nan, 0))[1] for p in passes]
        ax.bar(x + (i - (len(paths) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=path,
               color=COLORS[i % len(COLORS)])
    ax.axhline(copy_gbps, color="black", linestyle="--", linewidth=1.2,
               label=f"device copy ({copy_gbps:.1f} GB/s)")
    ax.set_yscale("log")
    ax.set_xticks(x, passes)
    ax.set_ylabel("achieved GB/s (streaming floor / time)")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    lows = [m - s for d in gbps.values() for m, s in d.values() if m == m]
    ax.set_ylim(bottom=max(min(lows + [copy_gbps]) * 0.5, 1e-3))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=3)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
