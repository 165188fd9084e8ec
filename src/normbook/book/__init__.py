"""Small helpers for the notebooks themselves: glue that also works outside a Jupyter Book build.

In a book build (and in Jupyter with myst-nb installed) ``glue`` stores a value for ``{glue:text}`` and
``{glue:figure}`` in the prose. In Colab, where myst-nb is not installed, it shows nothing when ``display`` is
False and the value's normal output otherwise, so the notebooks run unchanged there.
"""
from __future__ import annotations

__all__ = ["glue"]


def glue(name: str, value, display: bool = False) -> None:
    """Store ``value`` under ``name`` for the book's prose (``myst_nb.glue``), if myst-nb is importable."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # Colab or a bare Jupyter: nothing reads glued values there
        if display:
            from IPython.display import display as _display
            _display(value)
        return
    _glue(name, value, display=display)
