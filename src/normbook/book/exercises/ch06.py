"""Checkers for chapter 6's graded exercises (the design of experiments)::

    from normbook.book.exercises import ch06
    ch06.check_values_per_statistic(values_per_statistic)  # (kind, shape (B, ..., C), num_groups) -> int
    ch06.check_runs_needed(runs_needed)                    # (sigma, target_se) -> int
"""
from __future__ import annotations

import math
from typing import Callable

from . import CheckResult, run_check

__all__ = ["check_values_per_statistic", "check_runs_needed"]


def _values_reference(kind: str, shape: tuple, num_groups=None) -> int:
    """The checker's own count, for an input in the channels-last layout (B, *spatial, C)."""
    batch, *spatial, channels = shape
    positions = math.prod(spatial)
    per_example = {"batch": 1, "instance": 1, "group": channels // num_groups if num_groups else None,
                   "layer": channels}[kind]
    return (batch if kind == "batch" else 1) * per_example * positions


def check_values_per_statistic(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(kind, shape, num_groups=None)`` -> how many numbers one mean (or variance) of a
    normalization layer averages for an input of ``shape`` in the channels-last layout (B, *spatial, C) of
    TensorFlow and JAX: kind "batch" (BatchNorm), "instance" (InstanceNorm),
    "group" (GroupNorm with ``num_groups`` groups) or "layer" (LayerNorm over all features of an example)."""
    specs = [("batch", (2, 256), None), ("batch", (32, 256), None), ("batch", (2, 7, 7, 2048), None),
             ("batch", (8, 28, 28, 6), None), ("batch", (4, 100, 16), None),
             ("instance", (2, 24, 24, 6), None), ("instance", (16, 7, 7, 64), None), ("instance", (3, 50, 8), None),
             ("group", (2, 256), 8), ("group", (64, 256), 8), ("group", (2, 14, 14, 64), 32),
             ("group", (4, 10, 12), 4), ("layer", (2, 256), None), ("layer", (4, 5, 5, 16), None)]

    def case(kind, shape, groups):
        def run():
            got = student_fn(kind, shape, groups)
            want = _values_reference(kind, shape, groups)
            if got is None:
                return "returned None"
            if int(got) != want or got != int(got):
                return f"got {got}, expected {want}"
            return None
        return run
    cases = [(f"{kind} {shape}" + (f", G={g}" if g else ""), case(kind, shape, g)) for kind, shape, g in specs]
    return run_check("values_per_statistic", cases, verbose=verbose,
                     hint="in this layout the channels are the last dimension, not the second, and everything "
                          "between the batch and the channels is a position; for each kind, ask which "
                          "dimensions one statistic runs over for a fixed channel, group or example, and which "
                          "it keeps apart; only one kind pools over the examples of the batch")


def check_runs_needed(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(sigma, target_se)`` -> the smallest number of runs n with sigma / sqrt(n) <= target_se."""
    specs = [(0.02, 0.005), (0.01, 0.005), (0.03, 0.005), (0.005, 0.005), (0.001, 0.005), (0.037, 0.01),
             (0.1, 0.003)]

    def reference(sigma, target):
        n = max(1, math.ceil((sigma / target) ** 2 - 1e-9))
        return n

    def case(sigma, target):
        def run():
            got = student_fn(sigma, target)
            want = reference(sigma, target)
            if got is None:
                return "returned None"
            if got != want:
                return f"got {got}, expected {want} (sigma/sqrt(n) must be <= {target})"
            return None
        return run
    cases = [(f"sigma={s}, target={t}", case(s, t)) for s, t in specs]
    return run_check("runs_needed", cases, verbose=verbose,
                     hint="the standard error of a mean over n runs is sigma/sqrt(n); solve for n, round up, "
                          "and never return fewer than one run")
