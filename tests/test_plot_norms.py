"""Tests for normbook.plot.norms: which elements share statistics, and that every figure builds."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from normbook.book import plot  # noqa: E402
from normbook.book.plot import norms  # noqa: E402


def test_reexported():
    for name in norms.__all__:
        assert getattr(plot, name) is getattr(norms, name)


@pytest.mark.parametrize("kind, count", [("batch", 4 * 5), ("layer", 6 * 5), ("instance", 5), ("group", 3 * 5)])
def test_mask_sizes(kind, count):
    mask = plot.normalization_mask(kind, (4, 6, 5), num_groups=2)
    assert mask.shape == (4, 6, 5) and mask.sum() == count
    assert mask[0, 0, 0]


def test_masks_match_reductions():
    """Each mask marks exactly the elements a torch reduction would average with element (n, c)."""
    N, C, S, G = 3, 6, 4, 3
    n, c = 1, 4
    x = torch.arange(N * C * S, dtype=torch.float64).reshape(N, C, S)
    expected = {
        "batch": x[:, c, :].mean(), "layer": x[n].mean(), "instance": x[n, c].mean(),
        "group": x[n].reshape(G, C // G, S)[c // (C // G)].mean(),
    }
    for kind, mean in expected.items():
        mask = torch.from_numpy(plot.normalization_mask(kind, (N, C, S), num_groups=G, n=n, c=c))
        assert x[mask].mean().item() == pytest.approx(mean.item())


def test_mask_errors():
    with pytest.raises(ValueError, match="num_groups"):
        plot.normalization_mask("group", (2, 6, 3), num_groups=4)
    with pytest.raises(ValueError, match="kind"):
        plot.normalization_mask("weight", (2, 6, 3))


def test_cube_figure():
    fig = plot.normalization_cube()
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "Batch Norm" and titles[3].startswith("Group Norm")


def test_running_estimates_figure():
    fig = plot.running_estimates_figure([1.0, 2.0, 3.0], {"a": [0.1, 0.3, 0.6], "b": [1.0, 1.5, 2.0]},
                                        population=2.0)
    ax = fig.axes[0]
    assert len(ax.lines) == 4  # dots, two estimates, population line
    assert len(ax.get_legend().get_texts()) == 4


def test_eval_batch_size_figure():
    lab = {"batch_size": [2, 8, 32], "eval": [0.8, 0.8, 0.8], "train": [0.5, 0.7, 0.79], "gap": [1.0, 0.5, 0.2]}
    fig = plot.eval_batch_size_figure(lab)
    ax1, ax2 = fig.axes
    assert ax1.get_xscale() == "log" and ax2.get_yscale() == "log"
    assert len(ax1.lines) == 2 and len(ax2.lines) == 1


def test_instance_norm_contrast_figure():
    imgs = np.random.rand(3, 28, 28)
    fig = plot.instance_norm_contrast(imgs, imgs - imgs.mean(), titles=["a", "b", "c"])
    assert len(fig.axes) == 6
    assert fig.axes[0].get_title() == "a"
