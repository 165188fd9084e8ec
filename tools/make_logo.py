"""Draw the book's logo (_static/logo.png, _static/logo.svg) and favicon (_static/favicon.ico) with matplotlib.

The picture: a skewed histogram (the raw activations) and, over it, the standard normal density it is
normalized to. Run once: ``.venv/bin/python tools/make_logo.py``; the files are committed.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

STATIC = Path(__file__).resolve().parent.parent / "_static"
BLUE, ORANGE = "#1f5f99", "#e07b00"


def draw(size_in: float, text: bool):
    fig = plt.figure(figsize=(size_in * (2.6 if text else 1), size_in), dpi=100)
    ax = fig.add_axes([0, 0, 1 / (2.6 if text else 1), 1])
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(0, 0.62)
    ax.axis("off")
    edges = np.linspace(-2.8, 2.8, 8)
    heights = np.array([0.08, 0.30, 0.52, 0.40, 0.22, 0.12, 0.05])
    ax.bar(edges[:-1], heights, width=np.diff(edges), align="edge", color=BLUE, alpha=0.85,
           edgecolor="white", linewidth=size_in * 0.8)
    x = np.linspace(-3.2, 3.2, 200)
    ax.plot(x, 0.55 * np.exp(-x**2 / 2), color=ORANGE, linewidth=size_in * 3)
    if text:
        fig.text(0.42, 0.5, "normbook", fontsize=size_in * 19, color=BLUE, va="center",
                 fontweight="bold", family="DejaVu Sans")
    return fig


def main() -> None:
    STATIC.mkdir(exist_ok=True)
    fig = draw(1.2, text=False)
    fig.savefig(STATIC / "logo.png", dpi=120, transparent=True)
    fig.savefig(STATIC / "logo.svg", transparent=True)
    plt.close(fig)
    fig = draw(0.64, text=False)
    fig.savefig(STATIC / "favicon.png", dpi=100, transparent=True)
    plt.close(fig)
    Image.open(STATIC / "favicon.png").save(STATIC / "favicon.ico", sizes=[(16, 16), (32, 32), (64, 64)])


if __name__ == "__main__":
    main()
