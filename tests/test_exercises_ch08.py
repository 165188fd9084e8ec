"""Chapter 8's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch08


def merge_right(counts, means, m2s):
    n, mean, m2 = 0.0, torch.zeros_like(means[0]), torch.zeros_like(m2s[0])
    for n_b, m_b, m2_b in zip(counts, means, m2s):
        if n_b == 0:
            continue
        total = n + n_b
        delta = m_b - mean
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta ** 2 * n * n_b / total
        n = total
    return mean, m2


def merge_wrong(counts, means, m2s):  # forgets the spread between the shards' means
    w = counts / counts.sum()
    return (w[:, None] * means).sum(0), m2s.sum(0)


def grad_right(dy, x_hat, weight, invstd, sum_dy, sum_dy_xhat, n):
    shape = [1, -1] + [1] * (dy.dim() - 2)
    return (weight * invstd).reshape(shape) * (dy - sum_dy.reshape(shape) / n
                                               - x_hat * sum_dy_xhat.reshape(shape) / n)


def grad_local(dy, x_hat, weight, invstd, sum_dy, sum_dy_xhat, n):  # the shard's own sums: per-process BN
    dims = [0] + list(range(2, dy.dim()))
    n_p = dy.numel() // dy.shape[1]
    return grad_right(dy, x_hat, weight, invstd, dy.sum(dims), (dy * x_hat).sum(dims), n_p)


def test_merge_moments():
    assert ch08.check_merge_moments(merge_right, verbose=False)
    assert ch08.check_merge_moments(ch08._reference_merge, verbose=False)
    assert not ch08.check_merge_moments(merge_wrong, verbose=False)


def test_sync_input_grad():
    assert ch08.check_sync_input_grad(grad_right, verbose=False)
    assert not ch08.check_sync_input_grad(grad_local, verbose=False)


def test_hints_guide_without_the_formula():
    """A failing check's hint says where to look, not the reference formula (no assignments, no products)."""
    for result in (ch08.check_merge_moments(merge_wrong, verbose=False),
                   ch08.check_sync_input_grad(grad_local, verbose=False)):
        assert not result and result.hint
        assert "=" not in result.hint and "*" not in result.hint, result.hint
