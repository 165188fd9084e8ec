"""Chapter 7's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch07


def frozen_right(x, weight, bias, running_mean, running_var, eps):
    shape = (1, -1, 1, 1)
    scale = weight.reshape(shape) / torch.sqrt(running_var.reshape(shape) + eps)
    return (x - running_mean.reshape(shape)) * scale + bias.reshape(shape)


def frozen_wrong(x, weight, bias, running_mean, running_var, eps):  # batch statistics: BN's training mode
    mu = x.mean((0, 2, 3), keepdim=True)
    var = x.var((0, 2, 3), unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * weight.reshape(1, -1, 1, 1) + bias.reshape(1, -1, 1, 1)


def renorm_right(x, running_mean, running_var, eps, r_max, d_max):
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mu_b = x.mean(dims, keepdim=True)
    sigma_b = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    sigma = torch.sqrt(running_var.reshape(shape) + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()
    d = ((mu_b - running_mean.reshape(shape)) / sigma).clamp(-d_max, d_max).detach()
    return (x - mu_b) / sigma_b * r + d


def renorm_no_detach(x, running_mean, running_var, eps, r_max, d_max):  # gradient flows through r and d
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mu_b = x.mean(dims, keepdim=True)
    sigma_b = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    sigma = torch.sqrt(running_var.reshape(shape) + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max)
    d = ((mu_b - running_mean.reshape(shape)) / sigma).clamp(-d_max, d_max)
    return (x - mu_b) / sigma_b * r + d


def ws_right(w, eps):
    dims = tuple(range(1, w.dim()))
    return (w - w.mean(dims, keepdim=True)) / torch.sqrt(w.var(dims, unbiased=False, keepdim=True) + eps)


def ws_unbiased(w, eps):  # the unbiased variance
    dims = tuple(range(1, w.dim()))
    return (w - w.mean(dims, keepdim=True)) / torch.sqrt(w.var(dims, keepdim=True) + eps)


def test_frozen_bn_checker():
    assert ch07.check_frozen_bn_forward(frozen_right, verbose=False)
    result = ch07.check_frozen_bn_forward(frozen_wrong, verbose=False)
    assert not result and "running" in result.hint


def test_batch_renorm_checker():
    assert ch07.check_batch_renorm_forward(renorm_right, verbose=False)
    result = ch07.check_batch_renorm_forward(renorm_no_detach, verbose=False)
    assert not result
    assert any("gradient" in message for _, message in result.failures)


def test_weight_standardization_checker(capsys):
    assert ch07.check_weight_standardization(ws_right)
    assert "PASS" in capsys.readouterr().out
    assert not ch07.check_weight_standardization(ws_unbiased)
    assert "FAIL" in capsys.readouterr().out


def test_hints_guide_without_the_formula():
    """A failing check's hint says where to look, not the reference formula (no assignments, no sqrt(...))."""
    results = [ch07.check_frozen_bn_forward(frozen_wrong, verbose=False),
               ch07.check_batch_renorm_forward(renorm_no_detach, verbose=False),
               ch07.check_weight_standardization(ws_unbiased, verbose=False)]
    for result in results:
        assert not result and result.hint
        assert "=" not in result.hint and "sqrt(" not in result.hint, result.hint
