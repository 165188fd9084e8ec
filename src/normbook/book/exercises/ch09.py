"""Checkers for chapter 9's graded exercises (multi-head self-attention, z-loss, ReZero and LayerScale)::

    from normbook.exercises import ch09
    ch09.check_attention(attention)              # (x, w_qkv, b_qkv, w_proj, b_proj, heads) -> out
    ch09.check_z_loss(loss_with_z)               # (logits, targets, coefficient) -> loss
    ch09.check_branch_scales(rezero, layer_scale)  # (x, fx, alpha) / (x, fx, lam) -> stream
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import CheckResult, compare, run_check

__all__ = ["check_attention", "check_z_loss", "check_branch_scales"]


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
                     hint="check the layout: the projection's output holds the queries, then the keys, then "
                          "the values; each splits into h heads of d/h consecutive features; the softmax runs "
                          "over the keys, with the logits scaled by the head width (not d); the heads are put "
                          "back side by side before the output projection")


def check_z_loss(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(logits, targets, coefficient)`` -> cross-entropy plus ``coefficient`` times the mean over the
    batch of (log Z)^2, Z the softmax's normalizer of each row (PaLM's z-loss), for logits (N, C) and integer
    targets (N,); also on logits so large that exponentiating them overflows."""
    def case(n, c, scale, coefficient, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            logits = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
            targets = torch.randint(0, c, (n,), generator=g)
            got = student_fn(logits.clone(), targets.clone(), coefficient)
            log_z = torch.logsumexp(logits, dim=-1)
            expected = F.cross_entropy(logits, targets) + coefficient * log_z.pow(2).mean()
            return compare(got, expected, "loss", rtol=1e-9, atol=1e-9)
        return run
    specs = [(4, 10, 1.0, 1e-4), (8, 3, 5.0, 1e-2), (2, 10, 1000.0, 1e-4), (16, 100, 0.1, 1.0)]
    cases = [(f"N={n}, C={c}, logits of scale {s:g}, coefficient {k:g}", case(n, c, s, k, i))
             for i, (n, c, s, k) in enumerate(specs)]
    return run_check("z_loss", cases, verbose=verbose,
                     hint="the auxiliary term squares log Z per row, then averages over the batch; compute "
                          "log Z with a function that stays finite for logits of size 1000, and keep the "
                          "ordinary cross-entropy as the first term")


def check_branch_scales(rezero_fn: Callable, layer_scale_fn: Callable, verbose: bool = True) -> CheckResult:
    """``rezero_fn(x, fx, alpha)`` with a scalar alpha and ``layer_scale_fn(x, fx, lam)`` with one scale per
    feature (lam of shape (d,)) -> the residual stream after the block, for x and fx of shape (N, L, d),
    against :class:`normbook.book.models.BranchScale`."""
    from ..models import BranchScale

    def case(kind, shape, init, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(shape, generator=g, dtype=torch.float64)
            fx = torch.randn(shape, generator=g, dtype=torch.float64) * 3
            scale = BranchScale(shape[-1], kind, init).double()
            with torch.no_grad():
                if kind == "layerscale":
                    scale.scale.copy_(torch.rand(shape[-1], generator=g, dtype=torch.float64) + init)
                expected = x + scale(fx)
                fn = rezero_fn if kind == "rezero" else layer_scale_fn
                got = fn(x.clone(), fx.clone(), scale.scale.detach().clone())
            return compare(got, expected, f"{kind} output", rtol=1e-12, atol=1e-12)
        return run
    specs = [("rezero", (2, 5, 8), 0.0), ("rezero", (3, 4, 16), 0.7), ("layerscale", (2, 5, 8), 0.1),
             ("layerscale", (1, 7, 12), 1e-5)]
    cases = [(f"{k}, x {s}, scale near {i:g}", case(k, s, i, n)) for n, (k, s, i) in enumerate(specs)]
    return run_check("branch_scales", cases, verbose=verbose,
                     hint="only the branch output is scaled, never the residual x; LayerScale's scale has one "
                          "entry per feature, the last dimension of x")
