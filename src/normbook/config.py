"""Run-time settings shared by every chapter: FAST mode, the device, and seeding.

``NORMBOOK_FAST=1`` shrinks experiments (fewer epochs, data subsets) so the whole test suite runs on two CPU
cores in minutes. Chapters call the same code in both modes; only the sizes they ask for differ.
"""
from __future__ import annotations

import contextlib
import os
import random
from typing import Optional

import numpy as np
import torch

__all__ = ["is_fast", "fast_or_full", "device", "device_of", "seed_everything", "cpu_threads", "in_ci", "in_colab"]

_TRUE = {"1", "true", "yes", "on"}


def is_fast() -> bool:
    """True when the environment variable ``NORMBOOK_FAST`` is set to 1/true/yes/on (read on every call)."""
    return os.environ.get("NORMBOOK_FAST", "").strip().lower() in _TRUE


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


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every CUDA device).

    ``deterministic=True`` (a chapter's set-up) also makes algorithms deterministic where torch can: cuDNN's
    benchmark mode off, its deterministic kernels on, ``torch.use_deterministic_algorithms(True,
    warn_only=True)``. These are process-wide switches that cost speed; the training loop seeds with
    ``deterministic=False``, which only seeds and leaves them as they are.

    Returns a CPU ``torch.Generator`` seeded with ``seed`` for code that wants its own stream (shuffling).
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if deterministic:
        # cuBLAS needs this set before its first use to be deterministic on older CUDA versions
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # warn_only: some CUDA kernels (e.g. scatter_add in a few ops) have no deterministic version.
        torch.use_deterministic_algorithms(True, warn_only=True)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


@contextlib.contextmanager
def cpu_threads(n: Optional[int]):
    """Run the block with ``torch.set_num_threads(n)`` (None: leave it), restoring the previous count after.

    Tiny steps (a small CNN on 2 to 32 images) do too little work per operation to split over threads: the
    threads spend longer synchronizing than computing, badly so when other processes share the cores."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"the thread count must be a positive integer or None, got {n!r}")
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
