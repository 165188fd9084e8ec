"""Checkers for chapter 9's graded exercises (multi-head self-attention, the DeepNorm residual)::

    from normbook.exercises import ch09
    ch09.check_attention(attention)   # (x, w_qkv, b_qkv, w_proj, b_proj, heads) -> out
    ch09.check_deep_norm(deep_norm)   # (x, fx, alpha, weight, bias, eps) -> LN(alpha * x + fx)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import CheckResult, compare, run_check

__all__ = ["check_attention", "check_deep_norm"]


def check_attention(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, w_qkv, b_qkv, w_proj, b_proj, heads)`` -> out for x of shape (N, L, d), against
    ``normbook.models.SelfAttention`` with those weights (qkv: Linear(d, 3d), proj: Linear(d, d))."""
    from ..models import SelfAttention

    def case(n, length, d, heads, seed):
        def run():
            torch.manual_seed(seed)
            ref = SelfAttention(d, heads).double()
            x = torch.randn(n, length, d, dtype=torch.float64)
            with torch.no_grad():
                ref.qkv.bias.normal_()
                expected = ref(x)
                got = student_fn(x.clone(), ref.qkv.weight.clone(), ref.qkv.bias.clone(),
                                 ref.proj.weight.clone(), ref.proj.bias.clone(), heads)
            return compare(got, expected, "out", rtol=1e-7, atol=1e-9)
        return run
    specs = [(2, 5, 8, 2), (3, 16, 16, 4), (1, 7, 12, 1), (2, 4, 12, 3)]
    cases = [(f"N={n}, L={L}, d={d}, h={h}", case(n, L, d, h, i)) for i, (n, L, d, h) in enumerate(specs)]
    return run_check("attention", cases, verbose=verbose,
                     hint="q, k, v = split of x @ w_qkv.T + b_qkv into three (N, L, d); each into h heads of "
                          "d/h features (N, h, L, d/h); softmax over the keys of q k^T / sqrt(d/h); heads "
                          "concatenated back to (N, L, d) before the output projection")


def check_deep_norm(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, fx, alpha, weight, bias, eps)`` -> LayerNorm(alpha * x + fx) over the last dimension
    (DeepNorm's residual connection, a post-LN one with the residual up-weighted by alpha)."""
    def case(shape, alpha, eps, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(shape, generator=g, dtype=torch.float64) * 2
            fx = torch.randn(shape, generator=g, dtype=torch.float64) * 0.5 + 1
            w = torch.rand(shape[-1], generator=g, dtype=torch.float64) + 0.5
            b = torch.randn(shape[-1], generator=g, dtype=torch.float64)
            got = student_fn(x.clone(), fx.clone(), alpha, w.clone(), b.clone(), eps)
            expected = F.layer_norm(alpha * x + fx, shape[-1:], w, b, eps)
            return compare(got, expected, "y", rtol=1e-7, atol=1e-9)
        return run
    specs = [((2, 5, 8), 1.0, 1e-5), ((3, 4, 16), 2.5, 1e-5), ((4, 6), (2 * 12) ** 0.25, 1e-3),
             ((2, 3, 32), 10.0, 1e-5)]
    cases = [(f"x {s}, alpha={a:.3g}, eps={e}", case(s, a, e, i)) for i, (s, a, e) in enumerate(specs)]
    return run_check("deep_norm", cases, verbose=verbose,
                     hint="scale the residual x (not the branch output fx) by alpha, add, then LayerNorm over the "
                          "last dimension with the biased variance, weight and bias")
