r"""The normalizations as plain tensor code, with the signatures of ``torch.nn.functional``.

Every function here is a few lines of ordinary tensor arithmetic that you can read top to bottom; autograd
differentiates it for us, to any order (``normbook.autograd`` has the hand-derived backward passes, which can be
differentiated only once; use these functions for second derivatives, e.g. a gradient penalty). They follow
``torch.nn.functional`` (torch 2.14) in arguments, results and failures:

====================  ===========================================  ================================
function              statistics over (for an (N, C, *S) input)    running statistics
====================  ===========================================  ================================
``batch_norm``        N and S, one mean/var per channel            updated in place when training
``instance_norm``     S, one mean/var per (example, channel)       updated in place when given
``group_norm``        C/G channels and S, per (example, group)     none
``layer_norm``        the trailing ``normalized_shape`` dims       none
``rms_norm``          the trailing dims, root mean square only     none
====================  ===========================================  ================================

Three rules hold throughout.

* **Two-pass variance.** We compute the mean first and then the mean of ``(x - mean)**2`` (with a correction
  for the rounding of the mean, see ``_moments``). The one-pass formula ``E[x^2] - E[x]^2`` subtracts two nearly
  equal numbers when the mean is large compared to the spread: for ``1e4 + N(0, 1)`` in float32, ``E[x^2] ~ 1e8``
  carries a rounding error near 8, far above the variance 1 we want.
* **Statistics in opmath.** float16/bfloat16 inputs are upcast to float32 for the arithmetic (as ATen does); the
  result is cast back to the input's dtype, and running statistics stay in their own dtype (float32 in the modules).
* **Biased variance to normalize, unbiased variance into ``running_var``.** A batch of n values per channel is
  normalized with ``sum((x - mean)**2) / n`` while ``running_var`` receives ``sum((x - mean)**2) / (n - 1)``.
"""
from __future__ import annotations

import numbers
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm"]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------------------------------------------
# Checks shared by the functions here, by normbook.autograd and by normbook.nn
# --------------------------------------------------------------------------------------------------------------
def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype the arithmetic runs in: float32 for float16/bfloat16, the dtype itself otherwise."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _check_floating(input: Tensor, op: str) -> None:
    if not input.is_floating_point():
        raise TypeError(f"{op} expected a floating-point input (float16, bfloat16, float32 or float64), got an "
                        f"input of dtype {input.dtype}; convert it first, e.g. with input.float()")


def _check_param_dtypes(input: Tensor, op: str, **params: Optional[Tensor]) -> None:
    """Parameters and buffers share the input's dtype, except that float16/bfloat16 inputs may use float32 ones
    (the mixed-precision case ATen allows: statistics in float32, output in the input's dtype)."""
    for name, p in params.items():
        if p is None or p.dtype == input.dtype:
            continue
        if input.dtype in _LOW_PRECISION and p.dtype == torch.float32:
            continue
        raise RuntimeError(f"{op}: mixed dtype: expected {name} to have the input's dtype {input.dtype}"
                           + (" or torch.float32" if input.dtype in _LOW_PRECISION else "")
                           + f", but got {name} of dtype {p.dtype}")


def _check_per_channel(num_channels: int, **tensors: Optional[Tensor]) -> None:
    """Per-channel vectors must hold one value per channel (torch's wording and order of checks)."""
    for name, t in tensors.items():
        if t is not None and t.numel() != num_channels:
            raise RuntimeError(f"{name} should contain {num_channels} elements not {t.numel()}")


def _verify_batch_size(size: torch.Size) -> None:
    """Batch statistics need more than one value per channel: N * prod(spatial) > 1 (else x_hat is all 0)."""
    values_per_channel = size[0]
    for s in size[2:]:
        values_per_channel *= s
    if values_per_channel == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {size}")


def _verify_spatial_size(size: torch.Size) -> None:
    """Instance statistics need more than one spatial element per (example, channel)."""
    spatial = 1
    for s in size[2:]:
        spatial *= s
    if spatial == 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {size}")


def _as_shape(normalized_shape: Union[int, Sequence[int]]) -> tuple:
    if isinstance(normalized_shape, numbers.Integral):
        return (int(normalized_shape),)
    return tuple(normalized_shape)


def _check_normalized_shape(input: Tensor, shape: tuple, **params: Optional[Tensor]) -> None:
    if len(shape) == 0 or tuple(input.shape[input.dim() - len(shape):]) != shape or input.dim() < len(shape):
        expected = ", ".join(str(s) for s in shape)
        raise RuntimeError(f"Given normalized_shape={list(shape)}, expected input with shape [*, {expected}], "
                           f"but got input of size{list(input.shape)}")
    for name, p in params.items():
        if p is not None and tuple(p.shape) != shape:
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but got {name} of shape "
                               f"{list(p.shape)} and normalized_shape = {list(shape)}")


def _channel_shape(input: Tensor) -> List[int]:
    """(1, C, 1, ..., 1): the shape that broadcasts a per-channel vector against an (N, C, *S) input."""
    return [1, input.shape[1]] + [1] * (input.dim() - 2)


def _affine(x_hat: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], shape) -> Tensor:
    """y = x_hat * weight + bias, each optional, broadcast with ``shape``."""
    if weight is not None:
        x_hat = x_hat * weight.reshape(shape).to(x_hat.dtype)
    if bias is not None:
        x_hat = x_hat + bias.reshape(shape).to(x_hat.dtype)
    return x_hat


def _moments(x: Tensor, dims) -> tuple:
    """Mean, biased variance and centred input ``x - mean`` over ``dims`` (kept as size-1 dims).

    The corrected two-pass algorithm (Chan, Golub & LeVeque 1983): a first pass gives the mean ``m``, rounded;
    the centred values ``c = x - m`` are small, so their own mean ``dm`` (the rounding error of m) and their
    mean square are accurate, and ``var = mean(c^2) - dm^2`` subtracts only a tiny term. Nothing cancels even
    when the mean is 10^4 times the spread, and ``c - dm`` is the centred input without the rounding of m.
    """
    m = x.mean(dim=dims, keepdim=True)
    c = x - m
    dm = c.mean(dim=dims, keepdim=True)
    var = ((c * c).mean(dim=dims, keepdim=True) - dm * dm).clamp_min(0)
    return m + dm, var, c - dm


@torch.no_grad()
def _update_running_stats(running_mean: Optional[Tensor], running_var: Optional[Tensor], mean: Tensor,
                          var: Tensor, n: int, momentum: float) -> None:
    """In place: running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance
    var * n / (n - 1). ``mean`` and ``var`` hold one value per channel; ``n`` values went into each."""
    if n == 0:  # an empty batch carries no information (ATen leaves the buffers alone too)
        return
    if running_mean is not None:
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
    if running_var is not None:
        unbiased = var * (n / (n - 1)) if n > 1 else var
        running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)


def _check_momentum(momentum, op: str) -> None:
    """momentum is a number, as torch.nn.functional requires (it raises TypeError for None in every mode)."""
    if not isinstance(momentum, (numbers.Real, Tensor)):
        raise TypeError(f"{op}(): argument 'momentum' must be float, not {type(momentum).__name__}. "
                        f"momentum=None (a cumulative average) is an option of the normalization modules, which "
                        f"pass 1 / num_batches_tracked here")


def _check_batch_norm_args(input: Tensor, running_mean, running_var, weight, bias, training: bool, eps: float,
                           op: str = "batch_norm") -> None:
    _check_floating(input, op)
    if input.dim() < 2:
        raise ValueError(f"{op} expected an input of at least 2 dims (N, C, *) (got {input.dim()}D input)")
    if training:
        _verify_batch_size(input.size())
    if training and eps <= 0.0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    if eps < 0.0:
        raise ValueError(f"batch_norm eps must be non-negative, but got {eps}")
    if not training and (running_mean is None or running_var is None):
        raise RuntimeError("running_mean and running_var must be defined in evaluation mode (training=False); "
                           "pass training=True to normalize with batch statistics")
    _check_per_channel(input.shape[1], running_mean=running_mean, running_var=running_var, weight=weight,
                       bias=bias)
    _check_param_dtypes(input, op, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)


# --------------------------------------------------------------------------------------------------------------
# The normalizations
# --------------------------------------------------------------------------------------------------------------
def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Batch normalization (Ioffe & Szegedy 2015), as ``torch.nn.functional.batch_norm``.

    Inputs:
    - input: (N, C) or (N, C, *S), e.g. (N, C, L) or (N, C, H, W); floating point.
    - running_mean, running_var: (C,) or None. When ``training`` they are updated **in place**:
      ``running_mean = (1 - momentum) * running_mean + momentum * mean`` and the same for ``running_var`` with the
      *unbiased* batch variance. When not training they are the statistics used to normalize.
    - weight (gamma), bias (beta): (C,) or None (None means 1 and 0).
    - training: normalize with the batch's own statistics (True) or with the running ones (False).

    Returns y of the input's shape and dtype:
    ``y = (x - mean) / sqrt(var + eps) * weight + bias``, with mean and biased var taken per channel over the
    N * prod(S) values of that channel.
    """
    _check_momentum(momentum, "batch_norm")
    if input.dim() == 1 and input.numel() == 0 and input.is_floating_point():
        return input.clone()                   # torch returns an empty result for a 0-element 1-D input
    _check_batch_norm_args(input, running_mean, running_var, weight, bias, training, eps)
    shape = _channel_shape(input)              # (1, C, 1, ..., 1)
    x = input.to(_opmath(input.dtype))         # float32 arithmetic for float16/bfloat16
    if training:
        dims = [0] + list(range(2, input.dim()))   # every dim but the channel dim
        mean, var, centered = _moments(x, dims)    # (1, C, 1, ..., 1) twice, and x - mean
        _update_running_stats(running_mean, running_var, mean.flatten(), var.flatten(),
                              input.numel() // max(input.shape[1], 1), momentum)
    else:
        var = running_var.reshape(shape).to(x.dtype)
        centered = x - running_mean.reshape(shape).to(x.dtype)
    x_hat = centered * torch.rsqrt(var + eps)
    return _affine(x_hat, weight, bias, shape).to(input.dtype)


def instance_norm(input: Tensor, running_mean: Optional[Tensor] = None, running_var: Optional[Tensor] = None,
                  weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    r"""Instance normalization (Ulyanov et al. 2016), as ``torch.nn.functional.instance_norm``.

    Inputs:
    - input: (N, C, *S) with at least one spatial dim, e.g. (N, C, H, W).
    - running_mean, running_var: (C,) or None. With ``use_input_stats`` they are updated in place with the
      statistics averaged over the batch: ``running_mean = (1 - momentum) * running_mean + momentum *
      mean_n(mu_nc)`` (and the unbiased variances likewise). Without, they normalize the input.
    - weight, bias: (C,) or None.

    Returns y of the input's shape and dtype. Each (example, channel) slice of prod(S) values is normalized
    with its own mean and biased variance.
    """
    _check_momentum(momentum, "instance_norm")
    _check_floating(input, "instance_norm")
    if input.dim() < 3:
        raise ValueError(f"instance_norm expected an input of at least 3 dims (N, C, *S) "
                         f"(got {input.dim()}D input)")
    if use_input_stats:
        _verify_spatial_size(input.size())
    elif running_mean is None or running_var is None:
        raise RuntimeError("Expected running_mean and running_var to be defined when use_input_stats is false")
    _check_per_channel(input.shape[1], running_mean=running_mean, running_var=running_var, weight=weight,
                       bias=bias)
    _check_param_dtypes(input, "instance_norm", weight=weight, bias=bias, running_mean=running_mean,
                        running_var=running_var)
    shape = _channel_shape(input)
    x = input.to(_opmath(input.dtype))
    if use_input_stats:
        mean, var, centered = _moments(x, list(range(2, input.dim())))  # (N, C, 1, ..., 1) twice, x - mean
        spatial = input[0, 0].numel() if input.shape[0] * input.shape[1] > 0 else 0
        _update_running_stats(running_mean, running_var, mean.mean(0).flatten(),
                              var.mean(0).flatten(), spatial, momentum)
    else:
        var = running_var.reshape(shape).to(x.dtype)
        centered = x - running_mean.reshape(shape).to(x.dtype)
    x_hat = centered * torch.rsqrt(var + eps)
    return _affine(x_hat, weight, bias, shape).to(input.dtype)


def layer_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    r"""Layer normalization (Ba et al. 2016), as ``torch.nn.functional.layer_norm``.

    Inputs:
    - input: (*, *normalized_shape), e.g. (N, L, D) with normalized_shape (D,).
    - normalized_shape: the trailing dims to normalize over (an int means one dim).
    - weight, bias: of shape normalized_shape, or None: an elementwise affine map.

    Returns y of the input's shape and dtype: each row (one index into the leading dims) is normalized with its
    own mean and biased variance over the normalized dims. Same in training and evaluation.
    """
    _check_floating(input, "layer_norm")
    shape = _as_shape(normalized_shape)
    _check_normalized_shape(input, shape, weight=weight, bias=bias)
    _check_param_dtypes(input, "layer_norm", weight=weight, bias=bias)
    x = input.to(_opmath(input.dtype))
    dims = list(range(input.dim() - len(shape), input.dim()))
    mean, var, centered = _moments(x, dims)       # (*, 1, ..., 1) twice, and x - mean
    x_hat = centered * torch.rsqrt(var + eps)
    return _affine(x_hat, weight, bias, shape).to(input.dtype)


def group_norm(input: Tensor, num_groups: int, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Tensor:
    r"""Group normalization (Wu & He 2018), as ``torch.nn.functional.group_norm``.

    Inputs:
    - input: (N, C, *S) with C divisible by ``num_groups``.
    - weight, bias: (C,) or None: a per-channel affine map applied after normalizing.

    Returns y of the input's shape and dtype. The C channels are split into ``num_groups`` groups of C / G
    consecutive channels; each (example, group) is normalized with the mean and biased variance of its
    C / G * prod(S) values. One group is LayerNorm over (C, *S); C groups is InstanceNorm.
    """
    _check_floating(input, "group_norm")
    if input.dim() < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.dim()}")
    n, c = input.shape[:2]
    if num_groups <= 0 or c % num_groups != 0:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input "
                           f"of shape {list(input.shape)} and num_groups={num_groups}")
    spatial = 1
    for size in input.shape[2:]:
        spatial *= size
    if c == 0:
        raise RuntimeError(f"Expected number of channels to be greater than 0, got {c}")
    if spatial == 0:
        raise RuntimeError(f"Expected HxW to be greater than 0, got {spatial}")
    values_per_group = n * (c // num_groups) * spatial
    if values_per_group == 1:  # torch's check: N * C/G * prod(S) == 1, in training and in evaluation
        raise ValueError(f"Expected more than 1 value per group, got input size {input.size()} with "
                         f"num_groups={num_groups}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and (p.dim() != 1 or p.numel() != c):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in input, "
                               f"but got {name} of shape {list(p.shape)} and input of shape {list(input.shape)}")
    _check_param_dtypes(input, "group_norm", weight=weight, bias=bias)
    x = input.to(_opmath(input.dtype))
    grouped = x.reshape(n, num_groups, (c // num_groups) * spatial)   # (N, G, C/G * prod(S))
    mean, var, centered = _moments(grouped, [2])  # (N, G, 1) twice, and grouped - mean
    x_hat = (centered * torch.rsqrt(var + eps)).reshape(input.shape)
    return _affine(x_hat, weight, bias, _channel_shape(input)).to(input.dtype)


def rms_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
             eps: Optional[float] = None) -> Tensor:
    r"""Root-mean-square normalization (Zhang & Sennrich 2019), as ``torch.nn.functional.rms_norm``.

    Inputs:
    - input: (*, *normalized_shape).
    - weight: of shape normalized_shape, or None. There is no bias and no mean subtraction.
    - eps: None means the machine epsilon of the arithmetic dtype (float32 for float16/bfloat16/float32 inputs,
      so 1.19e-07; float64 for float64 inputs), as torch does.

    Returns ``y = x / sqrt(mean(x**2) + eps) * weight`` over the normalized dims, in the input's dtype.
    """
    _check_floating(input, "rms_norm")
    shape = _as_shape(normalized_shape)
    _check_normalized_shape(input, shape, weight=weight)
    opmath = _opmath(input.dtype)
    if eps is None:
        eps = torch.finfo(opmath).eps
    x = input.to(opmath)
    dims = list(range(input.dim() - len(shape), input.dim()))
    y = x * torch.rsqrt((x * x).mean(dim=dims, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.to(opmath)
    return y.to(input.dtype)   # one rounding at the end


# --------------------------------------------------------------------------------------------------------------
# Small-batch remedies (chapter 7): Batch Renormalization and Weight Standardization
# --------------------------------------------------------------------------------------------------------------
def batch_renorm(input: Tensor, running_mean: Tensor, running_var: Tensor, weight: Optional[Tensor] = None,
                 bias: Optional[Tensor] = None, training: bool = False, momentum: float = 0.1, eps: float = 1e-5,
                 r_max: float = 3.0, d_max: float = 5.0) -> Tensor:
    r"""Batch Renormalization (Ioffe 2017, Algorithm 1) of an (N, C) or (N, C, *S) input.

    With the batch's mean and standard deviation ``mu_B``, ``sigma_B = sqrt(var_B + eps)`` and the running ones
    ``mu = running_mean``, ``sigma = sqrt(running_var + eps)`` (all per channel, shape (C,)):

    - ``r = clip(sigma_B / sigma, 1/r_max, r_max)`` and ``d = clip((mu_B - mu) / sigma, -d_max, d_max)``, both
      treated as constants by autograd (``detach``: the paper's stop_gradient);
    - ``x_hat = (x - mu_B) / sigma_B * r + d``, ``y = weight * x_hat + bias``.

    Unclipped, ``x_hat = (x - mu) / sigma``: training normalizes as inference does. With ``r_max = 1`` and
    ``d_max = 0`` it is batch normalization. The running statistics are then updated in place exactly as by
    :func:`batch_norm` (mean and *unbiased* variance, weight ``momentum``), so they stay compatible with
    BatchNorm's buffers; the paper averages sigma itself. Not training: ``batch_norm`` with the running
    statistics. running_mean and running_var (C,) are required (float32 for float16/bfloat16 inputs).
    Returns y of the input's shape and dtype.
    """
    _check_momentum(momentum, "batch_renorm")
    if running_mean is None or running_var is None:
        raise RuntimeError("batch_renorm needs running_mean and running_var (its r and d compare the batch's "
                           "statistics with them)")
    if not r_max >= 1.0:
        raise ValueError(f"batch_renorm needs r_max >= 1, got {r_max}")
    if not d_max >= 0.0:
        raise ValueError(f"batch_renorm needs d_max >= 0, got {d_max}")
    if not training:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    _check_batch_norm_args(input, running_mean, running_var, weight, bias, training, eps, op="batch_renorm")
    shape = _channel_shape(input)
    x = input.to(_opmath(input.dtype))
    dims = [0] + list(range(2, input.dim()))
    mean, var, centered = _moments(x, dims)
    std = torch.sqrt(var + eps)
    with torch.no_grad():
        run_std = torch.sqrt(running_var.reshape(shape).to(x.dtype) + eps)
        r = (std / run_std).clamp(1.0 / r_max, r_max)
        d = ((mean - running_mean.reshape(shape).to(x.dtype)) / run_std).clamp(-d_max, d_max)
    _update_running_stats(running_mean, running_var, mean.detach().flatten(), var.detach().flatten(),
                          input.numel() // max(input.shape[1], 1), momentum)
    x_hat = centered / std * r + d
    return _affine(x_hat, weight, bias, shape).to(input.dtype)


def weight_standardization(weight: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Weight Standardization (Qiao et al. 2019): each output unit's weights, of shape (C_out, C_in, *k), get
    zero mean and unit variance over their fan-in: ``(W - mean) / sqrt(var + eps)``, mean and biased var taken
    over dims 1, ... . Returns a tensor of ``weight``'s shape (differentiable: the gradient flows through the
    standardization, as in the paper)."""
    if weight.dim() < 2:
        raise ValueError(f"weight_standardization expects a weight of at least 2 dims (C_out, fan-in...), got "
                         f"{weight.dim()}D")
    _check_floating(weight, "weight_standardization")
    w = weight.to(_opmath(weight.dtype))
    mean, var, centered = _moments(w, list(range(1, w.dim())))
    return (centered * torch.rsqrt(var + eps)).to(weight.dtype)


__all__ += ["batch_renorm", "weight_standardization"]
