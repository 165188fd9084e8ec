"""Run-time settings shared by every chapter: FAST mode, the device, and seeding.

``NORMBOOK_FAST=1`` shrinks experiments (fewer epochs, data subsets) so the whole test suite runs on two CPU
cores in minutes. Chapters call the same code in both modes; only the sizes they ask for differ.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["FAST", "is_fast", "fast_or_full", "device", "seed_everything", "in_ci", "in_colab"]

_TRUE = {"1", "true", "yes", "on"}


def is_fast() -> bool:
    """True when the environment variable ``NORMBOOK_FAST`` is set to 1/true/yes/on (read on every call)."""
    return os.environ.get("NORMBOOK_FAST", "").strip().lower() in _TRUE


FAST: bool = is_fast()


def fast_or_full(fast, full):
    """Return ``fast`` in FAST mode and ``full`` otherwise (e.g. ``epochs = fast_or_full(1, 10)``)."""
    return fast if is_fast() else full


def in_ci() -> bool:
    """True under a CI runner (``CI`` set): progress bars stay quiet there."""
    return os.environ.get("CI", "").strip().lower() in _TRUE


def in_colab() -> bool:
    try:
        import google.colab  # noqa: F401
    except ImportError:
        return False
    return True


def device(prefer: str | None = None) -> torch.device:
    """The device chapters run on: ``$NORMBOOK_DEVICE`` or ``prefer`` if given, else CUDA when present, else CPU."""
    name = prefer or os.environ.get("NORMBOOK_DEVICE")
    if name:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but CUDA is not available; use 'cpu' or unset "
                               "NORMBOOK_DEVICE")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); make algorithms deterministic where torch can.

    Returns a CPU ``torch.Generator`` seeded with ``seed`` for code that wants its own stream (shuffling).
    """
    # cuBLAS needs this set before its first use to be deterministic on older CUDA versions; harmless otherwise.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    torch.backends.cudnn.benchmark = False
    if deterministic:
        torch.backends.cudnn.deterministic = True
        # warn_only: some CUDA kernels (e.g. scatter_add in a few ops) have no deterministic version.
        torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen
