"""Checkers for chapter 8's graded exercises (BatchNorm across processes)::

    from normbook.book.exercises import ch08
    ch08.check_merge_variances(merge_variances)   # (counts, means, variances) -> (mean, variance) of the union
    ch08.check_sync_backward(sync_backward)       # (dys, x_hats, weight, invstd) -> (dxs, dweight, dbias)
"""
from __future__ import annotations

from typing import Callable

import torch

from . import CheckResult, compare, generator, moments, run_check

__all__ = ["check_merge_variances", "check_sync_backward"]


def check_merge_variances(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(counts, means, variances)`` -> (mean (C,), variance (C,)) of the union of P shards, given
    each shard's count (P,), mean (P, C) and *biased* variance (P, C) (what each process of a synchronized BN
    computes); the union's variance is the biased one too. Against the mean and biased variance of the
    concatenated data (float64). An empty shard has count 0 and zeros for its mean and variance."""
    def case(sizes, c, offset, seed):
        def run():
            g = generator(seed)
            parts = [torch.randn(n, c, generator=g, dtype=torch.float64) * (1 + k) + offset * k
                     for k, n in enumerate(sizes)]
            counts, means, m2s = zip(*(moments(p) for p in parts))
            variances = [m2 / n if n else m2 for n, m2 in zip(counts, m2s)]
            mean, var = student_fn(torch.tensor(counts, dtype=torch.float64), torch.stack(means),
                                   torch.stack(variances))
            full = torch.cat(parts)
            msg = compare(mean, full.mean(0), "mean", rtol=1e-10, atol=1e-10)
            return msg or compare(var, full.var(0, unbiased=False), "variance", rtol=1e-9, atol=1e-9)
        return run
    settings = [([4, 4], 3, 0.0), ([5, 1, 9], 2, 2.0), ([1, 1], 4, -1.0), ([3, 0, 6], 3, 1e3), ([2, 7, 3, 5], 1, 5.0)]
    cases = [(f"shards {s}, C={c}", case(s, c, o, i)) for i, (s, c, o) in enumerate(settings)]
    return run_check("merge_variances", cases, verbose=verbose,
                     hint="weight each shard by its count, and divide by the total count; the union's variance "
                          "is more than the average of the shards' variances when their means differ (each "
                          "shard's mean is off the union's mean by some amount: what does that add?); an empty "
                          "shard must change nothing")


def check_sync_backward(student_fn: Callable, verbose: bool = True) -> CheckResult:
    """``student_fn(dys, x_hats, weight, invstd)`` -> ``(dxs, dweight, dbias)``: synchronized BN's backward pass
    over P shards, given each shard's upstream gradient and normalized input (lists of (N_p, C, *S) tensors) and the
    global per-channel ``weight`` and ``invstd`` (C,); ``dxs`` is the list of each shard's input gradient. The
    student forms each shard's sums, combines them as the all-reduce would, and counts the batch's values per
    channel. Against autograd through BN (weight and bias) on the concatenated batch."""
    def case(sizes, shape_rest, seed):
        def run():
            g = generator(seed)
            c = shape_rest[0]
            x = (torch.randn(sum(sizes), *shape_rest, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_()
            w = (torch.rand(c, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
            b = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_()
            dy = torch.randn(x.shape, generator=g, dtype=torch.float64)
            y = torch.nn.functional.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)
            dx, dw, db = torch.autograd.grad(y, (x, w, b), dy)
            dims = [0] + list(range(2, x.dim()))
            shape = [1, c] + [1] * (x.dim() - 2)
            mean = x.detach().mean(dims, keepdim=True)
            var = x.detach().var(dims, unbiased=False, keepdim=True)
            invstd = torch.rsqrt(var + 1e-5).flatten()
            x_hat = (x.detach() - mean) * invstd.reshape(shape)
            got = student_fn(list(dy.split(sizes)), list(x_hat.split(sizes)), w.detach().clone(), invstd.clone())
            if not isinstance(got, (tuple, list)) or len(got) != 3:
                return "expected a tuple (dxs, dweight, dbias)"
            dxs, got_dw, got_db = got
            if not isinstance(dxs, (tuple, list)) or len(dxs) != len(sizes):
                return f"dxs should be a list of {len(sizes)} tensors, one per shard"
            for i, (got_dx, want) in enumerate(zip(dxs, dx.split(sizes))):
                msg = compare(got_dx, want, f"dx on shard {i}", rtol=1e-9, atol=1e-10)
                if msg:
                    return msg
            return (compare(got_dw, dw, "dweight", rtol=1e-9, atol=1e-10)
                    or compare(got_db, db, "dbias", rtol=1e-9, atol=1e-10))
        return run
    settings = [([3, 3], (4,)), ([5, 2], (3, 4)), ([1, 6, 2], (2, 3, 3)), ([4, 1], (5,))]
    cases = [(f"shards {s}, x (N, {', '.join(map(str, r))})", case(s, r, i)) for i, (s, r) in enumerate(settings)]
    return run_check("sync_backward", cases, verbose=verbose,
                     hint="every shard needs the sums over the whole batch: add the shards' own sums up (that is "
                          "the all-reduce), and count n over all shards and positions, not one shard's examples; "
                          "dweight and dbias are those global sums themselves")
