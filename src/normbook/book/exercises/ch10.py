"""Checkers for chapter 10's graded exercises (from textbook code to a fast kernel)::

    from normbook.exercises import ch10
    ch10.check_minimal_bytes(minimal_bytes)
    ch10.check_merge_moments(merge_moments)
    ch10.check_layer_norm_backward_rows(layer_norm_backward_rows)
"""
from __future__ import annotations

from typing import Callable

import torch

from . import CheckResult, compare_all, generator, moments, run_check

__all__ = ["check_minimal_bytes", "check_merge_moments", "check_layer_norm_backward_rows"]


def check_minimal_bytes(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(numel, element_size, backward)`` -> the bytes a normalization layer must move at least:
    read x and write y (forward); and also read x and dy and write dx (``backward=True``: forward + backward)."""
    def case(numel, size, backward):
        def run():
            got = student_fn(numel, size, backward)
            expected = (5 if backward else 2) * numel * size
            if got != expected:
                return f"got {got}, expected {expected} bytes"
            return None
        return run
    cases = [(f"numel={n}, element_size={s}, backward={b}", case(n, s, b))
             for n, s, b in [(1000, 4, False), (1000, 4, True), (4096 * 4096, 2, False), (4096 * 4096, 2, True),
                             (7, 8, True)]]
    return run_check("minimal_bytes", cases, verbose=verbose,
                     hint="count whole tensors: the forward reads x and writes y; the backward reads x and dy "
                          "and writes dx. Parameters and statistics are negligible.")


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
                     hint="n = n_a + n_b; delta = mean_b - mean_a; mean = mean_a + delta * n_b / n; "
                          "m2 = m2_a + m2_b + delta**2 * n_a * n_b / n")


def check_layer_norm_backward_rows(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, dy, weight, eps)`` for x, dy of shape (M, D) -> (dx, dweight, dbias) of LayerNorm over
    the rows, against autograd through ``torch.nn.functional.layer_norm``."""
    def case(m, d, seed):
        def run():
            g = generator(seed)
            x = (torch.randn(m, d, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
            w = (torch.rand(d, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
            b = torch.randn(d, generator=g, dtype=torch.float64).requires_grad_()
            dy = torch.randn(m, d, generator=g, dtype=torch.float64)
            y = torch.nn.functional.layer_norm(x, (d,), w, b, 1e-5)
            expected = torch.autograd.grad(y, (x, w, b), dy)
            got = student_fn(x.detach().clone(), dy.clone(), w.detach().clone(), 1e-5)
            return compare_all(got, expected, ("dx", "dweight", "dbias"), rtol=1e-7, atol=1e-9)
        return run
    cases = [(f"x ({m}, {d})", case(m, d, i)) for i, (m, d) in enumerate([(4, 8), (3, 37), (16, 5), (1, 64)])]
    return run_check("layer_norm_backward_rows", cases, verbose=verbose,
                     hint="with x_hat = (x - mean) * rstd and g = weight * dy per row: dx = rstd * (g - mean(g) "
                          "- x_hat * mean(g * x_hat)); dweight = sum over rows of dy * x_hat; dbias = sum of dy")
