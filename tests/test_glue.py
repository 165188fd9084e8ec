"""``normbook.book.glue`` in its three settings: with myst-nb (the book build), without it (Colab, a bare Jupyter),
and without it under ``NORMBOOK_GLUE_RECORD=1`` (tools/nbval_run.py), where it must write exactly what myst-nb's
glue writes, because the book build reads nbval's execution as if it were its own."""
from __future__ import annotations

import sys

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.core.pylabtools import print_figure  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402
from myst_nb.ext.glue import glue as myst_glue  # noqa: E402

import normbook.book as book  # noqa: E402


@pytest.fixture(scope="module")
def shell():
    sh = InteractiveShell.instance()
    # figures formatted as PNG, as the inline backend does in a kernel
    sh.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: print_figure(fig, "png"))
    return sh


def _outputs(call) -> list:
    with capture_output() as cap:
        call()
    return [(o.data, o.metadata) for o in cap.outputs]


@pytest.fixture
def without_myst_nb(monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `from myst_nb import glue` raises ImportError


def _values():
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    return {"text": "0.912 ± 0.004", "number": 12.7, "figure": fig}


@pytest.mark.parametrize("display", [False, True])
@pytest.mark.parametrize("kind", ["text", "number", "figure"])
def test_record_writes_what_myst_nb_writes(shell, without_myst_nb, monkeypatch, kind, display):
    value = _values()[kind]
    expected = _outputs(lambda: myst_glue(f"key_{kind}", value, display=display))
    monkeypatch.setenv("NORMBOOK_GLUE_RECORD", "1")
    got = _outputs(lambda: book.glue(f"key_{kind}", value, display=display))
    plt.close("all")
    assert expected and got == expected


def test_without_myst_nb_shows_only_what_is_displayed(shell, without_myst_nb, monkeypatch):
    monkeypatch.delenv("NORMBOOK_GLUE_RECORD", raising=False)
    values = _values()
    assert _outputs(lambda: book.glue("hidden", values["text"])) == []
    shown = _outputs(lambda: book.glue("fig", values["figure"], display=True))
    plt.close("all")
    assert len(shown) == 1
    data, metadata = shown[0]
    assert "image/png" in data and "scrapbook" not in metadata
    assert not any(k.startswith(book.GLUE_PREFIX) for k in data)
