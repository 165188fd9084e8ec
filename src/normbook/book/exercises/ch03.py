"""Checkers for chapter 3's graded exercises (fully-connected vs convolutional BatchNorm)::

    from normbook.book.exercises import ch03
    ch03.check_reduction_dims(reduction_dims)        # (ndim, channel_dim) -> the dims BN averages over
    ch03.check_batch_norm_module(MyBatchNorm)        # a module class MyBatchNorm(num_features)

The module's forward pass runs with torch's normalization layers forbidden (``guard``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from . import TORCH_NORM, CheckResult, compare, forbidding, run_check

__all__ = ["check_reduction_dims", "check_batch_norm_module"]

_SHAPES = [(8, 3), (4, 3, 7), (4, 3, 5, 5), (2, 3, 3, 4, 4)]
_WHY = "computed by the module itself, without torch's normalization layers"


#: (shape, channel_dim): channels first (PyTorch), channels last (given as -1 or as ndim - 1), and in between
_LAYOUTS = [((8, 3), 1), ((4, 3, 7), 1), ((4, 3, 5, 5), 1), ((2, 3, 3, 4, 4), 1), ((8, 3), -1), ((4, 7, 3), -1),
            ((4, 5, 5, 3), 3), ((2, 3, 4, 4, 3), -1), ((2, 4, 3, 5), -2)]


def check_reduction_dims(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(ndim, channel_dim)`` -> the tuple of dimensions over which BatchNorm computes its statistics
    for an input with ``ndim`` dimensions (2 to 5) whose channels are in dimension ``channel_dim`` (1 for PyTorch's
    (N, C, *) layout, -1 or ndim - 1 for channels last; negative values count from the end), checked by using them
    on random inputs against ``torch.nn``'s layers applied to the channels-first view."""
    def case(shape, channel_dim, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 1
            dims = student_fn(len(shape), channel_dim)
            if not isinstance(dims, (tuple, list)) or not all(isinstance(d, int) for d in dims):
                return f"expected a tuple of ints, got {dims!r}"
            mean = x.mean(dim=tuple(dims))
            first = x.movedim(channel_dim, 1)
            bn = nn.BatchNorm1d(first.shape[1], momentum=1.0).double()
            bn(first.reshape(first.shape[0], first.shape[1], -1) if len(shape) > 2 else first)
            return compare(mean, bn.running_mean, f"mean over dims {tuple(dims)}", rtol=1e-9, atol=1e-12)
        return run
    cases = [(f"x {s}, channel_dim={c}", case(s, c, i)) for i, (s, c) in enumerate(_LAYOUTS)]
    return run_check("reduction_dims", cases, verbose=verbose,
                     hint="BN keeps one statistic per channel: leave out the channel dimension and only it (the "
                          "batch dimension is reduced over too); a negative channel_dim counts from the end, so "
                          "turn it into a positive index before comparing it with the others")


def check_batch_norm_module(student_cls: Callable, verbose: bool = True) -> CheckResult:
    """``student_cls(num_features)`` -> a module that behaves like ``torch.nn.BatchNorm1d/2d/3d`` (default
    eps and momentum) on (N, C), (N, C, L), (N, C, H, W) and (N, C, D, H, W) inputs: outputs in training mode,
    running_mean/running_var/num_batches_tracked after three steps, outputs in eval mode, state_dict keys. Its
    forward pass runs with torch's normalization layers raising (``forbidding(*TORCH_NORM)``)."""
    def case(shape, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            c = shape[1]
            ref = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[len(shape)](c)
            mine = student_cls(c)

            def run_mine(x):
                with forbidding(*TORCH_NORM, why=_WHY):
                    return mine(x)
            with torch.no_grad():
                w, b = torch.rand(c, generator=g) + 0.5, torch.randn(c, generator=g)
                for m in (ref, mine):
                    m.weight.copy_(w)
                    m.bias.copy_(b)
            keys = sorted(mine.state_dict())
            if keys != sorted(ref.state_dict()):
                return f"state_dict keys {keys}, expected {sorted(ref.state_dict())} (use register_buffer)"
            for step in range(3):
                x = torch.randn(shape, generator=g) * (step + 2) + step
                msg = compare(run_mine(x), ref(x), f"train-mode output at step {step}", rtol=1e-4, atol=1e-5)
                if msg:
                    return msg
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                msg = compare(getattr(mine, name), getattr(ref, name), name, rtol=1e-4, atol=1e-5)
                if msg:
                    return msg
            mine.eval()
            ref.eval()
            x = torch.randn(shape, generator=g)
            return compare(run_mine(x), ref(x), "eval-mode output", rtol=1e-4, atol=1e-5)
        return run
    cases = [(f"x {s}", case(s, i)) for i, s in enumerate(_SHAPES)]
    return run_check("batch_norm_module", cases, verbose=verbose,
                     hint="statistics over every dim but 1; parameters and buffers of shape (C,), reshaped to "
                          "(1, C, 1, ...); running_var stores the unbiased variance n/(n-1); in eval mode "
                          "(not self.training) normalize with the running estimates")


check_batch_norm_module.forbids = ("torch-norm",)
