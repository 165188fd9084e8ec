"""Chapter 5's checkers: a right implementation passes, a wrong one fails."""
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


def test_group_norm():
    assert ch05.check_group_norm(group_norm, verbose=False)
    assert not ch05.check_group_norm(group_norm_transposed, verbose=False)


def rms_norm(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rms_norm_centered(x, weight, eps):
    x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def test_rms_norm():
    assert ch05.check_rms_norm(rms_norm, verbose=False)
    assert not ch05.check_rms_norm(rms_norm_centered, verbose=False)
