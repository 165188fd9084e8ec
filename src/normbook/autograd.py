r"""BatchNorm and LayerNorm as ``torch.autograd.Function``\ s with hand-derived, closed-form backward passes.

``normbook.functional`` lets autograd differentiate the forward pass op by op: it keeps every intermediate
(x - mean, its square, x_hat, ...) and walks the graph back node by node. Here we derive the whole gradient once,
on paper, and write it as three lines (cs231n's "alternative" backward). The functions take the same arguments as
their ``normbook.functional`` / ``torch.nn.functional`` namesakes and give the same results and gradients.

Derivation (BatchNorm; one channel, so every sum runs over the m = N * prod(S) values of that channel)
--------------------------------------------------------------------------------------------------------
Forward::

    mu = 1/m sum_i x_i                      var = 1/m sum_i (x_i - mu)^2
    r  = (var + eps)^(-1/2)                 (the inverse standard deviation, "invstd")
    x_hat_i = (x_i - mu) * r                y_i = gamma * x_hat_i + beta

Given the upstream gradient dy_i = dL/dy_i:

* ``dbeta = sum_i dy_i`` and ``dgamma = sum_i dy_i * x_hat_i`` (beta and gamma touch every y_i).
* ``dx_hat_i = gamma * dy_i``.
* x_j reaches the loss through x_hat_j directly and through mu and var, which every x_hat_i depends on::

      d x_hat_i / d x_j = r * (delta_ij - 1/m) - (x_i - mu) * r^3 * (x_j - mu) / m
                        = r / m * (m * delta_ij - 1 - x_hat_i * x_hat_j)

  (using d mu / d x_j = 1/m, d var / d x_j = 2 (x_j - mu) / m, since sum_i (x_i - mu) = 0, and
  d r / d var = -r^3 / 2).
* Chain rule, summing over i::

      dx_j = sum_i dx_hat_i * d x_hat_i / d x_j
           = gamma * r / m * (m * dy_j - sum_i dy_i - x_hat_j * sum_i dy_i * x_hat_i)

That is the closed form: ``dx = gamma * invstd / m * (m * dy - dbeta - x_hat * dgamma)``. It reuses the two sums
we need for dgamma and dbeta anyway, so the backward reads dy and x once more and writes dx: no graph, no
intermediates. In evaluation mode mu and var are constants (the running statistics) and ``dx = gamma * invstd * dy``.

LayerNorm is the same computation over the D = prod(normalized_shape) values of one row instead of one channel,
with one difference: gamma varies *within* the reduction, so it cannot be pulled out of the sums. With
``g = gamma * dy`` (elementwise)::

    dx = invstd / D * (D * g - sum(g) - x_hat * sum(g * x_hat))        (sums over the normalized dims)
    dgamma = sum over rows of dy * x_hat        dbeta = sum over rows of dy

What each Function saves for backward: the centred input x - mu (one tensor of the input's size, in float32 for
float16/bfloat16 inputs), gamma, and the per-channel (per-row) invstd; x_hat = (x - mu) * invstd is recomputed in
backward. ATen's kernels save about as much: the input itself plus mean and invstd. Saving x - mu rather than x
keeps the gradient accurate when the mean is large (x - mu is computed once, carefully, in the forward pass).

Double backward is not supported
--------------------------------
The backward passes here are differentiated only once. They compute dx from x - mu and invstd, tensors made in
``forward`` without a graph, so a graph built through them (``create_graph=True``, as for a gradient penalty or
a Hessian-vector product) would miss every path from those tensors back to x, mu and var: the second derivative
would be wrong, with no error. So each backward raises a RuntimeError when it is asked to build a graph
(:func:`_check_first_order`). ``normbook.functional`` is plain tensor code that autograd differentiates to any
order (it passes ``torch.autograd.gradgradcheck``): use it, or ``backward="autograd"`` in ``normbook.nn``, for
higher derivatives.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import functional as _F

__all__ = ["batch_norm", "layer_norm", "BatchNormFunction", "LayerNormFunction"]


def _check_first_order(op: str, alternative: str) -> None:
    """Raise RuntimeError if the backward pass running now is asked to build a graph (``create_graph=True``).

    Called first thing in the ``backward`` of every custom Function of normbook whose gradient formula uses
    tensors computed in ``forward`` without a graph (here, in ``normbook.distributed`` and ``normbook.kernels``).
    Autograd runs a backward function with grad mode on exactly when the caller passed ``create_graph=True``,
    i.e. when the gradient it returns is to be differentiated again; the graph such a backward would build is
    incomplete, so we refuse it. We do not use ``torch.autograd.function.once_differentiable``: it defers the
    error to a node that hangs off detached copies of the gradients, and ``torch.autograd.grad(..., inputs)``
    never visits that node (it is on no path to the inputs), so the wrong second derivative still comes back
    silently; nor does it raise when the incoming gradient does not require grad.
    """
    if torch.is_grad_enabled():
        raise RuntimeError(f"{op}: double backward is not supported (backward was called with create_graph=True). "
                           f"Its backward uses tensors saved from the forward pass without a graph, so the "
                           f"gradient it returns cannot be differentiated again; use {alternative}, which "
                           f"autograd differentiates to any order")


class BatchNormFunction(torch.autograd.Function):
    """Batch normalization with the closed-form backward derived in this module's docstring.

    forward(input (N, C, *S), weight (C,) or None, bias (C,) or None, running_mean, running_var, training,
    momentum, eps) -> output (N, C, *S). Saves x - mean (N, C, *S), weight (C,), invstd (1, C, 1, ...).
    backward(dy (N, C, *S)) -> dx (N, C, *S), dweight (C,), dbias (C,), None for the rest. Differentiable once:
    backward with ``create_graph=True`` raises (see the module docstring); ``normbook.functional.batch_norm``
    has exact higher derivatives.
    """

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, training, momentum, eps):
        shape = _F._channel_shape(input)
        x = input.to(_F._opmath(input.dtype))
        if training:
            dims = [0] + list(range(2, input.dim()))
            mean, var, centered = _F._moments(x, dims)
            _F._update_running_stats(running_mean, running_var, mean.flatten(), var.flatten(),
                                     input.numel() // max(input.shape[1], 1), momentum)
        else:
            var = running_var.reshape(shape).to(x.dtype)
            centered = x - running_mean.reshape(shape).to(x.dtype)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(centered, weight, invstd)
        ctx.training = training
        ctx.input_dtype = input.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return _F._affine(centered * invstd, weight, bias, shape).to(input.dtype)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.autograd.BatchNormFunction",
                           "normbook.functional.batch_norm (normbook.nn: backward='autograd')")
        centered, weight, invstd = ctx.saved_tensors
        shape = _F._channel_shape(centered)
        dims = [0] + list(range(2, centered.dim()))
        x_hat = centered * invstd                               # recomputed, not saved
        dy = dy.to(centered.dtype)
        dbeta = dy.sum(dim=dims, keepdim=True)                  # (1, C, 1, ...)
        dgamma = (dy * x_hat).sum(dim=dims, keepdim=True)       # (1, C, 1, ...)
        gamma = weight.reshape(shape).to(centered.dtype) if weight is not None else 1.0
        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:
            if ctx.training:
                m = max(centered.numel() // centered.shape[1], 1)   # values per channel
                dx = gamma * invstd / m * (m * dy - dbeta - x_hat * dgamma)
            else:
                dx = gamma * invstd * dy
            dx = dx.to(ctx.input_dtype)
        if weight is not None and ctx.needs_input_grad[1]:
            dweight = dgamma.reshape(weight.shape).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            dbias = dbeta.flatten().to(ctx.bias_dtype)
        return dx, dweight, dbias, None, None, None, None, None


class LayerNormFunction(torch.autograd.Function):
    """Layer normalization with the closed-form backward derived in this module's docstring.

    forward(input (*, *normalized_shape), normalized_shape, weight, bias, eps) -> output of the input's shape.
    Saves x - mean (the input's shape), weight, invstd (*, 1, ..., 1).
    backward(dy) -> dx, dweight (normalized_shape), dbias (normalized_shape), None, None. Differentiable once:
    backward with ``create_graph=True`` raises; ``normbook.functional.layer_norm`` has exact higher derivatives.
    """

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, bias, eps):
        x = input.to(_F._opmath(input.dtype))
        dims = list(range(input.dim() - len(normalized_shape), input.dim()))
        mean, var, centered = _F._moments(x, dims)
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(centered, weight, invstd)
        ctx.normalized_shape = normalized_shape
        ctx.input_dtype = input.dtype
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return _F._affine(centered * invstd, weight, bias, normalized_shape).to(input.dtype)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.autograd.LayerNormFunction",
                           "normbook.functional.layer_norm (normbook.nn: backward='autograd')")
        centered, weight, invstd = ctx.saved_tensors
        k = len(ctx.normalized_shape)
        norm_dims = list(range(centered.dim() - k, centered.dim()))   # the normalized (trailing) dims
        row_dims = list(range(centered.dim() - k))                    # the leading dims: one row each
        x_hat = centered * invstd
        dy = dy.to(centered.dtype)
        g = dy * weight.to(centered.dtype) if weight is not None else dy   # gradient w.r.t. x_hat
        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:
            d = math.prod(ctx.normalized_shape)                # values per row
            dx = invstd / d * (d * g - g.sum(dim=norm_dims, keepdim=True)
                               - x_hat * (g * x_hat).sum(dim=norm_dims, keepdim=True))
            dx = dx.to(ctx.input_dtype)
        if weight is not None and ctx.needs_input_grad[2]:
            dweight = _sum_rows(dy * x_hat, row_dims).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[3]:
            dbias = _sum_rows(dy, row_dims).to(ctx.bias_dtype)
        return dx, None, dweight, dbias, None


def _sum_rows(t: Tensor, row_dims) -> Tensor:
    return t.sum(dim=row_dims) if row_dims else t


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``normbook.functional.batch_norm`` (same arguments, checks, results and in-place running-statistics
    update) with the closed-form backward of :class:`BatchNormFunction` (differentiable once)."""
    _F._check_momentum(momentum, "batch_norm")
    _F._check_batch_norm_args(input, running_mean, running_var, weight, bias, training, eps)
    return BatchNormFunction.apply(input, weight, bias, running_mean, running_var, training, momentum, eps)


def layer_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """``normbook.functional.layer_norm`` with the closed-form backward of :class:`LayerNormFunction`
    (differentiable once)."""
    _F._check_floating(input, "layer_norm")
    shape = _F._as_shape(normalized_shape)
    _F._check_normalized_shape(input, shape, weight=weight, bias=bias)
    _F._check_param_dtypes(input, "layer_norm", weight=weight, bias=bias)
    return LayerNormFunction.apply(input, shape, weight, bias, eps)
