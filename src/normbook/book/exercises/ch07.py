"""Checkers for chapter 7's graded exercises (BatchNorm in practice)::

    from normbook.book.exercises import ch07
    ch07.check_frozen_bn_forward(frozen_bn_forward)
    ch07.check_batch_renorm_forward(batch_renorm_forward)
    ch07.check_weight_standardization(standardize_weight)
"""
from __future__ import annotations

from typing import Callable

import torch

from ... import functional as F
from ...nn import FrozenBatchNorm2d
from . import CheckResult, compare, generator, run_check

__all__ = ["check_frozen_bn_forward", "check_batch_renorm_forward", "check_weight_standardization"]


def _compare_value_and_grad(got, expected, wrt, what: str, wrt_name: str, gen):
    """None if ``got`` matches ``expected`` and so does its gradient with respect to ``wrt`` under one random
    upstream gradient (drawn from ``gen``); else the first mismatch."""
    msg = compare(got, expected, what, rtol=1e-6, atol=1e-8)
    if msg is not None:
        return msg
    upstream = torch.randn(expected.shape, generator=gen, dtype=torch.float64)
    (g_got,) = torch.autograd.grad(got, wrt, upstream)
    (g_exp,) = torch.autograd.grad(expected, wrt, upstream)
    return compare(g_got, g_exp, f"gradient with respect to {wrt_name}", rtol=1e-6, atol=1e-8)


def check_frozen_bn_forward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, weight, bias, running_mean, running_var, eps)`` for x (N, C, H, W) against
    ``normbook.nn.FrozenBatchNorm2d`` (torchvision's formula)."""
    def case(shape, eps, seed):
        def run():
            g = generator(seed)
            c = shape[1]
            x = torch.randn(shape, generator=g) * 3 + 1
            frozen = FrozenBatchNorm2d(c, eps)
            frozen.weight.copy_(torch.rand(c, generator=g) + 0.5)
            frozen.bias.copy_(torch.randn(c, generator=g))
            frozen.running_mean.copy_(torch.randn(c, generator=g))
            frozen.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.01)
            got = student_fn(x.clone(), frozen.weight.clone(), frozen.bias.clone(), frozen.running_mean.clone(),
                             frozen.running_var.clone(), eps)
            return compare(got, frozen(x), "output", rtol=1e-4, atol=1e-5)
        return run
    cases = [(f"x {s}, eps={e}", case(s, e, i)) for i, (s, e) in
             enumerate([((2, 3, 4, 4), 1e-5), ((5, 1, 3, 2), 1e-3), ((1, 6, 2, 5), 0.1)])]
    return run_check("frozen_bn_forward", cases, verbose=verbose,
                     hint="a frozen layer uses the running statistics, never the batch's; check that each "
                          "per-channel vector is reshaped so that it broadcasts over (N, C, H, W), and where "
                          "eps enters")


def check_batch_renorm_forward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, running_mean, running_var, eps, r_max, d_max)`` -> x_hat (no gamma/beta, buffers not
    updated) against ``normbook.functional.batch_renorm``; also checks the gradient (r and d constants)."""
    def case(shape, r_max, d_max, seed):
        def run():
            g = generator(seed)
            c = shape[1]
            x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5).requires_grad_()
            rm = torch.randn(c, generator=g, dtype=torch.float64)
            rv = torch.rand(c, generator=g, dtype=torch.float64) * 4 + 0.1
            got = student_fn(x, rm.clone(), rv.clone(), 1e-5, r_max, d_max)
            expected = F.batch_renorm(x, rm.clone(), rv.clone(), None, None, True, 0.1, 1e-5, r_max, d_max)
            return _compare_value_and_grad(got, expected, x, "x_hat", "x", g)
        return run
    settings = [((8, 3), 1.0, 0.0), ((6, 4, 3, 3), 1.5, 0.5), ((4, 2, 5, 5), 3.0, 5.0), ((10, 3), 100.0, 100.0)]
    cases = [(f"x {s}, r_max={r}, d_max={d}", case(s, r, d, i)) for i, (s, r, d) in enumerate(settings)]
    return run_check("batch_renorm_forward", cases, verbose=verbose,
                     hint="the batch statistics run over every dim but the channel dim, with the biased "
                          "variance; compare your r and d with their definitions in the chapter (their "
                          "clipping ranges), and make sure no gradient flows through them")


def check_weight_standardization(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(w, eps)`` for a weight (C_out, C_in, kH, kW) against
    ``normbook.functional.weight_standardization`` (values and gradient)."""
    def case(shape, eps, seed):
        def run():
            g = generator(seed)
            w = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.3 + 0.1).requires_grad_()
            got = student_fn(w, eps)
            expected = F.weight_standardization(w, eps)
            return _compare_value_and_grad(got, expected, w, "standardized weight", "w", g)
        return run
    cases = [(f"w {s}, eps={e}", case(s, e, i)) for i, (s, e) in
             enumerate([((4, 3, 3, 3), 1e-5), ((2, 5, 1, 1), 1e-5), ((3, 2, 5, 5), 1e-2)])]
    return run_check("weight_standardization", cases, verbose=verbose,
                     hint="each output channel's filter is standardized on its own, over its whole fan-in; "
                          "check which variance (biased or unbiased) the chapter's formula uses")
