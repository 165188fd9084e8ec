"""Chapter 10's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch10


def bytes_right(numel, element_size, backward):
    return (5 if backward else 2) * numel * element_size


def bytes_wrong(numel, element_size, backward):  # forgets that the backward reads x again
    return (4 if backward else 2) * numel * element_size


def merge_right(n_a, mean_a, m2_a, n_b, mean_b, m2_b):
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta ** 2 * n_a * n_b / n


def merge_wrong(n_a, mean_a, m2_a, n_b, mean_b, m2_b):  # adds the M2s, forgets the spread between the means
    n = n_a + n_b
    return n, (n_a * mean_a + n_b * mean_b) / n, m2_a + m2_b


def ln_bwd_right(x, dy, weight, eps):
    mean = x.mean(1, keepdim=True)
    rstd = torch.rsqrt(((x - mean) ** 2).mean(1, keepdim=True) + eps)
    x_hat = (x - mean) * rstd
    g = weight * dy
    dx = rstd * (g - g.mean(1, keepdim=True) - x_hat * (g * x_hat).mean(1, keepdim=True))
    return dx, (dy * x_hat).sum(0), dy.sum(0)


def ln_bwd_wrong(x, dy, weight, eps):  # drops the term through the variance
    mean = x.mean(1, keepdim=True)
    rstd = torch.rsqrt(((x - mean) ** 2).mean(1, keepdim=True) + eps)
    x_hat = (x - mean) * rstd
    g = weight * dy
    return rstd * (g - g.mean(1, keepdim=True)), (dy * x_hat).sum(0), dy.sum(0)


def test_minimal_bytes():
    assert ch10.check_minimal_bytes(bytes_right, verbose=False)
    assert not ch10.check_minimal_bytes(bytes_wrong, verbose=False)


def test_merge_moments():
    assert ch10.check_merge_moments(merge_right, verbose=False)
    assert not ch10.check_merge_moments(merge_wrong, verbose=False)


def test_layer_norm_backward_rows():
    assert ch10.check_layer_norm_backward_rows(ln_bwd_right, verbose=False)
    assert not ch10.check_layer_norm_backward_rows(ln_bwd_wrong, verbose=False)
