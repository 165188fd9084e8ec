"""Chapter 2's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch02


def forward_right(x, gamma, beta, eps):
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    return gamma.reshape(shape) * (x - mean) / torch.sqrt(var + eps) + beta.reshape(shape)


def forward_unbiased(x, gamma, beta, eps):  # the unbiased variance: wrong for BN
    dims = [0] + list(range(2, x.dim()))
    shape = [1, -1] + [1] * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True)
    return gamma.reshape(shape) * (x - mean) / torch.sqrt(var + eps) + beta.reshape(shape)


def backward_right(dy, x, gamma, eps):
    n = x.shape[0]
    r = 1 / torch.sqrt(x.var(0, unbiased=False) + eps)
    x_hat = (x - x.mean(0)) * r
    dbeta, dgamma = dy.sum(0), (dy * x_hat).sum(0)
    return gamma * r / n * (n * dy - dbeta - x_hat * dgamma), dgamma, dbeta


def backward_no_variance_path(dy, x, gamma, eps):  # forgets the path through sigma^2
    n = x.shape[0]
    r = 1 / torch.sqrt(x.var(0, unbiased=False) + eps)
    x_hat = (x - x.mean(0)) * r
    dbeta, dgamma = dy.sum(0), (dy * x_hat).sum(0)
    return gamma * r / n * (n * dy - dbeta), dgamma, dbeta


def test_forward_checker(capsys):
    assert ch02.check_batch_norm_forward(forward_right)
    assert "PASS" in capsys.readouterr().out
    result = ch02.check_batch_norm_forward(forward_unbiased)
    assert not result and "FAIL" in capsys.readouterr().out and "biased" in result.hint


def test_backward_checker(capsys):
    assert ch02.check_batch_norm_backward(backward_right)
    assert "PASS" in capsys.readouterr().out
    result = ch02.check_batch_norm_backward(backward_no_variance_path)
    assert not result and "FAIL" in capsys.readouterr().out
    assert any("dx" in message for _, message in result.failures)


def test_backward_checker_reports_a_wrong_return():
    result = ch02.check_batch_norm_backward(lambda dy, x, g, eps: dy, verbose=False)
    assert not result and "tuple" in result.failures[0][1]
