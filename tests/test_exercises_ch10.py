"""Chapter 10's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch10


def bytes_right(numel, element_size, backward, batch_wide):
    forward, back = (3, 5) if batch_wide else (2, 3)
    return (forward + (back if backward else 0)) * numel * element_size


def bytes_wrong(numel, element_size, backward, batch_wide):  # every norm as if row-local
    return (5 if backward else 2) * numel * element_size


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


def test_streaming_bytes():
    assert ch10.check_streaming_bytes(bytes_right, verbose=False)
    assert not ch10.check_streaming_bytes(bytes_wrong, verbose=False)


def test_merge_moments():
    assert ch10.check_merge_moments(merge_right, verbose=False)
    assert not ch10.check_merge_moments(merge_wrong, verbose=False)


def test_layer_norm_backward_rows():
    assert ch10.check_layer_norm_backward_rows(ln_bwd_right, verbose=False)
    assert not ch10.check_layer_norm_backward_rows(ln_bwd_wrong, verbose=False)


def add_ln_bwd_right(h, dy, dh, weight, eps):
    mean = h.mean(-1, keepdim=True)
    rstd = torch.rsqrt(((h - mean) ** 2).mean(-1, keepdim=True) + eps)
    h_hat = (h - mean) * rstd
    g = weight * dy
    d_sum = rstd * (g - g.mean(-1, keepdim=True) - h_hat * (g * h_hat).mean(-1, keepdim=True)) + dh
    rows = tuple(range(h.dim() - 1))
    return d_sum, d_sum, (dy * h_hat).sum(rows), dy.sum(rows)


def test_add_layer_norm_backward():
    assert ch10.check_add_layer_norm_backward(add_ln_bwd_right, verbose=False)

    def forgets_the_stream(h, dy, dh, weight, eps):
        return add_ln_bwd_right(h, dy, torch.zeros_like(dh), weight, eps)

    def sums_only_the_first_dim(h, dy, dh, weight, eps):
        dx, dr, dw, db = add_ln_bwd_right(h, dy, dh, weight, eps)
        mean = h.mean(-1, keepdim=True)
        h_hat = (h - mean) * torch.rsqrt(((h - mean) ** 2).mean(-1, keepdim=True) + eps)
        return dx, dr, (dy * h_hat).sum(0), dy.sum(0)
    assert not ch10.check_add_layer_norm_backward(forgets_the_stream, verbose=False)
    assert not ch10.check_add_layer_norm_backward(sums_only_the_first_dim, verbose=False)


def test_hints_do_not_print_formulas():
    for check in (ch10.check_merge_moments, ch10.check_layer_norm_backward_rows,
                  ch10.check_add_layer_norm_backward, ch10.check_streaming_bytes):
        hint = check(lambda *a: None, verbose=False).hint
        assert "=" not in hint and "*" not in hint
