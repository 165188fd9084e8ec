"""Chapters 2-3 figures: the mathematics of BatchNorm and which elements share statistics."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib.patches import Rectangle

from .common import COLORS, new_figure

__all__ = ["scale_invariance", "shared_statistics", "SHARING_LAYOUTS", "bn_graph"]


def scale_invariance(scales: Sequence[float], grad_norms: Sequence[float], output_diffs: Sequence[float], *,
                     width: float = 7.5, height: float = 3.6):
    """Two panels against the scale ``a`` of the weights before a BN layer (both axes logarithmic).

    Left: the norm of the gradient with respect to the scaled weights, with the line ``g(1) / a`` it should
    follow. Right: the largest change of the BN output compared with ``a = 1`` (zero is drawn at the floor).
    """
    scales = np.asarray(scales, dtype=float)
    grad_norms = np.asarray(grad_norms, dtype=float)
    if len(scales) != len(grad_norms) or len(scales) != len(output_diffs) or len(scales) == 0:
        raise ValueError("scales, grad_norms and output_diffs must be non-empty and of the same length")
    fig, (ax_g, ax_y) = new_figure(1, 2, width=width, height=height)
    ref = grad_norms[np.argmin(np.abs(np.log(scales)))] * scales[np.argmin(np.abs(np.log(scales)))]
    ax_g.plot(scales, grad_norms, "o", color=COLORS[0], label="measured", markersize=6)
    ax_g.plot(scales, ref / scales, "-", color=COLORS[1], label=r"$\|g(1)\| / a$", linewidth=1.4)
    ax_g.set_xscale("log")
    ax_g.set_yscale("log")
    ax_g.set_xlabel("scale $a$ of the weights")
    ax_g.set_ylabel(r"$\|\partial L / \partial W\|$ at $aW$")
    ax_g.set_title("gradient shrinks as 1/a", fontsize=10)
    ax_g.legend(fontsize=9)
    diffs = np.asarray(output_diffs, dtype=float)
    keep = diffs > 0  # a = 1 is the reference itself (difference exactly 0): nothing to draw on a log axis
    ax_y.plot(scales[keep], diffs[keep], "s-", color=COLORS[2], markersize=5, linewidth=1.2)
    ax_y.set_xscale("log")
    ax_y.set_yscale("log")
    ax_y.set_xlabel("scale $a$ of the weights")
    ax_y.set_ylabel(r"max $|\mathrm{BN}(aWx) - \mathrm{BN}(Wx)|$")
    ax_y.set_title("output unchanged (up to eps, rounding)", fontsize=10)
    return fig


#: The layouts ``shared_statistics`` can draw: (title, N, C, H, W, what the channel axis is called).
SHARING_LAYOUTS = {
    "1d": ("BatchNorm1d on (N, C)", 4, 5, 1, 1),
    "1d_seq": ("BatchNorm1d on (N, C, L)", 4, 3, 1, 6),
    "2d": ("BatchNorm2d on (N, C, H, W)", 3, 3, 3, 3),
}


def shared_statistics(layouts: Sequence[str] = ("1d", "1d_seq", "2d"), *, highlight: Optional[int] = None,
                      width: float = 7.5, height: float = 3.4):
    """Draw small tensors cell by cell, coloured by channel: cells of one colour share one mean and variance.

    Each example of the batch is one row; within a row, each channel is a block of H x W cells. ``highlight``
    greys out every channel but one, to single out the elements behind one mean.
    """
    if not layouts:
        raise ValueError("shared_statistics needs at least one layout")
    unknown = [k for k in layouts if k not in SHARING_LAYOUTS]
    if unknown:
        raise ValueError(f"unknown layouts {unknown}; choose from {sorted(SHARING_LAYOUTS)}")
    fig, axes = new_figure(1, len(layouts), width=width, height=height, squeeze=False)
    for ax, key in zip(axes[0], layouts):
        title, n, c, h, w = SHARING_LAYOUTS[key]
        gap = 0.6
        for i in range(n):
            y0 = (n - 1 - i) * (h + gap)
            for ch in range(c):
                x0 = ch * (w + gap)
                on = highlight is None or ch == highlight
                color = COLORS[ch % len(COLORS)] if on else "#DDDDDD"
                for r in range(h):
                    for q in range(w):
                        ax.add_patch(Rectangle((x0 + q, y0 + h - 1 - r), 1, 1, facecolor=color,
                                               edgecolor="white", linewidth=1.0, alpha=0.9 if on else 1.0))
            ax.text(-0.4, y0 + h / 2, f"n={i}", ha="right", va="center", fontsize=8)
        for ch in range(c):
            ax.text(ch * (w + gap) + w / 2, n * (h + gap) - gap + 0.3, f"c={ch}", ha="center", va="bottom",
                    fontsize=8)
        per_mean = n * h * w
        ax.set_title(f"{title}\n{c} means, each over {per_mean} elements", fontsize=9)
        ax.set_xlim(-2.2, c * (w + gap))
        ax.set_ylim(-0.3, n * (h + gap) + 1.2)
        ax.set_aspect("equal")
        ax.axis("off")
    return fig


def bn_graph(*, width: float = 7.5, height: float = 3.6):
    """BatchNorm's forward pass as a computational graph: x -> mu, sigma^2, x_hat -> y -> L.

    The three paths from x_i to x_hat_i are coloured: direct (x_i - mu), through the mean mu, and through the
    variance sigma^2 (which itself reads x and mu). The backward derivation walks these edges in reverse.
    """
    from matplotlib.patches import FancyArrowPatch

    fig, ax = new_figure(1, 1, width=width, height=height)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 5)
    ax.axis("off")
    ax.grid(False)
    nodes = {"x": (0.8, 2.5, r"$x_i$"), "mu": (3.2, 4.2, r"$\mu_\mathcal{B}$"),
             "var": (5.0, 0.8, r"$\sigma^2_\mathcal{B}$"), "xhat": (6.6, 2.5, r"$\hat x_i$"),
             "y": (8.2, 2.5, r"$y_i$"), "L": (9.5, 2.5, r"$\mathcal{L}$"),
             "gb": (8.2, 4.4, r"$\gamma,\ \beta$")}
    for x, y, label in nodes.values():
        ax.text(x, y, label, ha="center", va="center", fontsize=13, zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", fc="white", ec="0.3", lw=1.2))
    direct, mean, var = COLORS[0], COLORS[1], COLORS[2]
    edges = [("x", "xhat", direct, 0.0, "1: direct"), ("x", "mu", mean, 0.0, "2: through the mean"),
             ("mu", "xhat", mean, 0.0, None), ("x", "var", var, 0.0, "3: through the variance"),
             ("mu", "var", var, 0.0, None), ("var", "xhat", var, 0.0, None),
             ("xhat", "y", "0.3", 0.0, None), ("gb", "y", "0.3", 0.0, None), ("y", "L", "0.3", 0.0, None)]
    for a, b, color, rad, _label in edges:
        (x0, y0, _), (x1, y1, _) = nodes[a], nodes[b]
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=16, color=color,
                                     lw=2.0, shrinkA=17, shrinkB=17, connectionstyle=f"arc3,rad={rad}",
                                     zorder=2))
    ax.text(3.7, 2.8, "path 1: direct", color=direct, fontsize=10, ha="center")
    ax.text(1.4, 3.75, "path 2:\nthrough $\\mu_\\mathcal{B}$", color=mean, fontsize=10, ha="center")
    ax.text(1.9, 1.0, "path 3: through $\\sigma^2_\\mathcal{B}$", color=var, fontsize=10, ha="center")
    ax.text(5.0, 0.05, r"every $x_j$ of the batch feeds $\mu_\mathcal{B}$ and $\sigma^2_\mathcal{B}$",
            fontsize=9, ha="center", color="0.3")
    return fig
