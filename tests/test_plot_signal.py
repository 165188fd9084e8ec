"""Chapter 1 figures build, are labelled, and draw what they are given."""

import pytest
import torch
from matplotlib.figure import Figure

from normbook.book import plot


def _solid_dashed(ax):
    return [line for line in ax.get_lines() if line.get_linestyle() in ("-", "--")]


def test_std_per_layer_log_scale_one_line_per_curve():
    curves = {"a": [1.0, 0.5, 0.25], "a + BN": [0.58, 0.58, 0.58], "b": [1.0, 10.0, 100.0]}
    fig = plot.std_per_layer(curves)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "layer" and "std" in ax.get_ylabel()
    lines = _solid_dashed(ax)
    assert len(lines) == 3
    by_label = {line.get_label(): line for line in lines}
    assert by_label["a + BN"].get_linestyle() == "--" and by_label["a"].get_linestyle() == "-"
    assert by_label["a + BN"].get_color() == by_label["a"].get_color()      # one colour per initialization
    assert list(by_label["b"].get_xdata()) == [1, 2, 3]


def test_nonfinite_and_zero_curves_are_explained_in_the_legend():
    curves = {"explodes": [1.0, 1e30, float("inf"), float("nan")], "zero": [0.0, 0.0], "nan": [float("nan")] * 3}
    fig = plot.grad_norm_per_layer(curves)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "explodes (inf/nan from layer 3)" in labels
    assert "zero (all zero, not drawn)" in labels
    assert "nan (inf/nan from layer 1, not drawn)" in labels
    explodes = [l for l in fig.axes[0].get_lines() if l.get_label().startswith("explodes")][0]
    assert list(explodes.get_ydata()) == [1.0, 1e30]            # only the finite prefix is drawn


def test_std_per_layer_with_zoom_has_two_panels():
    curves = {"k": [0.8, 0.7, 0.6], "k + BN": [0.58] * 3, "big": [1.0, 1e5, 1e10]}
    fig = plot.std_per_layer(curves, zoom=(0.0, 1.5))
    log_ax, lin_ax = fig.axes
    assert log_ax.get_yscale() == "log" and lin_ax.get_yscale() == "linear"
    assert lin_ax.get_ylim() == (0.0, 1.5)
    drawn = [l for l in lin_ax.get_lines() if len(l.get_xdata())]
    assert sorted(l.get_label() for l in drawn) == ["k", "k + BN"]


def test_grad_data_ratio_and_hline():
    fig = plot.grad_data_ratio_per_layer({"x": [1e-3, 1e-2]}, hline=1e-3, hline_label="1e-3")
    ax = fig.axes[0]
    assert "grad" in ax.get_ylabel() and len(ax.get_lines()) == 2


def test_activation_histograms_panels_lines_and_legend():
    torch.manual_seed(0)
    panels = {"plain": [torch.sigmoid(3 * torch.randn(100, 10)) for _ in range(4)],
              "bn": [torch.sigmoid(torch.randn(100, 10)) for _ in range(4)]}
    fig = plot.activation_histograms(panels)
    assert len(fig.axes) == 2
    for ax, title in zip(fig.axes, panels):
        assert ax.get_title() == title and ax.get_xlabel() == "activation value"
        assert len(ax.get_lines()) == 4
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        assert texts[0].startswith("layer 1: std") and "sat" in texts[0]
    with pytest.raises(ValueError):
        plot.activation_histograms({})


# ---- chapters 2-3 figures (normbook.plot.batchnorm) ----
def test_scale_invariance_figure():
    fig = plot.scale_invariance([0.1, 1.0, 10.0], [10.0, 1.0, 0.1], [1e-6, 0.0, 1e-7])
    ax_g, ax_y = fig.axes
    assert ax_g.get_xscale() == ax_g.get_yscale() == "log"
    assert len(ax_g.get_lines()) == 2 and "scale" in ax_g.get_xlabel()
    ref = [l for l in ax_g.get_lines() if l.get_linestyle() == "-"][0]
    assert list(ref.get_ydata()) == pytest.approx([10.0, 1.0, 0.1])      # g(1) / a
    assert list(ax_y.get_lines()[0].get_xdata()) == [0.1, 10.0]          # the exact zero at a = 1 is left out
    with pytest.raises(ValueError):
        plot.scale_invariance([1.0], [1.0, 2.0], [0.0])


def test_shared_statistics_counts_cells_and_colours():
    fig = plot.shared_statistics(("1d", "2d"))
    ax1, ax2 = fig.axes
    assert len(ax1.patches) == 4 * 5 and len(ax2.patches) == 3 * 3 * 3 * 3
    assert "5 means, each over 4 elements" in ax1.get_title()
    assert "3 means, each over 27 elements" in ax2.get_title()
    colours = {tuple(p.get_facecolor()) for p in ax1.patches}
    assert len(colours) == 5                                            # one colour per channel
    grey = plot.shared_statistics(("1d_seq",), highlight=1)
    faces = [tuple(p.get_facecolor()) for p in grey.axes[0].patches]
    assert len(set(faces)) == 2                                         # the highlighted channel and grey
    with pytest.raises(ValueError):
        plot.shared_statistics(("4d",))


def test_bn_graph_figure():
    fig = plot.bn_graph()
    ax = fig.axes[0]
    texts = " ".join(t.get_text() for t in ax.texts)
    for node in (r"$x_i$", r"$\mu_\mathcal{B}$", r"$\sigma^2_\mathcal{B}$", r"$\hat x_i$", r"$y_i$"):
        assert node in texts
    assert "path 1" in texts and "path 2" in texts and "path 3" in texts
    assert len(ax.patches) == 9  # one arrow per edge of the graph
    assert all(t.get_fontsize() >= 8 for t in ax.texts)
