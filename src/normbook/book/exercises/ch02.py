"""Checkers for chapter 2's graded exercises (BatchNorm: the mathematics)::

    from normbook.book.exercises import ch02
    ch02.check_batch_norm_forward_channels_last(bn_forward_cl)  # (x (N, *, C), gamma, beta, eps) -> y
    ch02.check_backward_stages(bn_backward_stages)        # (dy, x, gamma, eps) -> (d_x_hat, d_var, d_mu, dx)
    ch02.check_batch_norm_backward(batch_norm_backward)   # (dy, x (N, C, *), gamma, eps) -> (dx, dgamma, dbeta)

The forward pass must be written without torch's normalization layers, the backward passes without autograd:
while the student's function runs, those functions raise (``normbook.book.exercises.guard``).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import AUTOGRAD, TORCH_NORM, CheckResult, compare, compare_all, forbidding, guard, run_check

__all__ = ["check_batch_norm_forward_channels_last", "check_backward_stages", "check_batch_norm_backward",
           "STAGES"]

_SHAPES = [(8, 3), (2, 5), (4, 3, 5), (3, 2, 4, 4)]
_BACKWARD_SHAPES = [(8, 3), (2, 5), (16, 4), (5, 1)]
_EPS = (1e-5, 1e-5, 1e-3, 0.1)


def _inputs(shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    x = torch.randn(shape, generator=g, dtype=dtype) * 3 + 2
    gamma = torch.rand(c, generator=g, dtype=dtype) + 0.5
    beta = torch.randn(c, generator=g, dtype=dtype)
    dy = torch.randn(shape, generator=g, dtype=dtype)
    return x, gamma, beta, dy


_NO_NORM = "computed by hand, without torch's normalization layers"
_NO_GRAD = "derived by hand, without autograd"


def check_batch_norm_forward_channels_last(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, gamma, beta, eps)`` -> y, training mode, for a *channels-last* x of shape (N, C),
    (N, L, C), (N, H, W, C) or (N, D, H, W, C) (the channel dim is the last one), against
    ``torch.nn.functional.batch_norm`` on the channels-first view; torch's normalization layers raise while the
    student's function runs."""
    student = guard(student_fn, *TORCH_NORM, why=_NO_NORM)

    def case(shape, eps, seed):
        def run():
            x, gamma, beta, _ = _inputs(shape, seed)
            x = x.movedim(1, -1).contiguous()   # (N, C, *S) -> (N, *S, C)
            expected = F.batch_norm(x.movedim(-1, 1), None, None, gamma, beta, training=True,
                                    eps=eps).movedim(1, -1)
            got = student(x.clone(), gamma.clone(), beta.clone(), eps)
            return compare(got, expected, "y", rtol=1e-6, atol=1e-8)
        return run
    cases = [(f"x {tuple(shape[:1]) + tuple(shape[2:]) + (shape[1],)}, eps={e}", case(shape, e, i))
             for i, (shape, e) in enumerate(zip(_SHAPES + [(2, 4, 2, 3, 3)], _EPS + (1e-4,)))]
    return run_check("batch_norm_forward_channels_last", cases, verbose=verbose,
                     hint="the channel dim is the last one now: one mean and one *biased* variance per channel, "
                          "over every other dim (the batch dim and the positions); check which dims you reduce "
                          "over for 3-, 4- and 5-dimensional inputs, and whether gamma and beta need a reshape to "
                          "broadcast along the last dim")


check_batch_norm_forward_channels_last.forbids = ("torch-norm",)


#: The four stages of the staged backward exercise: (name, what it is, a hint that points at the term without
#: giving it). ``check_backward_stages`` checks them in this order.
STAGES = (
    ("d_x_hat", "dL/dx_hat",
     "y = gamma * x_hat + beta is elementwise in x_hat: which factor multiplies dy?"),
    ("d_var", "dL/dvar (var = sigma^2_B)",
     "var reaches the loss only through the x_hat of every example: sum over the batch, and differentiate "
     "(var + eps)^(-1/2) with respect to var"),
    ("d_mu", "dL/dmu",
     "mu reaches the loss directly through every x_hat and through var; the second contribution carries a sum "
     "of the centred values: what does it add up to?"),
    ("dx", "dL/dx",
     "x_i has three paths: into x_hat_i, into var and into mu; the local derivatives of var and mu with respect "
     "to x_i each carry a 1/n"),
)


def _autograd_stages(x, gamma, beta, dy, eps):
    """The four stage gradients of the staged forward pass, from autograd (retain_grad on each intermediate)."""
    x = x.clone().requires_grad_()
    mu = x.mean(0)
    var = ((x - mu) ** 2).mean(0)
    x_hat = (x - mu) / torch.sqrt(var + eps)
    for t in (mu, var, x_hat):
        t.retain_grad()
    (gamma * x_hat + beta).backward(dy)
    return x_hat.grad, var.grad, mu.grad, x.grad


def check_backward_stages(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(dy, x, gamma, eps)`` -> ``(d_x_hat, d_var, d_mu, dx)`` for training-mode BN of an (N, C)
    input, written without autograd. Each stage is checked against autograd's gradient of that intermediate
    (``retain_grad``), in order; the report names the first stage that fails and gives that stage's hint, so a
    student can check stage 1 before writing stage 2 (an unwritten stage, ``...``, is reported as such)."""
    inputs = [(_inputs(s, 10 + i), e) for i, (s, e) in enumerate(zip(_BACKWARD_SHAPES, _EPS))]
    results = []
    for (x, gamma, beta, dy), eps in inputs:
        expected = _autograd_stages(x, gamma, beta, dy, eps)
        try:
            with forbidding(*AUTOGRAD, why=_NO_GRAD):
                got = student_fn(dy.clone(), x.clone(), gamma.clone(), eps)
        except Exception as exc:  # noqa: BLE001 - the student's code may raise anything; report it
            got = exc
        results.append((tuple(x.shape), eps, got, expected))

    def case(stage, k):
        def run():
            _, _, got, expected = results[k]
            if isinstance(got, Exception):
                raise got
            name = STAGES[stage][0]
            if not isinstance(got, (tuple, list)) or len(got) != len(STAGES):
                return f"expected a tuple of {len(STAGES)} tensors ({', '.join(s[0] for s in STAGES)})"
            value = got[stage]
            if value is Ellipsis:
                return f"{name} is not written yet (it is ...)"
            return compare(value, expected[stage], name, rtol=1e-6, atol=1e-9)
        return run

    stage_results = []
    for stage, (name, what, _) in enumerate(STAGES):
        cases = [(f"x {shape}, eps={eps}", case(stage, k)) for k, (shape, eps, _, _) in enumerate(results)]
        stage_results.append(run_check(f"stage {stage + 1}: {name} = {what}", cases, verbose=False))
    failed = [k for k, r in enumerate(stage_results) if not r]
    first = failed[0] if failed else None
    failures = [(f"stage {k + 1} ({STAGES[k][0]}), {label}", message)
                for k in failed for label, message in stage_results[k].failures]
    result = CheckResult(name="backward_stages", passed=not failed, cases=sum(r.cases for r in stage_results),
                         failures=failures, hint="" if first is None else STAGES[first][2])
    if verbose:
        for k, r in enumerate(stage_results):
            status = "PASS" if r else "FAIL"
            print(f"{status}  {r.name}" + ("" if r else f"\n      {r.failures[0][0]}: {r.failures[0][1]}"))
            if k == first:
                print(f"      hint: {STAGES[k][2]}")
                break
        print(result)
    return result


check_backward_stages.forbids = ("autograd",)

#: (N, C, *S) inputs of the backward exercise: n = N * S values per channel
_ND_SHAPES = [(8, 3), (4, 3, 5), (2, 4, 3, 3), (5, 1, 2, 2), (2, 2, 2, 3, 2)]
_ND_EPS = (1e-5, 1e-5, 1e-3, 0.1, 1e-5)


def check_batch_norm_backward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(dy, x, gamma, eps)`` -> (dx, dgamma, dbeta) for training-mode BN of an (N, C) or (N, C, *S)
    input (the convolutional case: statistics over the batch and the positions), written without autograd
    (autograd's entry points raise while it runs), against autograd through ``torch.nn.functional.batch_norm``."""
    student = guard(student_fn, *AUTOGRAD, why=_NO_GRAD)

    def case(shape, eps, seed):
        def run():
            x, gamma, beta, dy = _inputs(shape, seed)
            xr, gr, br = (t.clone().requires_grad_() for t in (x, gamma, beta))
            y = F.batch_norm(xr, None, None, gr, br, training=True, eps=eps)
            expected = torch.autograd.grad(y, (xr, gr, br), dy)
            got = student(dy.clone(), x.clone(), gamma.clone(), eps)
            return compare_all(got, expected, ("dx", "dgamma", "dbeta"), rtol=1e-6, atol=1e-8)
        return run
    cases = [(f"x {s}, eps={e}", case(s, e, 20 + i)) for i, (s, e) in enumerate(zip(_ND_SHAPES, _ND_EPS))]
    return run_check("batch_norm_backward", cases, verbose=verbose,
                     hint="dbeta and dgamma are sums over every dim but the channel dim; dx has one term per path "
                          "from x to the loss (directly, through the mean, through the variance): check that all "
                          "three are there, that n counts the values per channel (not the batch size), and that "
                          "each per-channel vector is reshaped to broadcast along dim 1")


check_batch_norm_backward.forbids = ("autograd",)
