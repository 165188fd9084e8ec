"""Checkers for chapter 7's graded exercises (BatchNorm in practice)::

    from normbook.book.exercises import ch07
    ch07.check_frozen_bn_forward(frozen_bn_forward)      # torch's normalization layers forbidden
    ch07.check_batch_renorm_step(batch_renorm_step)      # x_hat, and the running estimates updated in place
    ch07.check_ws_linear(WSLinear)                       # a weight-standardized nn.Linear
"""
from __future__ import annotations

from typing import Callable

import torch

from ... import functional as F
from ...nn import FrozenBatchNorm2d
from . import TORCH_NORM, CheckResult, compare, forbidding, generator, guard, run_check

__all__ = ["check_frozen_bn_forward", "check_batch_renorm_step", "check_ws_linear"]


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
    ``normbook.nn.FrozenBatchNorm2d`` (torchvision's formula); torch's normalization layers raise while the student's
    function runs."""
    student = guard(student_fn, *TORCH_NORM, why="computed by hand, without torch's normalization layers")

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
            got = student(x.clone(), frozen.weight.clone(), frozen.bias.clone(), frozen.running_mean.clone(),
                          frozen.running_var.clone(), eps)
            return compare(got, frozen(x), "output", rtol=1e-4, atol=1e-5)
        return run
    cases = [(f"x {s}, eps={e}", case(s, e, i)) for i, (s, e) in
             enumerate([((2, 3, 4, 4), 1e-5), ((5, 1, 3, 2), 1e-3), ((1, 6, 2, 5), 0.1)])]
    return run_check("frozen_bn_forward", cases, verbose=verbose,
                     hint="a frozen layer uses the running statistics, never the batch's; check that each "
                          "per-channel vector is reshaped so that it broadcasts over (N, C, H, W), and where "
                          "eps enters")


check_frozen_bn_forward.forbids = ("torch-norm",)
check_frozen_bn_forward.answer_fragments = ["(x - running_mean) / sqrt(running_var + eps) * weight + bias"]

#: the book's own implementations, which the batch renorm and WS exercises ask the student to write
RENORM = ("normbook.functional.batch_renorm", "normbook.nn._BatchRenorm.forward")
WS = ("normbook.functional.weight_standardization", "normbook.nn.WSConv2d.forward")


def check_batch_renorm_step(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, running_mean, running_var, momentum, eps, r_max, d_max)`` -> x_hat (no gamma/beta) for
    x (N, C, H, W) in training mode, *and* the running estimates updated in place as ``normbook.functional.
    batch_renorm`` does (BatchNorm's update: mean and unbiased variance, weight ``momentum``), against that
    function (which raises while the student's function runs); also checks the gradient (r and d constants)."""
    student = guard(student_fn, *RENORM, *TORCH_NORM, why="written by hand, without the book's batch_renorm or "
                    "torch's normalization layers")

    def case(shape, momentum, r_max, d_max, seed):
        def run():
            g = generator(seed)
            c = shape[1]
            x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 0.5).requires_grad_()
            rm = torch.randn(c, generator=g, dtype=torch.float64)
            rv = torch.rand(c, generator=g, dtype=torch.float64) * 4 + 0.1
            ref_m, ref_v = rm.clone(), rv.clone()
            expected = F.batch_renorm(x, ref_m, ref_v, None, None, True, momentum, 1e-5, r_max, d_max)
            got = student(x, rm, rv, momentum, 1e-5, r_max, d_max)
            return (_compare_value_and_grad(got, expected, x, "x_hat", "x", g)
                    or compare(rm, ref_m, "running_mean after the step", rtol=1e-9, atol=1e-12)
                    or compare(rv, ref_v, "running_var after the step", rtol=1e-9, atol=1e-12))
        return run
    settings = [((6, 4, 3, 3), 0.1, 1.5, 0.5), ((4, 2, 5, 5), 0.3, 3.0, 5.0), ((8, 3, 2, 2), 0.01, 1.0, 0.0),
                ((2, 3, 2, 1), 1.0, 100.0, 100.0)]
    cases = [(f"x {s}, momentum={m}, r_max={r}, d_max={d}", case(s, m, r, d, i))
             for i, (s, m, r, d) in enumerate(settings)]
    return run_check("batch_renorm_step", cases, verbose=verbose,
                     hint="x_hat as on the page (r and d computed from the running estimates *before* the "
                          "update, with no gradient through them); then update the buffers in place, as "
                          "BatchNorm does: which of the two estimates does momentum weigh, which variance is "
                          "stored, and is the update kept out of the graph?")


check_batch_renorm_step.forbids = ("torch-norm",) + RENORM


def check_ws_linear(student_cls: Callable, verbose: bool = True) -> CheckResult:
    """``student_cls(in_features, out_features, bias=True, ws_eps=1e-5)`` -> an ``nn.Linear`` whose weight is
    standardized (per output unit, over its in_features inputs, biased variance) before every use, the stored
    parameter staying the raw weight (as ``normbook.nn.WSConv2d`` does for convolutions): outputs and the gradient
    with respect to the raw weight against ``F.linear`` with ``normbook.functional.weight_standardization``
    (which raises while the student's module runs), and the parameter unchanged by a forward pass."""
    def case(n_in, n_out, bias, eps, seed):
        def run():
            g = generator(seed)
            layer = student_cls(n_in, n_out, bias=bias, ws_eps=eps).double()
            if not isinstance(layer, torch.nn.Linear):
                return f"expected an nn.Linear (a subclass), got {type(layer).__name__}"
            w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64) * 0.3 + 0.1
            b = torch.randn(n_out, generator=g, dtype=torch.float64) if bias else None
            with torch.no_grad():
                layer.weight.copy_(w)
                if bias:
                    layer.bias.copy_(b)
            x = torch.randn(5, n_in, generator=g, dtype=torch.float64)
            with forbidding(*WS, why="written by hand, without the book's weight_standardization"):
                got = layer(x)
            if not torch.equal(layer.weight.detach(), w):
                return "the forward pass changed the stored weight: standardize a copy, keep the raw parameter"
            wr = w.clone().requires_grad_()
            expected = torch.nn.functional.linear(x, F.weight_standardization(wr, eps), b)
            msg = compare(got, expected, "output", rtol=1e-6, atol=1e-8)
            if msg is not None:
                return msg
            upstream = torch.randn(expected.shape, generator=g, dtype=torch.float64)
            if layer.weight.grad is not None:
                layer.weight.grad = None
            (g_got,) = torch.autograd.grad(got, layer.weight, upstream)
            (g_exp,) = torch.autograd.grad(expected, wr, upstream)
            return compare(g_got, g_exp, "gradient with respect to the raw weight", rtol=1e-6, atol=1e-8)
        return run
    settings = [(6, 4, True, 1e-5), (3, 5, False, 1e-5), (16, 2, True, 1e-2), (2, 3, True, 1e-5)]
    cases = [(f"Linear({i}, {o}, bias={b}), ws_eps={e}", case(i, o, b, e, k))
             for k, (i, o, b, e) in enumerate(settings)]
    return run_check("ws_linear", cases, verbose=verbose,
                     hint="a Linear weight is (out_features, in_features): each output unit's row is "
                          "standardized over its inputs, so check which dim you reduce over (the page's "
                          "convolution reduces over three); standardize inside forward, from the parameter, so "
                          "that the gradient flows through the standardization to the raw weight")


check_ws_linear.forbids = WS

