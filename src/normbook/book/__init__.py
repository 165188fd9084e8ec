"""Book support: what the chapters use, and a user of the layers never needs.

The library (``normbook.functional``, ``autograd``, ``nn``, ``kernels``, ``distributed``, ``fold``, ``batchnorm``,
``timing``, ``data``, ``config``) never imports this sub-package (``tests/test_layout.py`` checks it). Here:

    stats        every comparative and outcome word the book states (intervals over seeds)
    models       the networks the chapters train (LeNet, MLPs, a small ResNet, a small ViT)
    train        the training loop;  runs  runs over seeds and sweeps (train / validation / test)
    parallel     jobs in forked worker processes;  diagnostics  activations and gradients layer by layer
    inference    chapter 4's update conventions and train/eval helpers;  chNN  one chapter's own helpers
    plot         the figures;  exercises  the checkers of the graded exercises

This module itself holds ``glue``, which also works outside a Jupyter Book build.

In a book build (and in Jupyter with myst-nb installed) ``glue`` stores a value for ``{glue:text}`` and
``{glue:figure}`` in the prose. In Colab, where myst-nb is not installed, it shows nothing when ``display`` is
False and the value's normal output otherwise, so the notebooks run unchanged there.

``NORMBOOK_GLUE_RECORD=1`` (set by tools/nbval_run.py, never in Colab): where myst-nb is not installed, ``glue``
writes the output ``myst_nb.glue`` would write (tests/test_glue.py checks that they are the same), so that nbval's
execution of the Colab edition also serves the book build, which reads the glued values from it.
"""
from __future__ import annotations

import os

__all__ = ["glue"]

GLUE_PREFIX = "application/papermill.record/"  # myst_nb.ext.glue.GLUE_PREFIX


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's prose (``myst_nb.glue``), if myst-nb is importable."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or a bare Jupyter: nothing reads glued values there
        if os.environ.get("NORMBOOK_GLUE_RECORD") == "1":
            _record(name, value, display)
        elif display:
            from IPython.display import display as _display
            _display(value)
        return
    _glue(name, value, display=display)


def _record(name: str, value, display: bool) -> None:
    """What ``myst_nb.glue`` displays (myst-nb 1.x): the value's formatted output, under mime types that only the
    book build reads unless ``display``, with the glue's name in the output's metadata."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display as _display

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = dict(name=name, mime_prefix=prefix)
    _display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)
