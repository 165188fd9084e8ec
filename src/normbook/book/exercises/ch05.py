"""Checkers for chapter 5's graded exercises (LayerNorm, InstanceNorm, GroupNorm, RMSNorm)::

    from normbook.exercises import ch05
    ch05.check_group_norm(group_norm)     # (x, num_groups, weight, bias, eps) -> y
    ch05.check_rms_norm(rms_norm)         # (x, weight, eps) -> y, over the last dimension
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import CheckResult, compare, run_check

__all__ = ["check_group_norm", "check_rms_norm"]


def check_group_norm(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, num_groups, weight, bias, eps)`` -> y for x of shape (N, C, *), against
    ``torch.nn.functional.group_norm``, with G = 1, G = C and groups in between."""
    def case(shape, groups, eps, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            c = shape[1]
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2
            w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
            b = torch.randn(c, generator=g, dtype=torch.float64)
            got = student_fn(x.clone(), groups, w.clone(), b.clone(), eps)
            return compare(got, F.group_norm(x, groups, w, b, eps), "y", rtol=1e-7, atol=1e-9)
        return run
    specs = [((4, 6, 5, 5), 3, 1e-5), ((2, 6, 5, 5), 1, 1e-5), ((2, 6, 7), 6, 1e-3), ((3, 8, 2, 3, 3), 2, 0.1)]
    cases = [(f"x {s}, G={G}, eps={e}", case(s, G, e, i)) for i, (s, G, e) in enumerate(specs)]
    return run_check("group_norm", cases, verbose=verbose,
                     hint="reshape to (N, G, C/G * S), take the mean and *biased* variance over the last dim, "
                          "normalize, reshape back to x's shape, then apply the per-channel weight and bias "
                          "reshaped to (1, C, 1, ...)")


def check_rms_norm(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, weight, eps)`` -> y, RMSNorm over the last dimension, against
    ``torch.nn.functional.rms_norm``."""
    def case(shape, eps, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1
            w = torch.rand(shape[-1], generator=g, dtype=torch.float64) + 0.5
            got = student_fn(x.clone(), w.clone(), eps)
            return compare(got, F.rms_norm(x, shape[-1:], w, eps), "y", rtol=1e-7, atol=1e-9)
        return run
    specs = [((4, 16), 1e-6), ((2, 5, 8), 1e-5), ((3, 2), 0.1), ((2, 3, 4, 32), 1e-6)]
    cases = [(f"x {s}, eps={e}", case(s, e, i)) for i, (s, e) in enumerate(specs)]
    return run_check("rms_norm", cases, verbose=verbose,
                     hint="no mean subtraction: y = x / sqrt(mean(x**2 over the last dim) + eps) * weight")
