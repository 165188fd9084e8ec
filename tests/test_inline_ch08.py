"""Chapter 8's mechanism code (statistics merge, backward from two sums) agrees with normbook.distributed and
with BatchNorm on the concatenated batch."""
import torch

from normbook import distributed as D

from _notebook import mechanism_namespace

NS = mechanism_namespace("08")


def _shards(sizes, c=3, offset=4.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, 2, generator=g, dtype=torch.float64) * 2 + offset for n in sizes]


def test_merge_shards_matches_package_and_full_batch():
    parts = _shards([4, 0, 1, 7])
    stats = [(float(p.shape[0] * 2), p.transpose(0, 1).reshape(3, -1)) for p in parts]
    counts = torch.tensor([n for n, _ in stats], dtype=torch.float64)
    zeros = torch.zeros(3, dtype=torch.float64)
    means = torch.stack([v.mean(1) if v.numel() else zeros for _, v in stats])
    m2s = torch.stack([((v - v.mean(1, keepdim=True)) ** 2).sum(1) if v.numel() else zeros for _, v in stats])
    n, mean, m2 = NS["merge_shards"](counts, means, m2s)
    n_pkg, mean_pkg, m2_pkg = D.combine_moments(counts, means, m2s)
    torch.testing.assert_close(mean, mean_pkg, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(m2, m2_pkg, rtol=1e-13, atol=1e-13)
    full = torch.cat(parts).transpose(0, 1).reshape(3, -1)
    assert float(n) == float(n_pkg) == full.shape[1]
    torch.testing.assert_close(m2 / n, full.var(1, unbiased=False), rtol=1e-12, atol=1e-12)


def test_input_grad_from_sums_is_full_batch_grad():
    parts = _shards([5, 2, 3], seed=1)
    x = torch.cat(parts).requires_grad_(True)
    w = torch.tensor([0.5, 1.5, 2.0], dtype=torch.float64)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.nn.functional.batch_norm(x, None, None, w, None, True, 0.1, 1e-5)
    (dx,) = torch.autograd.grad(y, x, dy)
    dims = [0, 2]
    mean = x.detach().mean(dims, keepdim=True)
    invstd = torch.rsqrt(x.detach().var(dims, unbiased=False, keepdim=True) + 1e-5)
    x_hat = (x.detach() - mean) * invstd
    sums = [NS["local_sums"](dy[s:e], x_hat[s:e]) for s, e in ((0, 5), (5, 7), (7, 10))]
    sum_dy = sum(a for a, _ in sums)          # what the all-reduce computes
    sum_dy_xhat = sum(b for _, b in sums)
    got = NS["input_grad_from_sums"](dy[5:7], x_hat[5:7], w, invstd.flatten(), sum_dy, sum_dy_xhat, 20)
    torch.testing.assert_close(got, dx[5:7], rtol=1e-12, atol=1e-12)
