"""Checkers for chapter 5's graded exercises (LayerNorm, InstanceNorm, GroupNorm, RMSNorm)::

    from normbook.book.exercises import ch05
    ch05.check_group_norm(group_norm)     # (x, num_groups, weight, bias, eps) -> y
    ch05.check_rms_norm(rms_norm)         # (x, normalized_shape, weight, eps) -> y, over the trailing dims
    ch05.check_rms_norm_backward(rms_norm_backward)   # (dy, x, weight, eps) -> (dx, dweight), no autograd
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn.functional as F

from . import TORCH_NORM, CheckResult, compare, compare_all, guard, run_check

__all__ = ["check_group_norm", "check_rms_norm", "check_rms_norm_backward", "autograd_disabled"]

#: what the group-norm exercise rules out: torch's group norm at every level (its solution may use layer_norm)
GROUP_NORM = ("torch.nn.functional.group_norm", "torch.group_norm", "torch.native_group_norm", "aten:group_norm")


def check_group_norm(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, num_groups, weight, bias, eps)`` -> y for x of shape (N, C, *), against
    ``torch.nn.functional.group_norm``, with G = 1, G = C and groups in between. torch's group norm raises while
    the student's function runs (the exercise builds it from ``layer_norm`` and reshapes)."""
    student = guard(student_fn, *GROUP_NORM, why="built from layer_norm and reshapes, not by torch's group_norm")

    def case(shape, groups, eps, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            c = shape[1]
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2
            w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
            b = torch.randn(c, generator=g, dtype=torch.float64)
            got = student(x.clone(), groups, w.clone(), b.clone(), eps)
            return compare(got, F.group_norm(x, groups, w, b, eps), "y", rtol=1e-7, atol=1e-9)
        return run
    specs = [((4, 6, 5, 5), 3, 1e-5), ((2, 6, 5, 5), 1, 1e-5), ((2, 6, 7), 6, 1e-3), ((3, 8, 2, 3, 3), 2, 0.1)]
    cases = [(f"x {s}, G={G}, eps={e}", case(s, G, e, i)) for i, (s, G, e) in enumerate(specs)]
    return run_check("group_norm", cases, verbose=verbose,
                     hint="reshape to (N, G, C/G * S), take the mean and *biased* variance over the last dim, "
                          "normalize, reshape back to x's shape, then apply the per-channel weight and bias "
                          "reshaped to (1, C, 1, ...)")


check_group_norm.forbids = GROUP_NORM


def check_rms_norm(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, normalized_shape, weight, eps)`` -> y, RMSNorm over the trailing dimensions named by
    ``normalized_shape`` (a tuple of one or more sizes, as in ``torch.nn.RMSNorm``; ``weight`` has that shape),
    against ``torch.nn.functional.rms_norm``, which (with torch's other normalization layers) raises while the
    student's function runs."""
    student = guard(student_fn, *TORCH_NORM, why="computed by hand, without torch's normalization layers")

    def case(shape, k, eps, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            normalized = tuple(shape[-k:])
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1
            w = torch.rand(normalized, generator=g, dtype=torch.float64) + 0.5
            got = student(x.clone(), normalized, w.clone(), eps)
            return compare(got, F.rms_norm(x, normalized, w, eps), "y", rtol=1e-7, atol=1e-9)
        return run
    specs = [((4, 16), 1, 1e-6), ((2, 5, 8), 2, 1e-5), ((3, 2), 1, 0.1), ((2, 3, 4, 32), 1, 1e-6),
             ((2, 3, 4, 5), 3, 1e-6), ((3, 6, 4), 2, 0.1)]
    cases = [(f"x {s}, normalized_shape={tuple(s[-k:])}, eps={e}", case(s, k, e, i))
             for i, (s, k, e) in enumerate(specs)]
    return run_check("rms_norm", cases, verbose=verbose,
                     hint="the mean square runs over as many trailing dims as normalized_shape has entries, not "
                          "only the last one, and keeps them for broadcasting; nothing is subtracted; eps goes "
                          "inside the root; weight already has normalized_shape's shape")


check_rms_norm.forbids = ("torch-norm",)
check_rms_norm.answer_fragments = ["x / sqrt(mean(x**2"]


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


check_rms_norm_backward.forbids = ("autograd",)
