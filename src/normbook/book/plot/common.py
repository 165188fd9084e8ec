"""Shared figure settings."""
from __future__ import annotations

import matplotlib

__all__ = ["new_figure", "COLORS", "STYLE"]

# A colour-blind-safe cycle (Okabe & Ito) used for every figure in the book.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


#: The book's figure style. Applied only while :func:`new_figure` builds a figure (a style context), so importing
#: ``normbook.book.plot`` leaves matplotlib's global settings to the reader.
STYLE = {"axes.prop_cycle": matplotlib.cycler(color=COLORS), "axes.grid": True, "grid.alpha": 0.3,
         "figure.dpi": 100, "savefig.dpi": 150}


def new_figure(nrows: int = 1, ncols: int = 1, width: float = 6.4, height: float = 4.0, **kwargs):
    """A figure with the book's style; returns (fig, axes).

    The style (:data:`STYLE`) is applied while the figure and its axes are created: the colour cycle and the grid
    are properties of each axes from then on, and nothing global changes. The figure is closed in pyplot right
    away: a notebook then shows it only where a cell returns or glues it, never a second time at the end of the
    cell. (Creating it through pyplot is what registers the inline backend's PNG formatter, so a returned or
    glued figure renders.)
    """
    import matplotlib.pyplot as plt
    import numpy as np
    with matplotlib.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), layout="constrained", **kwargs)
        for ax in np.atleast_1d(axes).ravel():
            ax.grid(True, alpha=STYLE["grid.alpha"])  # grid lines are styled lazily: fix them on the axes
    plt.close(fig)
    return fig, axes
