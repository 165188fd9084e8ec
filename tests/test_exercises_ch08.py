"""Chapter 8's checkers: a right implementation passes, a wrong one fails."""

from normbook.book.exercises import ch08
from normbook.distributed import combine_moments


def merge_right(counts, means, variances):  # all shards at once
    n = counts.sum()
    w = (counts / n)[:, None]
    mean = (w * means).sum(0)
    return mean, (w * (variances + (means - mean) ** 2)).sum(0)


def merge_by_the_library(counts, means, variances):  # through M2 = n * var and Chan's merge
    n, mean, m2 = combine_moments(counts, means, variances * counts[:, None])
    return mean, m2 / n


def merge_without_spread(counts, means, variances):  # forgets the spread between the shards' means
    w = (counts / counts.sum())[:, None]
    return (w * means).sum(0), (w * variances).sum(0)


def merge_unweighted(counts, means, variances):  # every shard counts the same, the empty one too
    mean = means.mean(0)
    return mean, (variances + (means - mean) ** 2).mean(0)


def merge_unbiased(counts, means, variances):  # the union's unbiased variance: not what the exercise asks
    mean, var = merge_right(counts, means, variances)
    n = counts.sum()
    return mean, var * n / (n - 1)


def test_merge_variances():
    assert ch08.check_merge_variances(merge_right, verbose=False)
    assert ch08.check_merge_variances(merge_by_the_library, verbose=False)
    result = ch08.check_merge_variances(merge_without_spread, verbose=False)
    assert not result and all("variance" in m for _, m in result.failures)
    assert not ch08.check_merge_variances(merge_unweighted, verbose=False)
    assert not ch08.check_merge_variances(merge_unbiased, verbose=False)


def _sums(dy, x_hat):
    dims = [0] + list(range(2, dy.dim()))
    return dy.sum(dims), (dy * x_hat).sum(dims)


def _dx(dy, x_hat, weight, invstd, sum_dy, sum_dy_xhat, n):
    shape = [1, -1] + [1] * (dy.dim() - 2)
    return (weight * invstd).reshape(shape) * (dy - sum_dy.reshape(shape) / n
                                               - x_hat * sum_dy_xhat.reshape(shape) / n)


def sync_right(dys, x_hats, weight, invstd):
    sums = [_sums(dy, xh) for dy, xh in zip(dys, x_hats)]
    sum_dy, sum_dy_xhat = sum(s[0] for s in sums), sum(s[1] for s in sums)
    n = sum(dy.numel() // dy.shape[1] for dy in dys)
    return [_dx(dy, xh, weight, invstd, sum_dy, sum_dy_xhat, n) for dy, xh in zip(dys, x_hats)], sum_dy_xhat, sum_dy


def sync_local(dys, x_hats, weight, invstd):  # each shard's own sums: per-process BN's backward
    out = []
    for dy, xh in zip(dys, x_hats):
        out.append(_dx(dy, xh, weight, invstd, *_sums(dy, xh), dy.numel() // dy.shape[1]))
    _, dw, db = sync_right(dys, x_hats, weight, invstd)
    return out, dw, db


def sync_n_is_examples(dys, x_hats, weight, invstd):  # n counts the examples, not the values per channel
    sums = [_sums(dy, xh) for dy, xh in zip(dys, x_hats)]
    sum_dy, sum_dy_xhat = sum(s[0] for s in sums), sum(s[1] for s in sums)
    n = sum(dy.shape[0] for dy in dys)
    return [_dx(dy, xh, weight, invstd, sum_dy, sum_dy_xhat, n) for dy, xh in zip(dys, x_hats)], sum_dy_xhat, sum_dy


def sync_local_param_grads(dys, x_hats, weight, invstd):  # shard 0's dweight and dbias only
    dxs, _, _ = sync_right(dys, x_hats, weight, invstd)
    db, dw = _sums(dys[0], x_hats[0])
    return dxs, dw, db


def test_sync_backward():
    assert ch08.check_sync_backward(sync_right, verbose=False)
    assert not ch08.check_sync_backward(sync_local, verbose=False)
    result = ch08.check_sync_backward(sync_n_is_examples, verbose=False)
    assert not result and len(result.failures) == 2  # right for (N, C) shards: one value per channel and example
    result = ch08.check_sync_backward(sync_local_param_grads, verbose=False)
    assert not result and all("dweight" in m for _, m in result.failures)


def test_hints_guide_without_the_formula():
    """A failing check's hint says where to look, not the reference formula (no assignments, no products)."""
    for result in (ch08.check_merge_variances(merge_without_spread, verbose=False),
                   ch08.check_sync_backward(sync_local, verbose=False)):
        assert not result and result.hint
        assert "=" not in result.hint and "*" not in result.hint, result.hint
