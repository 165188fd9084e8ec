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


def rms_bwd_right(x, dy, weight, eps):
    rstd = torch.rsqrt((x * x).mean(1, keepdim=True) + eps)
    x_hat = x * rstd
    g = weight * dy
    return rstd * (g - x_hat * (g * x_hat).mean(1, keepdim=True)), (dy * x_hat).sum(0)


def rms_bwd_wrong(x, dy, weight, eps):  # forgets the term through the row's RMS
    rstd = torch.rsqrt((x * x).mean(1, keepdim=True) + eps)
    return rstd * weight * dy, (dy * x * rstd).sum(0)


def rms_bwd_by_autograd(x, dy, weight, eps):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    y = torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)
    return torch.autograd.grad(y, (x, weight), dy)


def test_rms_norm_backward_rows():
    assert ch10.check_rms_norm_backward_rows(rms_bwd_right, verbose=False)
    assert not ch10.check_rms_norm_backward_rows(rms_bwd_wrong, verbose=False)
    res = ch10.check_rms_norm_backward_rows(rms_bwd_by_autograd, verbose=False)
    assert not res and "ForbiddenCall" in res.failures[0][1]


def gn_bwd_right(x, dy, weight, num_groups, eps):
    n, c = x.shape[:2]
    xg = x.reshape(n * num_groups, c // num_groups, -1)
    dyg = dy.reshape(xg.shape)
    mean = xg.mean((1, 2), keepdim=True)
    rstd = torch.rsqrt(((xg - mean) ** 2).mean((1, 2), keepdim=True) + eps)
    x_hat = (xg - mean) * rstd
    w = weight.reshape(1, num_groups, c // num_groups).expand(n, -1, -1).reshape(n * num_groups, -1, 1)
    g = w * dyg
    dx = rstd * (g - g.mean((1, 2), keepdim=True) - x_hat * (g * x_hat).mean((1, 2), keepdim=True))
    dw = (dyg * x_hat).sum(2).reshape(n, c).sum(0)
    db = dyg.sum(2).reshape(n, c).sum(0)
    return dx.reshape(x.shape), dw, db


def test_group_norm_backward():
    assert ch10.check_group_norm_backward(gn_bwd_right, verbose=False)

    def weight_outside_the_sums(x, dy, weight, num_groups, eps):   # treats the weight as constant in a group
        dx, dw, db = gn_bwd_right(x, dy, torch.ones_like(weight), num_groups, eps)
        return dx * weight.reshape([1, -1] + [1] * (x.dim() - 2)), dw, db

    assert not ch10.check_group_norm_backward(weight_outside_the_sums, verbose=False)


def test_hints_do_not_print_formulas():
    for check in (ch10.check_merge_moments, ch10.check_rms_norm_backward_rows,
                  ch10.check_group_norm_backward, ch10.check_streaming_bytes):
        hint = check(lambda *a: None, verbose=False).hint
        assert "=" not in hint and "*" not in hint
