"""Figures of chapters 4 and 5: running estimates and the train/eval lab; the normalization cube; InstanceNorm
and image contrast."""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from .common import COLORS, new_figure

__all__ = ["NORMALIZATIONS", "normalization_mask", "normalization_cube", "running_estimates_figure",
           "eval_batch_size_figure", "instance_norm_contrast"]

#: The four normalizations of Wu & He (2018), Fig. 2, in the order the cube figure draws them.
NORMALIZATIONS = ("batch", "layer", "instance", "group")
_TITLES = {"batch": "Batch Norm", "layer": "Layer Norm", "instance": "Instance Norm", "group": "Group Norm"}


def normalization_mask(kind: str, shape: Sequence[int] = (4, 6, 5), num_groups: int = 2, n: int = 0,
                       c: int = 0) -> np.ndarray:
    """Boolean (N, C, S) array marking the elements that share one mean and variance with element (n, c, 0).

    ``kind``: "batch" (channel c over all examples and positions), "layer" (example n over all channels and
    positions), "instance" (example n, channel c, all positions) or "group" (example n, the channels of c's
    group of C / ``num_groups``, all positions).
    """
    N, C, S = shape
    mask = np.zeros((N, C, S), dtype=bool)
    if kind == "batch":
        mask[:, c, :] = True
    elif kind == "layer":
        mask[n, :, :] = True
    elif kind == "instance":
        mask[n, c, :] = True
    elif kind == "group":
        if C % num_groups:
            raise ValueError(f"C={C} channels cannot be split into num_groups={num_groups} equal groups")
        size = C // num_groups
        g = c // size
        mask[n, g * size:(g + 1) * size, :] = True
    else:
        raise ValueError(f"kind must be one of {NORMALIZATIONS}, got {kind!r}")
    return mask


def normalization_cube(shape: Sequence[int] = (4, 6, 5), num_groups: int = 2, kinds: Sequence[str] = NORMALIZATIONS,
                       color: str = COLORS[0]):
    """The (N, C, H·W) feature tensor drawn as a cube once per normalization, the elements that share one mean
    and variance shaded (after Wu & He 2018, Fig. 2). N runs into the page, C to the right, H·W upwards."""
    fig, axes = new_figure(1, len(kinds), width=3.2 * len(kinds), height=3.4, subplot_kw={"projection": "3d"})
    axes = np.atleast_1d(axes)
    N, C, S = shape
    for ax, kind in zip(axes, kinds):
        mask = normalization_mask(kind, shape, num_groups)
        # voxel grid indexed (x, y, z) = (C, N, S): channels across, examples in depth, positions up
        filled = np.ones((C, N, S), dtype=bool)
        colors = np.empty((C, N, S), dtype=object)
        colors[:] = "#ffffff"
        colors[np.transpose(mask, (1, 0, 2))] = color
        ax.voxels(filled, facecolors=colors, edgecolor="#555555", linewidth=0.4, shade=False)
        ax.set_box_aspect((C, N, S))
        ax.view_init(elev=22, azim=-58)
        ax.set_xticks([]), ax.set_yticks([]), ax.set_zticks([])
        ax.text(C / 2, -0.9, -0.6, "C", ha="center", va="top", fontsize=11)
        ax.text(C + 0.5, N / 2, -0.6, "N", ha="left", va="top", fontsize=11)
        ax.text(-0.1, -0.1, S / 2, "H·W ", ha="right", va="center", fontsize=11)
        ax.grid(False)
        for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
            axis.pane.set_visible(False)
            axis.line.set_color((0, 0, 0, 0))
        title = _TITLES[kind] + (f" ({num_groups} groups)" if kind == "group" else "")
        ax.set_title(title, y=0.98)
    return fig


def running_estimates_figure(batch_stats: Sequence[float], estimates: Dict[str, Sequence[float]],
                             population: Optional[float] = None, ylabel: str = "mean"):
    """Batch statistics (dots) and running estimates (lines, one per label in ``estimates``) against the
    training step, with the population value as a dashed line."""
    fig, ax = new_figure(width=6.4, height=3.6)
    steps = np.arange(1, len(batch_stats) + 1)
    ax.plot(steps, batch_stats, ".", color="#999999", markersize=4, label="batch statistic")
    for (label, values), color in zip(estimates.items(), COLORS):
        ax.plot(steps, values, "-", color=color, linewidth=1.8, label=label)
    if population is not None:
        ax.axhline(population, color="black", linestyle="--", linewidth=1, label="population value")
    ax.set_xlabel("training step (batch)")
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right", fontsize=8)
    return fig


def eval_batch_size_figure(lab: Dict[str, Sequence[float]]):
    """Two panels over the evaluation batch size (log scale): test accuracy in eval mode and in train mode
    (``model.eval()`` forgotten); the mean absolute difference between train-mode and eval-mode logits.
    ``lab`` is the dict returned by ``normbook.inference.eval_batch_size_lab``."""
    fig, (ax1, ax2) = new_figure(1, 2, width=8.8, height=3.4)
    b = lab["batch_size"]
    ax1.plot(b, lab["eval"], "o-", color=COLORS[0], label="model.eval()")
    ax1.plot(b, lab["train"], "s-", color=COLORS[1], label="train mode (eval forgotten)")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("evaluation batch size")
    ax1.set_ylabel("test accuracy")
    ax1.legend(fontsize=8)
    ax2.plot(b, lab["gap"], "o-", color=COLORS[2])
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("evaluation batch size")
    ax2.set_ylabel("mean |train-mode − eval-mode logit|")
    for ax in (ax1, ax2):
        ax.set_xticks(b)
        ax.set_xticklabels([str(v) for v in b])
    return fig


def instance_norm_contrast(images, normalized, titles: Optional[Sequence[str]] = None):
    """Two rows of images: ``images`` (k, H, W) on one common grey scale, so differences in brightness and
    contrast show, and their InstanceNorm outputs ``normalized`` (k, H, W), also on one common scale."""
    images = np.asarray(images, dtype=float)
    normalized = np.asarray(normalized, dtype=float)
    k = len(images)
    fig, axes = new_figure(2, k, width=1.5 * k, height=3.6)
    axes = np.asarray(axes).reshape(2, k)
    lo, hi = float(images.min()), float(images.max())
    nlo, nhi = float(normalized.min()), float(normalized.max())
    for j in range(k):
        axes[0, j].imshow(images[j], cmap="gray", vmin=lo, vmax=hi)
        axes[1, j].imshow(normalized[j], cmap="gray", vmin=nlo, vmax=nhi)
        if titles is not None:
            axes[0, j].set_title(titles[j], fontsize=8)
        for ax in axes[:, j]:
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("InstanceNorm")
    return fig
