"""Checkers for chapter 1's graded exercises (Why normalize?)::

    from normbook.book.exercises import ch01
    ch01.check_preactivation_stds(preactivation_stds)  # (model, x) -> [std of each nonlinearity's input]
    ch01.check_update_to_data(update_to_data)          # (model, step) -> [relative change of each Linear weight]
"""
from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from .. import diagnostics
from ..models import batch_norm, deep_mlp
from . import CheckResult, run_check

__all__ = ["check_preactivation_stds", "check_update_to_data"]


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
            extra = ""
            if math.isinf(a) and math.isfinite(b):
                extra = " (the values themselves are finite: look at the precision the std is computed in)"
            return f"{what}[{i}] (layer {i + 1}) is {a:.6g}, expected {b:.6g}{extra}"
    return None


def _hooks_left(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _overflowing_input(model: nn.Module, x: torch.Tensor, peak: float = 1e37) -> torch.Tensor:
    """``x`` scaled so that the largest output of the model's last ReLU is ``peak``. The model is a ReLU network
    without biases (positively homogeneous), so every activation scales with the input: with ``peak = 1e37`` all
    values stay finite in float32, but the float32 *sum* over a layer's values (and so a float32 ``std()``, which
    computes the mean from it) overflows in the last layers."""
    with diagnostics.ActivationRecorder(model, nn.ReLU, to_cpu=False) as rec, torch.no_grad():
        model(x)
    return x * (peak / rec.outputs[-1].abs().max().item())


ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh)


@torch.no_grad()
def _preactivation_stds(model: nn.Module, x: torch.Tensor) -> list:
    """The reference: the float64 std of the input of every ReLU/Sigmoid/Tanh, in call order."""
    stds, handles = [], []
    for module in model.modules():
        if isinstance(module, ACTIVATIONS):
            handles.append(module.register_forward_pre_hook(
                lambda m, inputs: stds.append(inputs[0].double().std().item())))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return stds


def check_preactivation_stds(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(model, x)`` -> the float64 std of the *input* of every ReLU/Sigmoid/Tanh (the pre-activation
    the nonlinearity receives), in call order, against the checker's own forward pre-hooks; the model must be left
    without hooks and unchanged. The last case scales its input so that a layer's float32 sum overflows while its
    values are finite (a float32 ``std()`` returns inf there)."""
    def case(depth, init, norm, activation, seed, overflow=False, batch=8):
        def run():
            torch.manual_seed(seed)
            model = deep_mlp(depth, 32, in_features=20, init=init, norm=norm, activation=activation,
                             bias=False if overflow else None)
            x = torch.randn(batch, 20)
            if overflow:
                x = _overflowing_input(model, x)
            with torch.no_grad():
                before = model(x)
            got = student_fn(model, x)
            hooks = _hooks_left(model)
            if hooks:
                return f"{hooks} hook(s) left on the model: remove them after use"
            with torch.no_grad():
                if not torch.equal(model(x), before):
                    return "the model's output changed after measuring it"
            return _compare_lists(got, _preactivation_stds(model, x), "stds")
        return run
    settings = [(5, "kaiming", None, nn.ReLU, False), (4, "default", batch_norm(), nn.Sigmoid, False),
                (3, 0.5, None, nn.Tanh, False), (30, "normal", None, nn.ReLU, False),
                (6, "normal", None, nn.ReLU, True)]
    cases = [(f"{d} layers, init={i}, {'BN, ' if n else ''}{a.__name__}"
              f"{', values near float32 max' if o else ''}", case(d, i, n, a, k, o, 64 if o else 8))
             for k, (d, i, n, a, o) in enumerate(settings)]
    return run_check("preactivation_stds", cases, verbose=verbose,
                     hint="record what enters each nonlinearity, not what leaves it (a forward hook sees both; "
                          "which argument is the input?), and only at the nonlinearities; compute each std in "
                          "double precision (a float32 sum of large values overflows before the values do); run "
                          "without gradients and remove every hook afterwards")


def check_update_to_data(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(model, step)`` -> for every ``nn.Linear`` of ``model``, input side first, the standard
    deviation of the change of its weight made by calling ``step()`` once (one optimizer step, gradients already
    computed), divided by the standard deviation of the weight before the step: Karpathy's update-to-data
    ratio. Checked on SGD and on Adam, for which the update is not the learning rate times the gradient."""
    def case(depth, norm, optimizer, lr, seed):
        def run():
            torch.manual_seed(seed)
            model = nn.Sequential(deep_mlp(depth, 32, in_features=20, norm=norm, activation=nn.Sigmoid),
                                  nn.Linear(32, 5))
            x, target = torch.randn(16, 20), torch.randint(0, 5, (16,))
            nn.functional.cross_entropy(model(x), target).backward()
            twin = copy.deepcopy(model)
            for p, q in zip(model.parameters(), twin.parameters()):
                q.grad = p.grad.clone()
            opt = optimizer(model.parameters(), lr=lr)
            twin_opt = optimizer(twin.parameters(), lr=lr)
            linears = [m for m in twin.modules() if isinstance(m, nn.Linear)]
            before = [m.weight.detach().double().clone() for m in linears]
            twin_opt.step()
            expected = [((m.weight.detach().double() - b).std() / b.std()).item() for m, b in zip(linears, before)]
            calls = []

            def step():
                calls.append(1)
                opt.step()
            got = student_fn(model, step)
            if len(calls) != 1:
                return f"step() was called {len(calls)} times; call it exactly once"
            return _compare_lists(got, expected, "ratios", rtol=1e-3)
        return run
    settings = [(3, None, torch.optim.SGD, 0.5), (4, batch_norm(), torch.optim.Adam, 1e-3),
                (2, None, torch.optim.Adam, 1e-2)]
    cases = [(f"{d} sigmoid layers{', BN' if n else ''}, {o.__name__}(lr={lr})", case(d, n, o, lr, k))
             for k, (d, n, o, lr) in enumerate(settings)]
    return run_check("update_to_data", cases, verbose=verbose,
                     hint="copy each Linear weight before step(), call step() once, then compare the change "
                          "with the weight before the step; with Adam the change is not lr * grad, so measure "
                          "it rather than predicting it")
