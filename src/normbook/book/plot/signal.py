"""Chapter 1 figures: how a signal and its gradient travel through a deep network, layer by layer."""
from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import torch

from .common import COLORS, new_figure

__all__ = ["per_layer", "std_per_layer", "grad_norm_per_layer", "grad_data_ratio_per_layer",
           "activation_histograms"]

BN_SUFFIX = " + BN"


def _base(label: str) -> str:
    return label[: -len(BN_SUFFIX)] if label.endswith(BN_SUFFIX) else label


def per_layer(curves: Mapping[str, Sequence[float]], *, ylabel: str, title: Optional[str] = None,
              logy: bool = True, xlabel: str = "layer", ax=None, width: float = 7.0, height: float = 4.2,
              hline: Optional[float] = None, hline_label: Optional[str] = None):
    """One line per entry of ``curves`` (label -> one value per layer, layer 1 first); returns the figure.

    Labels ending in " + BN" are drawn dashed in the colour of the label without it, so each initialisation
    keeps one colour with and without normalization. On a log axis only positive finite values can be drawn:
    where a curve turns inf or nan it ends in a cross and a note gives the layer; a curve with nothing to draw
    keeps its legend entry with the reason ("all zero" or "inf/nan from layer 1").
    """
    if ax is None:
        fig, ax = new_figure(width=width, height=height)
    else:
        fig = ax.figure
    colors: Dict[str, str] = {}
    for label, values in curves.items():
        values = [float(v) for v in values]
        base = _base(label)
        color = colors.setdefault(base, COLORS[len(colors) % len(COLORS)])
        style = "--" if label.endswith(BN_SUFFIX) else "-"
        layers = np.arange(1, len(values) + 1)
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        upto = len(values) if bad is None else bad
        y = np.array(values[:upto], dtype=float)
        x = layers[:upto]
        if logy:
            keep = y > 0
            x, y = x[keep], y[keep]
        shown = label
        if len(y) == 0:
            reason = "all zero" if bad is None else f"inf/nan from layer {bad + 1}"
            shown = f"{label} ({reason}, not drawn)"
        elif bad is not None:
            shown = f"{label} (inf/nan from layer {bad + 1})"
        ax.plot(x, y, style, color=color, label=shown, linewidth=1.6)
        if bad is not None and len(y):
            ax.plot(x[-1:], y[-1:], "x", color=color, markersize=9, markeredgewidth=2)
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle=":", linewidth=1.2, label=hline_label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=9, loc="best")
    return fig


def std_per_layer(stds: Mapping[str, Sequence[float]], *, title: Optional[str] = None,
                  zoom: Optional[tuple] = None, **kwargs):
    """Standard deviation of each layer's activations (log scale), one line per network.

    With ``zoom=(low, high)`` a second panel shows, on a linear axis, the curves that stay inside that band
    at every layer (on the log panel, values between 0.5 and 1 all look alike).
    """
    if zoom is None:
        return per_layer(stds, ylabel="std of the layer's activations (log scale)", title=title, **kwargs)
    # page width (7.5 in), so that every label stays at 8 pt or more where the page shows it; one legend for
    # both panels, below them
    fig, (ax_log, ax_lin) = new_figure(1, 2, width=kwargs.pop("width", 7.5), height=kwargs.pop("height", 4.6),
                                       gridspec_kw={"width_ratios": [1.2, 1]})
    per_layer(stds, ylabel="std of the layer's activations (log scale)", title=title or "all layers, log scale",
              ax=ax_log, **kwargs)
    low, high = zoom
    inside = {k: v for k, v in stds.items() if all(math.isfinite(float(x)) and low <= float(x) <= high for x in v)}
    # keep each curve's colour: draw every curve, hiding the ones outside the band from this panel
    hidden = {k: [float("nan")] * len(v) for k, v in stds.items() if k not in inside}
    per_layer({k: inside.get(k, hidden.get(k)) for k in stds}, ylabel="std of the layer's activations",
              title=f"zoom: within [{low}, {high}], linear", logy=False, ax=ax_lin, **kwargs)
    ax_lin.set_ylim(low, high)
    handles, labels = ax_log.get_legend_handles_labels()
    for ax in (ax_log, ax_lin):
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        ax.title.set_fontsize(10)
    ax_log.set_ylabel("std of activations (log scale)")
    ax_lin.set_ylabel("std of activations")
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9, frameon=False)
    return fig


def grad_norm_per_layer(norms: Mapping[str, Sequence[float]], *, title: Optional[str] = None, **kwargs):
    """Norm of each layer's weight gradient (log scale), one line per network."""
    return per_layer(norms, ylabel="weight-gradient norm (log scale)", title=title, **kwargs)


def grad_data_ratio_per_layer(ratios: Mapping[str, Sequence[float]], *, title: Optional[str] = None, **kwargs):
    """grad.std() / weight.std() of each layer (log scale), one line per network."""
    return per_layer(ratios, ylabel="grad std / weight std (log scale)", title=title, **kwargs)


def activation_histograms(panels: Mapping[str, Sequence[torch.Tensor]], *, bins: int = 50,
                          value_range: tuple = (0.0, 1.0), lower: float = 0.03, upper: float = 0.97,
                          xlabel: str = "activation value", width: float = 7.5,
                          height_per_panel: float = 2.3):
    """Karpathy-style histograms: one panel per network (stacked vertically, sharing the x-axis), one line per
    layer's activations.

    ``panels`` maps a title to the list of activation tensors (one per layer). Each legend entry, beside its
    panel, gives the layer's std and the percentage of values at or beyond ``lower``/``upper`` (saturated). The
    shaded bands mark the saturated zones. All panels share both axes so their shapes compare directly. The
    default size is the page's width, so the 9-point legend stays legible when the figure is shown.
    """
    n = len(panels)
    if n == 0:
        raise ValueError("activation_histograms needs at least one panel")
    fig, axes = new_figure(n, 1, width=width, height=height_per_panel * n + 0.4, sharex=True, sharey=True,
                           squeeze=False)
    axes = axes.T
    edges = np.linspace(value_range[0], value_range[1], bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    for ax, (title, acts) in zip(axes[0], panels.items()):
        for i, a in enumerate(acts, start=1):
            a = a.detach().double().cpu().flatten()
            counts, _ = np.histogram(a.numpy(), bins=edges, density=True)
            sat = ((a <= lower) | (a >= upper)).double().mean().item()
            ax.plot(centers, counts, label=f"layer {i}: std {a.std().item():.2f}, sat {100 * sat:.0f}%",
                    linewidth=1.3)
        ax.axvspan(value_range[0], lower, color="grey", alpha=0.15, linewidth=0)
        ax.axvspan(upper, value_range[1], color="grey", alpha=0.15, linewidth=0)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=11)
        ax.set_xlabel(xlabel, fontsize=10)
        ax.set_ylabel("density (log)", fontsize=10)
        ax.tick_params(labelsize=9)
        ax.xaxis.set_tick_params(labelbottom=True)
        ax.legend(fontsize=9, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                  handlelength=1.5, borderaxespad=0.2)
    return fig
