"""Chapter 3's checkers: a right implementation passes, a wrong one fails."""
import torch
from torch import nn

from normbook.book.exercises import ch03


def dims_right(ndim, channel_dim):
    return tuple(d for d in range(ndim) if d != channel_dim % ndim)


def test_reduction_dims():
    assert ch03.check_reduction_dims(dims_right, verbose=False)
    # the page's channels-first answer: right for channel_dim=1 only
    result = ch03.check_reduction_dims(lambda ndim, c: (0,) + tuple(range(2, ndim)), verbose=False)
    assert not result and all("channel_dim=1" not in label for label, _ in result.failures)
    # a negative channel_dim compared as it is: every dim stays in, the mean has no channel dim
    result = ch03.check_reduction_dims(lambda ndim, c: tuple(d for d in range(ndim) if d != c), verbose=False)
    assert not result and all("channel_dim=-" in label for label, _ in result.failures)
    assert not ch03.check_reduction_dims(lambda ndim, c: tuple(d for d in range(1, ndim) if d != c % ndim),
                                         verbose=False)                                   # the batch dim kept
    assert not ch03.check_reduction_dims(lambda ndim, c: [0.0], verbose=False)           # not ints


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


class TorchInside(nn.BatchNorm1d):  # the right numbers from torch's layer
    def _check_input_dim(self, input):
        pass


def test_batch_norm_module_rejects_torchs_layer():
    result = ch03.check_batch_norm_module(TorchInside, verbose=False)
    assert not result and all("ForbiddenCall" in message for _, message in result.failures)
    assert ch03.check_batch_norm_module.forbids == ("torch-norm",)
    assert ch03.check_batch_norm_module(Right, verbose=False)  # torch's layers restored
