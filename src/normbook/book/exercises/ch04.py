"""Checkers for chapter 4's graded exercises (BatchNorm at inference time)::

    from normbook.exercises import ch04
    ch04.check_running_update(update)     # (running_mean, running_var, x, momentum) -> (new_mean, new_var)
    ch04.check_population_stats(stats)    # (batches) -> (mean, unbiased var) per channel, over all batches
    ch04.check_fold(fold)                 # (weight, bias, bn) -> (W', b') of the folded layer
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import CheckResult, compare, compare_all, run_check

__all__ = ["check_running_update", "check_population_stats", "check_fold"]

_SHAPES = [(8, 3), (2, 4), (4, 3, 5, 5), (2, 2, 3, 4, 4)]


def check_running_update(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(running_mean, running_var, x, momentum)`` -> (new_mean, new_var): one training step's update
    of the running estimates in PyTorch's convention (momentum alpha weighs the new batch statistic; the
    unbiased variance is stored), for x of shape (N, C, *), against ``torch.nn.functional.batch_norm``."""
    def case(shape, momentum, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            c = shape[1]
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2
            rm, rv = torch.randn(c, generator=g, dtype=torch.float64), torch.rand(c, generator=g,
                                                                                 dtype=torch.float64) + 0.5
            got = student_fn(rm.clone(), rv.clone(), x.clone(), momentum)
            F.batch_norm(x, rm, rv, training=True, momentum=momentum)
            return compare_all(got, (rm, rv), ("new running_mean", "new running_var"), rtol=1e-9,
                               atol=1e-12)
        return run
    cases = [(f"x {s}, momentum={m}", case(s, m, i))
             for i, (s, m) in enumerate(zip(_SHAPES, (0.1, 0.3, 0.01, 1.0)))]
    return run_check("running_update", cases, verbose=verbose,
                     hint="new = (1 - momentum) * old + momentum * batch statistic; the batch variance stored "
                          "is the unbiased one, n/(n-1) times the biased; statistics over every dim but 1")


def check_population_stats(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(batches)`` -> (mean, var): from a list of (N, C, *) tensors, the per-channel running estimates
    a BatchNorm holds after seeing them all with ``momentum=None`` (the average of the batch means and of the
    unbiased batch variances), against ``torch.nn.BatchNorm``."""
    def case(shape, k, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            batches = [torch.randn(shape, generator=g, dtype=torch.float64) * (i + 1) + i for i in range(k)]
            ref = nn.BatchNorm1d(shape[1], momentum=None).double()
            for b in batches:
                ref(b.reshape(shape[0], shape[1], -1) if len(shape) > 2 else b)
            got = student_fn([b.clone() for b in batches])
            return compare_all(got, (ref.running_mean, ref.running_var), ("mean", "var"), rtol=1e-9,
                               atol=1e-12)
        return run
    cases = [(f"{k} batches of {s}", case(s, k, i))
             for i, (s, k) in enumerate(zip(_SHAPES, (1, 3, 5, 2)))]
    return run_check("population_stats", cases, verbose=verbose,
                     hint="momentum=None weighs batch k by 1/k: the result is the plain average over batches of "
                          "each batch's mean and of its *unbiased* variance (statistics over every dim but 1)")


def check_fold(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(weight, bias, bn)`` -> (W', b'): the weight and bias of a layer equal, in eval mode, to the
    layer with ``weight`` and ``bias`` (None: no bias) followed by BatchNorm ``bn``; checked on linear and
    convolutional layers against running the two layers."""
    def case(kind, with_bias, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            layer = (nn.Linear(5, 3, bias=with_bias) if kind == "linear"
                     else nn.Conv2d(2, 3, 3, bias=with_bias)).double()
            bn = (nn.BatchNorm1d(3) if kind == "linear" else nn.BatchNorm2d(3)).double()
            with torch.no_grad():
                for p in list(layer.parameters()) + [bn.weight, bn.bias]:
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
                bn.running_mean.copy_(torch.randn(3, generator=g, dtype=torch.float64))
                bn.running_var.copy_(torch.rand(3, generator=g, dtype=torch.float64) + 0.1)
            bn.eval()
            got = student_fn(layer.weight.detach().clone(),
                             None if layer.bias is None else layer.bias.detach().clone(), bn)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return "expected a tuple (W', b')"
            shape = (4, 5) if kind == "linear" else (4, 2, 6, 6)
            x = torch.randn(shape, generator=g, dtype=torch.float64)
            with torch.no_grad():
                expected = bn(layer(x))
                w, b = torch.as_tensor(got[0]), torch.as_tensor(got[1])
                folded = F.linear(x, w, b) if kind == "linear" else F.conv2d(x, w, b)
            return (compare(w, layer.weight, "W' shape", rtol=float("inf"), atol=float("inf"))
                    or compare(folded, expected, "folded layer's output", rtol=1e-9, atol=1e-10))
        return run
    cases = [(f"{k}, bias={b}", case(k, b, i)) for i, (k, b) in
             enumerate([("linear", True), ("linear", False), ("conv", True), ("conv", False)])]
    return run_check("fold", cases, verbose=verbose,
                     hint="s = gamma / sqrt(running_var + eps); W' = W scaled by s along the output-channel "
                          "dim 0; b' = s * (b - running_mean) + beta, with b = 0 when there is no bias")
