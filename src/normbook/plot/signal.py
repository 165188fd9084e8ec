"""Figures (see normbook.plot)."""
__all__: list = []
