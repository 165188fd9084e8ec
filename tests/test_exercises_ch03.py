"""Chapter 3's checkers: a right implementation passes, a wrong one fails."""
import torch
from torch import nn

from normbook.book.exercises import ch03


def test_reduction_dims():
    assert ch03.check_reduction_dims(lambda ndim: (0,) + tuple(range(2, ndim)), verbose=False)
    assert not ch03.check_reduction_dims(lambda ndim: tuple(range(1, ndim)), verbose=False)  # per example
    assert not ch03.check_reduction_dims(lambda ndim: (0,), verbose=False)                   # per position


class Right(nn.Module):
    def __init__(self, c, eps=1e-5, momentum=0.1, unbiased=True):
        super().__init__()
        self.eps, self.momentum, self.unbiased = eps, momentum, unbiased
        self.weight, self.bias = nn.Parameter(torch.ones(c)), nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        dims = (0,) + tuple(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            mean, var = x.mean(dims), x.var(dims, unbiased=False)
            n = x.numel() // x.shape[1]
            with torch.no_grad():
                stored = var * n / (n - 1) if self.unbiased else var
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(stored, self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return self.weight.view(shape) * x_hat + self.bias.view(shape)


class PlainAttribute(Right):
    def __init__(self, c):
        super().__init__(c)
        del self.running_mean
        self.running_mean = torch.zeros(c)        # not a buffer: missing from state_dict


def test_batch_norm_module():
    assert ch03.check_batch_norm_module(Right, verbose=False)
    assert not ch03.check_batch_norm_module(lambda c: Right(c, unbiased=False), verbose=False)
    assert not ch03.check_batch_norm_module(PlainAttribute, verbose=False)
    assert not ch03.check_batch_norm_module(lambda c: Right(c, momentum=0.9), verbose=False)
