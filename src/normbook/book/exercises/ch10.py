"""Checkers for chapter 10's graded exercises (from textbook code to a fast kernel)::

    from normbook.book.exercises import ch10
    ch10.check_streaming_bytes(streaming_bytes)
    ch10.check_merge_moments(merge_moments)
    ch10.check_rms_norm_backward_rows(rms_norm_backward_rows)     # without autograd
    ch10.check_group_norm_backward(group_norm_backward)           # without autograd
"""
from __future__ import annotations

from typing import Callable

import torch

from . import AUTOGRAD, CheckResult, compare_all, generator, guard, moments, run_check

__all__ = ["check_streaming_bytes", "check_merge_moments", "check_rms_norm_backward_rows",
           "check_group_norm_backward"]


def check_streaming_bytes(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(numel, element_size, backward, batch_wide)`` -> the bytes a normalization layer must stream
    at least: forward alone or forward + backward, for a row-local norm (whose statistics come from values held on
    chip) or a batch-wide one (BatchNorm in training), as in ``normbook.book.ch10.min_traffic``."""
    from ..ch10 import min_traffic

    def case(numel, size, backward, batch_wide):
        def run():
            got = student_fn(numel, size, backward, batch_wide)
            expected = min_traffic("batch-wide" if batch_wide else "row-local", size, backward) * numel
            if got != expected:
                return f"got {got}, expected {expected} bytes"
            return None
        return run
    specs = [(1000, 4, False, False), (1000, 4, True, False), (4096 * 4096, 2, True, False),
             (1000, 4, False, True), (1000, 4, True, True), (7, 8, True, True)]
    cases = [(f"numel={n}, element_size={s}, backward={b}, batch_wide={w}", case(n, s, b, w))
             for n, s, b, w in specs]
    return run_check("streaming_bytes", cases, verbose=verbose,
                     hint="count whole tensors read or written per pass; a batch-wide norm cannot write its output "
                          "until a reduction over the whole batch has finished, so count the passes that read "
                          "the same tensor again, forward and backward")


def check_merge_moments(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(n_a, mean_a, m2_a, n_b, mean_b, m2_b)`` -> (n, mean, m2) of the union of two sets, where m2 is
    the sum of squared deviations from the set's mean (Chan, Golub & LeVeque's parallel update)."""
    def case(n_a, n_b, shift, seed):
        def run():
            g = generator(seed)
            a = torch.randn(n_a, 3, generator=g, dtype=torch.float64) + shift
            b = torch.randn(n_b, 3, generator=g, dtype=torch.float64) * 2 + shift + 1
            got = student_fn(*moments(a), *moments(b))
            n, mean, m2 = moments(torch.cat([a, b]))
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                return "expected a tuple (n, mean, m2)"
            if abs(float(got[0]) - n) > 0:
                return f"n is {got[0]}, expected {int(n)}"
            return compare_all(got[1:], (mean, m2), ("mean", "m2"), rtol=1e-9, atol=1e-9)
        return run
    cases = [(f"n_a={a}, n_b={b}, mean near {s}", case(a, b, s, i))
             for i, (a, b, s) in enumerate([(5, 7, 0.0), (1, 9, 3.0), (64, 3, 100.0), (10, 10, -2.0)])]
    return run_check("merge_moments", cases, verbose=verbose,
                     hint="the union's mean is a weighted mean of the two; its M2 adds the two M2s and a term "
                          "for the spread between the two means, which grows with both counts")


check_merge_moments.answer_fragments = ["delta ** 2 * n_a * n_b / n", "mean_a + delta * n_b / n"]


def check_rms_norm_backward_rows(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, dy, weight, eps)`` for x, dy of shape (M, D) -> (dx, dweight) of RMSNorm over the rows,
    computed by hand: autograd is not available inside the student's function. Against autograd through
    ``torch.nn.functional.rms_norm``."""
    student = guard(student_fn, *AUTOGRAD, why="by hand, without autograd")

    def case(m, d, seed):
        def run():
            g = generator(seed)
            x = (torch.randn(m, d, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
            w = (torch.rand(d, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
            dy = torch.randn(m, d, generator=g, dtype=torch.float64)
            y = torch.nn.functional.rms_norm(x, (d,), w, 1e-6)
            expected = torch.autograd.grad(y, (x, w), dy)
            got = student(x.detach().clone(), dy.clone(), w.detach().clone(), 1e-6)
            return compare_all(got, expected, ("dx", "dweight"), rtol=1e-7, atol=1e-9)
        return run
    cases = [(f"x ({m}, {d})", case(m, d, i)) for i, (m, d) in enumerate([(4, 8), (3, 37), (16, 5), (1, 64)])]
    return run_check("rms_norm_backward_rows", cases, verbose=verbose,
                     hint="there is no mean to subtract, so one sum within each row is needed (of the weighted "
                          "gradient times the normalized input), scaled by the row's own 1/RMS; dweight is a "
                          "sum over the rows, not within them")


check_rms_norm_backward_rows.forbids = ("autograd",)
check_rms_norm_backward_rows.answer_fragments = ["wdy - x_hat * (wdy * x_hat).mean(1, keepdim=True)"]


def check_group_norm_backward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, dy, weight, num_groups, eps)`` for x, dy of shape (N, C, *S) -> (dx, dweight, dbias) of
    GroupNorm, computed by hand (autograd is not available inside the student's function); against autograd
    through ``torch.nn.functional.group_norm``."""
    student = guard(student_fn, *AUTOGRAD, why="by hand, without autograd")

    def case(shape, groups, seed):
        def run():
            g = generator(seed)
            c = shape[1]
            x = (torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 3).requires_grad_()
            w = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
            b = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_()
            dy = torch.randn(shape, generator=g, dtype=torch.float64)
            y = torch.nn.functional.group_norm(x, groups, w, b, 1e-5)
            expected = torch.autograd.grad(y, (x, w, b), dy)
            got = student(x.detach().clone(), dy.clone(), w.detach().clone(), groups, 1e-5)
            return compare_all(got, expected, ("dx", "dweight", "dbias"), rtol=1e-7, atol=1e-9)
        return run
    specs = [((2, 6, 5), 3), ((3, 4, 2, 3), 2), ((2, 8, 4, 4), 8), ((1, 6, 7), 1)]
    cases = [(f"x {s}, {g} groups", case(s, g, i)) for i, (s, g) in enumerate(specs)]
    return run_check("group_norm_backward", cases, verbose=verbose,
                     hint="view the input as one row per (example, group); the row sums of the closed form run "
                          "over all channels of the group and all positions, but the weight differs from channel "
                          "to channel inside a row; dweight and dbias are per channel, summed over examples and "
                          "positions")


check_group_norm_backward.forbids = ("autograd",)
