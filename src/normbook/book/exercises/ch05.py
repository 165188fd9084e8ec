"""Checkers for chapter 5's graded exercises (LayerNorm, InstanceNorm, GroupNorm, RMSNorm)::

    from normbook.exercises import ch05
    ch05.check_group_norm(group_norm)     # (x, num_groups, weight, bias, eps) -> y
    ch05.check_rms_norm(rms_norm)         # (x, weight, eps) -> y, over the last dimension
    ch05.check_rms_norm_backward(rms_norm_backward)   # (dy, x, weight, eps) -> (dx, dweight), no autograd
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from . import CheckResult, compare, compare_all, run_check

__all__ = ["check_group_norm", "check_rms_norm", "check_rms_norm_backward", "autograd_disabled"]


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


@contextlib.contextmanager
def autograd_disabled():
    """While active, every way of asking autograd for a gradient raises ``RuntimeError`` (``Tensor.backward``,
    ``torch.autograd.backward``/``grad``, ``torch.func.grad``/``vjp``/``jacrev``): the checkers of exercises that
    say "without autograd" run the student's function inside it. Restores everything on exit."""
    import torch.func

    def forbidden(*args, **kwargs):
        raise RuntimeError("this exercise is to be solved without autograd: compute the gradient from the "
                           "derived formula, with tensor operations only")

    targets = [(torch.Tensor, "backward"), (torch.autograd, "backward"), (torch.autograd, "grad"),
               (torch.func, "grad"), (torch.func, "vjp"), (torch.func, "jacrev")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in targets]
    try:
        for owner, name, _ in saved:
            setattr(owner, name, forbidden)
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def check_rms_norm_backward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(dy, x, weight, eps)`` -> (dx, dweight): the gradients of RMSNorm over the last dimension
    (``torch.nn.functional.rms_norm(x, (D,), weight, eps)``) for the upstream gradient ``dy``, computed without
    autograd (the function runs inside :func:`autograd_disabled`), against autograd in float64."""
    def case(shape, eps, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1     # a nonzero mean
            w = torch.rand(shape[-1], generator=g, dtype=torch.float64) + 0.5   # gains that differ
            dy = torch.randn(shape, generator=g, dtype=torch.float64)
            xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
            expected = torch.autograd.grad(F.rms_norm(xr, shape[-1:], wr, eps), (xr, wr), dy)
            with autograd_disabled():
                got = student_fn(dy.clone(), x.clone(), w.clone(), eps)
            return compare_all(got, expected, ("dx", "dweight"), rtol=1e-7, atol=1e-9)
        return run
    specs = [((4, 16), 1e-6), ((2, 5, 8), 1e-5), ((3, 2), 0.1), ((2, 3, 4, 32), 1e-6)]
    cases = [(f"x {s}, eps={e}", case(s, e, i)) for i, (s, e) in enumerate(specs)]
    return run_check("rms_norm_backward", cases, verbose=verbose,
                     hint="follow LayerNorm's derivation without the mean: which of its three terms has no "
                          "counterpart when nothing is subtracted? The gain multiplies dy before any sum over "
                          "the features; dweight sums over every dimension but the last")
