"""Chapter 9's figures: quantities per layer of a Transformer and training curves averaged over seeds."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .common import new_figure

__all__ = ["per_layer_lines", "mean_std_curves", "factor_panels"]


def per_layer_lines(curves: Mapping[str, Sequence[float]], *, ylabel: str, xlabel: str = "layer",
                    logy: bool = True, width: float = 6.4, height: float = 3.4):
    """One line with markers per setting: ``curves[name][i]`` is the value at layer ``i + 1``."""
    fig, ax = new_figure(1, 1, width, height)
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        ax.plot(np.arange(1, len(values) + 1), values, marker="o", label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    return fig


def mean_std_curves(steps: Sequence[float], curves: Mapping[str, np.ndarray], *, ylabel: str,
                    xlabel: str = "training step", logy: bool = False, ylim=None, width: float = 6.4,
                    height: float = 3.4):
    """The mean over seeds of each setting as a line, one standard deviation as a band.
    ``curves[name]`` has shape (seeds, len(steps)); one seed draws the line alone."""
    fig, ax = new_figure(1, 1, width, height)
    steps = np.asarray(steps, dtype=float)
    for name, runs in curves.items():
        runs = np.atleast_2d(np.asarray(runs, dtype=float))
        mean = np.nanmean(runs, 0)
        line, = ax.plot(steps, mean, label=name)
        if len(runs) > 1:
            std = np.nanstd(runs, 0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=9)
    return fig


def factor_panels(panels: Mapping[str, Mapping[str, Sequence[float]]], *, xlabel: str = "block $\\ell$",
                  logy: bool = True, width: float = 6.4, height: float = 2.8):
    """Side-by-side panels of per-layer quantities sharing the x axis: ``panels[title][series][i]`` is the
    value of ``series`` at layer ``i + 1`` in the panel ``title`` (e.g. a gradient and its two factors). The
    series keep their colours across panels; one legend below."""
    fig, axes = new_figure(1, len(panels), width, height)
    axes = np.atleast_1d(axes)
    for ax, (title, curves) in zip(axes, panels.items()):
        for name, values in curves.items():
            values = np.asarray(values, dtype=float)
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3, label=name)
        if logy:
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.tick_params(labelsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside lower center", ncol=len(labels))
    return fig
