"""Checkers for chapter 4's graded exercises (BatchNorm at inference time)::

    from normbook.book.exercises import ch04
    ch04.check_running_update(update)     # (running_mean, running_var, x, momentum) -> (new_mean, new_var)
    ch04.check_population_stats(stats)    # (batches) -> (mean, unbiased var) per channel, over all batches
    ch04.check_fold(fold)                 # (weight, bias, bn) -> (W', b') of the folded layer

The running-statistics exercises run the student's function with torch's normalization layers forbidden
(``guard``); ``check_fold`` computes its reference from its own copy of the BatchNorm (``private_copy``) and fails
a fold that changes the module it was given (``changed``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import TORCH_NORM, CheckResult, changed, compare, compare_all, guard, private_copy, run_check

__all__ = ["check_running_update", "check_population_stats", "check_fold"]

_SHAPES = [(8, 3), (2, 4), (4, 3, 5, 5), (2, 2, 3, 4, 4)]
_WHY = "computed by hand, without torch's normalization layers"


def check_running_update(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(running_mean, running_var, x, momentum)`` -> (new_mean, new_var): one training step's update
    of the running estimates in PyTorch's convention (momentum alpha weighs the new batch statistic; the
    unbiased variance is stored), for x of shape (N, C, *), against ``torch.nn.functional.batch_norm`` (which the
    student's function may not call)."""
    student = guard(student_fn, *TORCH_NORM, why=_WHY)

    def case(shape, momentum, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            c = shape[1]
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2
            rm, rv = torch.randn(c, generator=g, dtype=torch.float64), torch.rand(c, generator=g,
                                                                                 dtype=torch.float64) + 0.5
            got = student(rm.clone(), rv.clone(), x.clone(), momentum)
            F.batch_norm(x, rm, rv, training=True, momentum=momentum)
            return compare_all(got, (rm, rv), ("new running_mean", "new running_var"), rtol=1e-9,
                               atol=1e-12)
        return run
    cases = [(f"x {s}, momentum={m}", case(s, m, i))
             for i, (s, m) in enumerate(zip(_SHAPES, (0.1, 0.3, 0.01, 1.0)))]
    return run_check("running_update", cases, verbose=verbose,
                     hint="each new estimate is a weighted average of the old estimate and the batch statistic: "
                          "check which of the two PyTorch's momentum weighs; the variance stored is the unbiased "
                          "one, and n counts the values per channel; statistics over every dim but 1")


check_running_update.forbids = ("torch-norm",)


def check_population_stats(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(batches)`` -> (mean, var): from a list of (N, C, *) tensors, the per-channel running estimates
    a BatchNorm holds after seeing them all with ``momentum=None`` (the average of the batch means and of the
    unbiased batch variances), against ``torch.nn.BatchNorm`` (which the student's function may not call)."""
    student = guard(student_fn, *TORCH_NORM, why=_WHY)

    def case(shape, k, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            batches = [torch.randn(shape, generator=g, dtype=torch.float64) * (i + 1) + i for i in range(k)]
            ref = nn.BatchNorm1d(shape[1], momentum=None).double()
            for b in batches:
                ref(b.reshape(shape[0], shape[1], -1) if len(shape) > 2 else b)
            got = student([b.clone() for b in batches])
            return compare_all(got, (ref.running_mean, ref.running_var), ("mean", "var"), rtol=1e-9,
                               atol=1e-12)
        return run
    cases = [(f"{k} batches of {s}", case(s, k, i))
             for i, (s, k) in enumerate(zip(_SHAPES, (1, 3, 5, 2)))]
    return run_check("population_stats", cases, verbose=verbose,
                     hint="momentum=None weighs batch k by 1/k: the result is the plain average over batches of "
                          "each batch's mean and of its *unbiased* variance (statistics over every dim but 1)")


check_population_stats.forbids = ("torch-norm",)


def check_fold(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(weight, bias, bn)`` -> (W', b'): the weight and bias of a layer equal, in eval mode, to the
    layer with ``weight`` and ``bias`` (None: no bias) followed by BatchNorm ``bn``; checked on linear and
    convolutional layers against running the layer and the checker's own copy of ``bn`` (taken before the call);
    a fold that changes ``bn`` (its buffers, parameters or mode) fails."""
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
            kept = private_copy(bn)
            got = student_fn(layer.weight.detach().clone(),
                             None if layer.bias is None else layer.bias.detach().clone(), bn)
            message = changed(bn, kept, "BatchNorm")
            if message:
                return message
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return "expected a tuple (W', b')"
            shape = (4, 5) if kind == "linear" else (4, 2, 6, 6)
            x = torch.randn(shape, generator=g, dtype=torch.float64)
            with torch.no_grad():
                expected = kept(layer(x))
                w, b = torch.as_tensor(got[0]), torch.as_tensor(got[1])
                folded = F.linear(x, w, b) if kind == "linear" else F.conv2d(x, w, b)
            return (compare(w, layer.weight, "W' shape", rtol=float("inf"), atol=float("inf"))
                    or compare(folded, expected, "folded layer's output", rtol=1e-9, atol=1e-10))
        return run
    cases = [(f"{k}, bias={b}", case(k, b, i)) for i, (k, b) in
             enumerate([("linear", True), ("linear", False), ("conv", True), ("conv", False)])]
    return run_check("fold", cases, verbose=verbose,
                     hint="in eval mode BN is a per-channel affine map with constant statistics: each output "
                          "channel of the layer gets one scale factor (where do gamma, the running variance and eps "
                          "enter it?) applied to its row of weights along dim 0, and the new bias must absorb the "
                          "running mean and beta as well as the old bias (zero when there is none); use the "
                          "module's values without changing them")
