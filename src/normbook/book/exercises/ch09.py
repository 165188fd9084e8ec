"""Checkers for chapter 9's graded exercises (causal multi-head self-attention, z-loss, the ReZero / LayerScale residual)::

    from normbook.book.exercises import ch09
    ch09.check_causal_attention(causal_attention)   # (x, w_qkv, b_qkv, w_proj, b_proj, heads) -> out
    ch09.check_z_loss(loss_with_z)               # (logits, targets, coefficient) -> loss
    ch09.check_scaled_residual(scaled_residual)     # (x, fx, scale) -> stream
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from . import CheckResult, compare, guard, run_check

__all__ = ["check_causal_attention", "check_z_loss", "check_scaled_residual", "ATTENTION"]


def check_causal_attention(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, w_qkv, b_qkv, w_proj, b_proj, heads)`` -> out: causal multi-head self-attention (token i
    attends to tokens 0..i only) for x of shape (N, L, d), with the layout of
    ``normbook.book.models.SelfAttention`` (qkv: Linear(d, 3d) giving queries, keys, values; proj: Linear(d, d)).
    Written by hand: torch's attention functions are not available inside the student's function."""
    student = guard(student_fn, *ATTENTION, why="written out, not by torch's attention function")

    def case(n, length, d, heads, seed):
        def run():
            g = torch.Generator().manual_seed(seed)
            x = torch.randn(n, length, d, generator=g, dtype=torch.float64)
            w_qkv = torch.randn(3 * d, d, generator=g, dtype=torch.float64) / d ** 0.5
            b_qkv = torch.randn(3 * d, generator=g, dtype=torch.float64)
            w_proj = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
            b_proj = torch.randn(d, generator=g, dtype=torch.float64)
            q, k, v = (t.reshape(n, length, heads, d // heads).transpose(1, 2)
                       for t in (x @ w_qkv.T + b_qkv).chunk(3, dim=-1))
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            expected = out.transpose(1, 2).reshape(n, length, d) @ w_proj.T + b_proj
            got = student(x.clone(), w_qkv.clone(), b_qkv.clone(), w_proj.clone(), b_proj.clone(), heads)
            return compare(got, expected, "out", rtol=1e-7, atol=1e-9)
        return run
    specs = [(2, 5, 8, 2), (3, 16, 16, 4), (1, 7, 12, 1), (2, 4, 12, 3)]
    cases = [(f"N={n}, L={L}, d={d}, h={h}", case(n, L, d, h, i)) for i, (n, L, d, h) in enumerate(specs)]
    return run_check("causal_attention", cases, verbose=verbose,
                     hint="check the layout of the projection's output (queries, then keys, then values, each "
                          "split into heads of consecutive features); a token may attend to itself and to earlier "
                          "tokens only, so the later positions must get no weight before the softmax; the logits "
                          "are scaled by the head width, not by d")


#: torch's attention entry points, forbidden inside the student's function
ATTENTION = ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.multi_head_attention_forward",
             "aten:scaled_dot_product|_flash_attention|_efficient_attention")


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


def check_scaled_residual(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(x, fx, scale)`` -> the residual stream after a block whose branch output ``fx`` is scaled by a
    learned ``scale``: a scalar (ReZero) or one value per feature, shape (d,) (LayerScale); x and fx of shape
    (N, L, d). Against :class:`normbook.book.models.BranchScale`."""
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
                got = student_fn(x.clone(), fx.clone(), scale.scale.detach().clone())
            return compare(got, expected, f"{kind} output", rtol=1e-12, atol=1e-12)
        return run
    specs = [("rezero", (2, 5, 8), 0.0), ("rezero", (3, 4, 16), 0.7), ("layerscale", (2, 5, 8), 0.1),
             ("layerscale", (1, 7, 12), 1e-5)]
    cases = [(f"{k}, x {s}, scale near {i:g}", case(k, s, i, n)) for n, (k, s, i) in enumerate(specs)]
    return run_check("scaled_residual", cases, verbose=verbose,
                     hint="only the branch output is scaled, never the residual x; a scale with one value per "
                          "feature lines up with the last dimension of x")
