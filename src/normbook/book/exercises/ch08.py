"""Checkers for chapter 8's graded exercises (BatchNorm across processes)::

    from normbook.book.exercises import ch08
    ch08.check_merge_moments(merge_moments)
    ch08.check_sync_input_grad(sync_input_grad)
"""
from __future__ import annotations

from typing import Callable

import torch

from ...distributed import combine_moments
from . import CheckResult, compare, generator, moments, run_check

__all__ = ["check_merge_moments", "check_sync_input_grad"]


def check_merge_moments(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(counts, means, m2s)`` -> (mean (C,), M2 (C,)) of the union of P shards, given each shard's
    count (P,), mean (P, C) and M2 (P, C); against the mean and M2 of the concatenated data (float64)."""
    def case(sizes, c, offset, seed):
        def run():
            g = generator(seed)
            parts = [torch.randn(n, c, generator=g, dtype=torch.float64) * 3 + offset for n in sizes]
            counts, means, m2s = zip(*(moments(p) for p in parts))
            mean, m2 = student_fn(torch.tensor(counts, dtype=torch.float64), torch.stack(means),
                                  torch.stack(m2s))
            _, full_mean, full_m2 = moments(torch.cat(parts))
            msg = compare(mean, full_mean, "mean", rtol=1e-10, atol=1e-10)
            return msg or compare(m2, full_m2, "M2", rtol=1e-10, atol=1e-9)
        return run
    settings = [([4, 4], 3, 0.0), ([5, 1, 9], 2, 2.0), ([1, 1], 4, -1.0), ([3, 0, 6], 3, 1e3), ([2, 7, 3, 5], 1, 5.0)]
    cases = [(f"shards {s}, C={c}", case(s, c, o, i)) for i, (s, c, o) in enumerate(settings)]
    return run_check("merge_moments", cases, verbose=verbose,
                     hint="merge the shards one at a time, weighting each mean by its count; the merged M2 "
                          "needs more than the shards' own M2s (the spread between their means); an empty "
                          "shard must leave everything unchanged")


def check_sync_input_grad(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(dy, x_hat, weight, invstd, sum_dy, sum_dy_xhat, n)`` -> dx on one shard (N_p, C, *S), given
    the two per-channel sums over the whole batch and its size n; against autograd through BN on the full
    batch."""
    def case(sizes, shape_rest, seed):
        def run():
            g = generator(seed)
            c = shape_rest[0]
            x = (torch.randn(sum(sizes), *shape_rest, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
            w = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
            dy = torch.randn(x.shape, generator=g, dtype=torch.float64)
            y = torch.nn.functional.batch_norm(x, None, None, w, None, True, 0.1, 1e-5)
            (dx,) = torch.autograd.grad(y, x, dy)
            dims = [0] + list(range(2, x.dim()))
            shape = [1, c] + [1] * (x.dim() - 2)
            mean = x.detach().mean(dims, keepdim=True)
            var = x.detach().var(dims, unbiased=False, keepdim=True)
            invstd = torch.rsqrt(var + 1e-5).flatten()
            x_hat = (x.detach() - mean) * invstd.reshape(shape)
            sum_dy, sum_dy_xhat = dy.sum(dims), (dy * x_hat).sum(dims)
            n = x.numel() // c
            start = 0
            for i, size in enumerate(sizes):
                sl = slice(start, start + size)
                got = student_fn(dy[sl], x_hat[sl], w, invstd, sum_dy, sum_dy_xhat, n)
                msg = compare(got, dx[sl], f"dx on shard {i}", rtol=1e-9, atol=1e-10)
                if msg:
                    return msg
                start += size
            return None
        return run
    settings = [([3, 3], (4,)), ([5, 2], (3, 4)), ([1, 6, 2], (2, 3, 3)), ([4, 1], (5,))]
    cases = [(f"shards {s}, x (N, {', '.join(map(str, r))})", case(s, r, i)) for i, (s, r) in enumerate(settings)]
    return run_check("sync_input_grad", cases, verbose=verbose,
                     hint="the two sums are over the whole batch, so the means you form from them divide by "
                          "the whole batch's n, not the shard's; each per-channel vector must be reshaped to "
                          "broadcast over (N, C, ...)")


def _reference_merge(counts, means, m2s):
    _, mean, m2 = combine_moments(counts, means, m2s)
    return mean, m2
