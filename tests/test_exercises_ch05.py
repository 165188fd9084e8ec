"""Chapter 5's checkers: a right implementation passes, a wrong one fails."""
import re

import torch

from normbook.book.exercises import ch05


def group_norm(x, num_groups, weight, bias, eps=1e-5):
    N, C = x.shape[:2]
    g = x.reshape(N, num_groups, -1)
    mean, var = g.mean(-1, keepdim=True), g.var(-1, unbiased=False, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + eps)).reshape_as(x)
    shape = (1, C) + (1,) * (x.dim() - 2)
    return y * weight.view(shape) + bias.view(shape)


def group_norm_transposed(x, num_groups, weight, bias, eps=1e-5):    # groups of strided channels: wrong
    N, C = x.shape[:2]
    g = x.reshape(N, C // num_groups, num_groups, -1).transpose(1, 2)
    mean = g.mean((2, 3), keepdim=True)
    var = g.var((2, 3), unbiased=False, keepdim=True)
    y = ((g - mean) / torch.sqrt(var + eps)).transpose(1, 2).reshape_as(x)
    shape = (1, C) + (1,) * (x.dim() - 2)
    return y * weight.view(shape) + bias.view(shape)


def group_norm_from_layer_norm(x, num_groups, weight, bias, eps=1e-5):  # the exercise's intended route
    N, C = x.shape[:2]
    groups = x.reshape(N, num_groups, -1)
    y = torch.nn.functional.layer_norm(groups, groups.shape[-1:], eps=eps).reshape_as(x)
    shape = (1, C) + (1,) * (x.dim() - 2)
    return y * weight.view(shape) + bias.view(shape)


def group_norm_by_torch(x, num_groups, weight, bias, eps=1e-5):
    return torch.nn.functional.group_norm(x, num_groups, weight, bias, eps)


def test_group_norm():
    assert ch05.check_group_norm(group_norm, verbose=False)
    assert ch05.check_group_norm(group_norm_from_layer_norm, verbose=False)
    assert not ch05.check_group_norm(group_norm_transposed, verbose=False)


def test_group_norm_checker_forbids_torchs_group_norm_only():
    result = ch05.check_group_norm(group_norm_by_torch, verbose=False)
    assert not result and all("ForbiddenCall" in m and "group_norm" in m for _, m in result.failures)
    assert "torch.nn.functional.group_norm" in ch05.check_group_norm.forbids
    assert "torch.nn.functional.layer_norm" not in ch05.check_group_norm.forbids


def _dims(normalized_shape):
    return tuple(range(-len(normalized_shape), 0))


def rms_norm(x, normalized_shape, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(_dims(normalized_shape), keepdim=True) + eps) * weight


def rms_norm_last_dim_only(x, normalized_shape, weight, eps):  # the page's RMSNorm: right for one dim only
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rms_norm_centered(x, normalized_shape, weight, eps):
    x = x - x.mean(_dims(normalized_shape), keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(_dims(normalized_shape), keepdim=True) + eps) * weight


def rms_norm_by_torch(x, normalized_shape, weight, eps):
    return torch.nn.functional.rms_norm(x, normalized_shape, weight, eps)


def test_rms_norm():
    assert ch05.check_rms_norm(rms_norm, verbose=False)
    assert not ch05.check_rms_norm(rms_norm_centered, verbose=False)
    result = ch05.check_rms_norm(rms_norm_last_dim_only, verbose=False)
    assert not result and len(result.failures) == 3  # the cases over two or three trailing dims
    assert all(re.search(r"normalized_shape=\(\d+, \d+", label) for label, _ in result.failures)
    result = ch05.check_rms_norm(rms_norm_by_torch, verbose=False)
    assert not result and all("ForbiddenCall" in m for _, m in result.failures)
    assert ch05.check_rms_norm.forbids == ("torch-norm",)


def rms_norm_backward(dy, x, weight, eps):
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    x_hat, g = x * r, dy * weight
    dx = r * (g - x_hat * (g * x_hat).mean(-1, keepdim=True))
    return dx, (dy * x_hat).reshape(-1, x.shape[-1]).sum(0)


def rms_norm_backward_with_mean_term(dy, x, weight, eps):     # LayerNorm's -sum(g) term kept: wrong
    dx, dw = rms_norm_backward(dy, x, weight, eps)
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return dx - r * (dy * weight).mean(-1, keepdim=True), dw


def rms_norm_backward_gamma_outside(dy, x, weight, eps):      # gamma pulled out of the sum: wrong
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    x_hat = x * r
    dx = weight * r * (dy - x_hat * (dy * x_hat).mean(-1, keepdim=True))
    return dx, (dy * x_hat).reshape(-1, x.shape[-1]).sum(0)


def rms_norm_backward_by_autograd(dy, x, weight, eps):        # right numbers, forbidden means
    xr, wr = x.clone().requires_grad_(), weight.clone().requires_grad_()
    y = torch.nn.functional.rms_norm(xr, x.shape[-1:], wr, eps)
    return torch.autograd.grad(y, (xr, wr), dy)


def test_rms_norm_backward():
    assert ch05.check_rms_norm_backward(rms_norm_backward, verbose=False)
    assert not ch05.check_rms_norm_backward(rms_norm_backward_with_mean_term, verbose=False)
    assert not ch05.check_rms_norm_backward(rms_norm_backward_gamma_outside, verbose=False)
    result = ch05.check_rms_norm_backward(rms_norm_backward_by_autograd, verbose=False)
    assert not result and "without autograd" in result.failures[0][1]


def test_autograd_is_restored_after_a_check():
    ch05.check_rms_norm_backward(rms_norm_backward_by_autograd, verbose=False)
    x = torch.ones(3, requires_grad=True)
    (2 * x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]
