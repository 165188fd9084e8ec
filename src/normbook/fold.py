r"""Folding BatchNorm into the preceding convolution or linear layer, for inference.

In evaluation mode a BatchNorm is a fixed per-channel affine map,
``y = (z - running_mean) * s + beta`` with ``s = gamma / sqrt(running_var + eps)``. If ``z = W x + b`` comes
straight from a convolution or linear layer, the two compose into one layer with

    W' = W * s   (scaling output channel c of W by s_c)        b' = (b - running_mean) * s + beta

(``torch.nn.utils.fusion.fuse_conv_bn_weights`` uses the same formula). The folded model computes the same
function with one layer fewer per block, and never looks at batch statistics again.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .batchnorm import is_batchnorm

__all__ = ["fold_batchnorm"]

_FOLDABLE_INTO = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _can_fold(layer: nn.Module, bn: nn.Module) -> bool:
    if not (isinstance(layer, _FOLDABLE_INTO) and is_batchnorm(bn)):
        return False
    out_features = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    return (not isinstance(layer.weight, nn.parameter.UninitializedParameter)
            and bn.running_mean is not None and bn.running_var is not None  # else eval uses batch statistics
            and bn.num_features == out_features)


@torch.no_grad()
def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn`` into ``layer``'s weight and bias, in place (arithmetic in float64)."""
    w = layer.weight.double()
    b = layer.bias.double() if layer.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64,
                                                                        device=w.device)
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = bn.bias.double() if bn.bias is not None else 0.0
    new_w = w * scale.reshape([-1] + [1] * (w.dim() - 1))
    new_b = (b - bn.running_mean.double()) * scale + shift
    layer.weight.copy_(new_w.to(layer.weight.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(layer.weight.dtype))
    else:
        layer.bias.copy_(new_b.to(layer.bias.dtype))


def _fold_sequential(module: nn.Module) -> None:
    for child in module.children():
        _fold_sequential(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules.keys())
        for prev, name in zip(names, names[1:]):
            if _can_fold(module._modules[prev], module._modules[name]):
                _fold_into(module._modules[prev], module._modules[name])
                module._modules[name] = nn.Identity()  # keeps the indices (and names) of the other layers


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Return an evaluation-mode deep copy of ``model`` in which every BatchNorm (normbook's or torch's) that
    directly follows a Conv1d/2d/3d or Linear inside an ``nn.Sequential`` (at any depth) is folded into that
    layer's weight and bias and replaced by ``nn.Identity``. ``model`` itself is left untouched.

    A BatchNorm stays (unfolded, in eval mode) when nothing precedes it that it can fold into: first in its
    Sequential, after an activation or pooling layer, after a layer whose output size differs from its number
    of features, or when it has no running statistics (``track_running_stats=False``: it normalizes with batch
    statistics even in evaluation). For a Linear the BatchNorm is assumed to normalize the Linear's output
    features, i.e. a BatchNorm1d on an (N, C) input, as in every model of this book.
    """
    folded = copy.deepcopy(model)
    _fold_sequential(folded)
    return folded.eval()
