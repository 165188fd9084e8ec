"""Checkers for chapter 1's graded exercises (Why normalize?)::

    from normbook.exercises import ch01
    ch01.check_layer_stds(layer_stds)        # (model, x) -> [std of each nonlinearity's output]
    ch01.check_grad_to_data(grad_to_data)    # (model after backward) -> [grad std / weight std per Linear]
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .. import diagnostics
from ..models import batch_norm, deep_mlp
from . import CheckResult, run_check

__all__ = ["check_layer_stds", "check_grad_to_data"]


def _compare_lists(got, expected, what: str, rtol: float = 1e-6):
    try:
        got = [float(v) for v in got]
    except TypeError:
        return f"{what} should be a list of floats, got {type(got).__name__}"
    if len(got) != len(expected):
        return f"{what} has {len(got)} entries, expected {len(expected)} (one per layer)"
    for i, (a, b) in enumerate(zip(got, expected)):
        same = (math.isnan(a) and math.isnan(b)) or a == b or (
            math.isfinite(b) and abs(a - b) <= rtol * abs(b) + 1e-12)
        if not same:
            return f"{what}[{i}] (layer {i + 1}) is {a:.6g}, expected {b:.6g}"
    return None


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def check_layer_stds(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(model, x)`` -> the float64 std of every ReLU/Sigmoid/Tanh output, in call order, against
    ``normbook.diagnostics.activation_std``; the model must be left without hooks and unchanged."""
    def case(depth, init, norm, activation, seed):
        def run():
            torch.manual_seed(seed)
            model = deep_mlp(depth, 32, in_features=20, init=init, norm=norm, activation=activation)
            x = torch.randn(8, 20)
            with torch.no_grad():
                before = model(x)
            got = student_fn(model, x)
            if _hooks_left(model):
                return f"{_hooks_left(model)} forward hook(s) left on the model: remove them after use"
            with torch.no_grad():
                if not torch.equal(model(x), before):
                    return "the model's output changed after measuring it"
            expected = diagnostics.activation_std(model, x)
            return _compare_lists(got, expected, "stds")
        return run
    settings = [(5, "kaiming", None, nn.ReLU), (4, "default", batch_norm(), nn.Sigmoid),
                (3, 0.5, None, nn.Tanh), (30, "normal", None, nn.ReLU)]
    cases = [(f"{d} layers, init={i}, {'BN, ' if n else ''}{a.__name__}", case(d, i, n, a, k))
             for k, (d, i, n, a) in enumerate(settings)]
    return run_check("layer_stds", cases, verbose=verbose,
                     hint="register_forward_hook on each nn.ReLU/nn.Sigmoid/nn.Tanh (not on nn.Linear); in the "
                          "hook, output.double().std().item(); run the model under torch.no_grad(); "
                          "call handle.remove() on every handle afterwards")


def check_grad_to_data(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(model)`` (after ``backward``) -> ``weight.grad.std() / weight.std()`` of every ``nn.Linear``,
    input side first, against ``normbook.diagnostics.grad_to_data_ratios``."""
    def case(depth, init, norm, seed):
        def run():
            torch.manual_seed(seed)
            model = nn.Sequential(deep_mlp(depth, 32, in_features=20, init=init, norm=norm,
                                           activation=nn.Sigmoid), nn.Linear(32, 5))
            x, target = torch.randn(16, 20), torch.randint(0, 5, (16,))
            nn.functional.cross_entropy(model(x), target).backward()
            got = student_fn(model)
            expected = diagnostics.grad_to_data_ratios(model, nn.Linear)
            return _compare_lists(got, expected, "ratios", rtol=1e-4)
        return run
    settings = [(3, "default", None), (4, "normal", batch_norm()), (2, "kaiming", None)]
    cases = [(f"{d} sigmoid layers, init={i}{', BN' if n else ''}", case(d, i, n, k))
             for k, (d, i, n) in enumerate(settings)]
    return run_check("grad_to_data", cases, verbose=verbose,
                     hint="for each nn.Linear m in model.modules(): m.weight.grad.std() / m.weight.std(); "
                          "standard deviations, not norms, and only the linear layers (not BN's gamma)")
