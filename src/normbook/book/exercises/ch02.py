"""Checkers for chapter 2's graded exercises (BatchNorm: the mathematics)::

    from normbook.exercises import ch02
    ch02.check_batch_norm_forward(batch_norm_forward)     # (x, gamma, beta, eps) -> y
    ch02.check_batch_norm_backward(batch_norm_backward)   # (dy, x, gamma, eps) -> (dx, dgamma, dbeta)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import CheckResult, compare, compare_all, run_check

__all__ = ["check_batch_norm_forward", "check_batch_norm_backward"]

_SHAPES = [(8, 3), (2, 5), (4, 3, 5), (3, 2, 4, 4)]


def _inputs(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g, dtype=dtype) * 3 + 2
    gamma = torch.rand(c, generator=g, dtype=dtype) + 0.5
    beta = torch.randn(c, generator=g, dtype=dtype)
    dy = torch.randn(shape, generator=g, dtype=dtype)
    return x, gamma, beta, dy


def check_batch_norm_forward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, gamma, beta, eps)`` -> y, training mode, for x of shape (N, C) or (N, C, *), against
    ``torch.nn.functional.batch_norm``."""
    def case(shape, eps, seed):
        def run():
            x, gamma, beta, _ = _inputs(shape, seed)
            got = student_fn(x.clone(), gamma.clone(), beta.clone(), eps)
            expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
            return compare(got, expected, "y", rtol=1e-6, atol=1e-8)
        return run
    cases = [(f"x {s}, eps={e}", case(s, e, i)) for i, (s, e) in
             enumerate(zip(_SHAPES, (1e-5, 1e-5, 1e-3, 0.1)))]
    return run_check("batch_norm_forward", cases, verbose=verbose,
                     hint="one mean and one *biased* variance per channel (dim 1), over every other dim; "
                          "x_hat = (x - mean) / sqrt(var + eps); gamma and beta reshaped to (1, C, 1, ...)")


def check_batch_norm_backward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(dy, x, gamma, eps)`` -> (dx, dgamma, dbeta) for training-mode BN of an (N, C) input,
    against autograd through ``torch.nn.functional.batch_norm``."""
    def case(shape, eps, seed):
        def run():
            x, gamma, beta, dy = _inputs(shape, seed)
            got = student_fn(dy.clone(), x.clone(), gamma.clone(), eps)
            xr, gr, br = (t.clone().requires_grad_() for t in (x, gamma, beta))
            y = F.batch_norm(xr, None, None, gr, br, training=True, eps=eps)
            expected = torch.autograd.grad(y, (xr, gr, br), dy)
            return compare_all(got, expected, ("dx", "dgamma", "dbeta"), rtol=1e-6, atol=1e-8)
        return run
    shapes = [(8, 3), (2, 5), (16, 4), (5, 1)]
    cases = [(f"x {s}, eps={e}", case(s, e, i)) for i, (s, e) in
             enumerate(zip(shapes, (1e-5, 1e-5, 1e-3, 0.1)))]
    return run_check("batch_norm_backward", cases, verbose=verbose,
                     hint="dbeta = sum(dy), dgamma = sum(dy * x_hat) over the batch; "
                          "dx = gamma * r / n * (n * dy - dbeta - x_hat * dgamma) with r = 1/sqrt(var + eps): "
                          "the three terms are the three paths from x to the loss")
