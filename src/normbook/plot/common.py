"""Shared figure settings."""
from __future__ import annotations

import matplotlib

__all__ = ["new_figure", "COLORS"]

# A colour-blind-safe cycle (Okabe & Ito) used for every figure in the book.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.0, **kwargs):
    """A figure with the book's style; returns (fig, axes). Uses the object API so nothing leaks between cells."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


matplotlib.rcParams.update({"axes.prop_cycle": matplotlib.cycler(color=COLORS), "axes.grid": True,
                            "grid.alpha": 0.3, "figure.dpi": 100, "savefig.dpi": 150})
