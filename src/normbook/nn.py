r"""Normalization modules that mirror ``torch.nn`` (2.14): same classes, constructor arguments and defaults,
parameter and buffer names, ``state_dict``, train/eval behaviour and ``repr``. A ``state_dict`` moves between
``normbook.nn.X`` and ``torch.nn.X`` both ways.

The hierarchy follows ``torch/nn/modules/batchnorm.py`` and ``instancenorm.py``::

    _NormBase            parameters weight, bias; buffers running_mean, running_var, num_batches_tracked
    |-- _BatchNorm       forward: batch statistics in training, running statistics in evaluation
    |   |-- BatchNorm1d / BatchNorm2d / BatchNorm3d       (only check the number of dims)
    |-- _InstanceNorm    forward: per-example statistics; unbatched inputs
        |-- InstanceNorm1d / InstanceNorm2d / InstanceNorm3d
    LayerNorm, GroupNorm, RMSNorm                         (no running statistics)

**Choosing the backward pass.** ``BatchNorm1d/2d/3d`` and ``LayerNorm`` take a keyword-only
``backward="autograd"`` (the default: autograd differentiates ``normbook.functional``) or
``backward="closed_form"`` (the hand-derived gradient of ``normbook.autograd``). It is a plain attribute, so it
can be changed later (``bn.backward = "closed_form"``) or for a whole model with :func:`set_backward`; it is not
part of the ``state_dict``, and positional arguments are exactly torch's::

    bn = normbook.nn.BatchNorm2d(64, backward="closed_form")
    model = normbook.nn.set_backward(model, "closed_form")   # every normbook BatchNorm/LayerNorm in model
"""
from __future__ import annotations

import numbers
import warnings
from typing import List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Module, Parameter, init

from . import autograd as _autograd
from . import functional as F

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
           "LayerNorm", "GroupNorm", "RMSNorm", "set_backward"]

_shape_t = Union[int, List[int], torch.Size]
_BACKWARDS = ("autograd", "closed_form")


def _check_backward(backward: str) -> str:
    if backward not in _BACKWARDS:
        raise ValueError(f"backward must be 'autograd' or 'closed_form', got {backward!r}")
    return backward


class _NormBase(Module):
    """Common base of _BatchNorm and _InstanceNorm: holds the parameters and the running-statistics buffers.

    Parameters (when ``affine``): weight (C,) = 1 and bias (C,) = 0 (bias absent when ``bias=False``).
    Buffers (when ``track_running_stats``): running_mean (C,) = 0, running_var (C,) = 1, and
    num_batches_tracked () = 0, a long counter of the training batches seen (used by ``momentum=None``).
    """

    _version = 2  # version 2 added num_batches_tracked; see _load_from_state_dict
    __constants__ = ["track_running_stats", "momentum", "eps", "num_features", "affine"]

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if self.affine:
            self.weight = Parameter(torch.empty(num_features, **factory_kwargs))
            if bias:
                self.bias = Parameter(torch.empty(num_features, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory_kwargs))
            self.register_buffer("running_var", torch.ones(num_features, **factory_kwargs))
            # a counter: always long, whatever dtype the module is built with
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input_dim(self, input: Tensor) -> None:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ("{num_features}, eps={eps}, momentum={momentum}, affine={affine}, bias={use_bias}, "
                "track_running_stats={track_running_stats}".format(**self.__dict__,
                                                                   use_bias=self.bias is not None))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Checkpoints from before version 2 have no num_batches_tracked: keep our own counter (or 0).
        version = local_metadata.get("version", None)
        if (version is None or version < 2) and self.track_running_stats:
            key = prefix + "num_batches_tracked"
            if key not in state_dict:
                state_dict[key] = (self.num_batches_tracked
                                   if self.num_batches_tracked is not None
                                   and self.num_batches_tracked.device != torch.device("meta")
                                   else torch.tensor(0, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class _BatchNorm(_NormBase):
    """Batch normalization over the channel dim 1 of an (N, C, *S) input; see ``normbook.functional.batch_norm``.

    Training: normalize with the batch's mean and biased variance per channel; if ``track_running_stats``, count
    the batch in num_batches_tracked and move running_mean/running_var towards the batch's mean and unbiased
    variance by ``momentum`` (or by 1 / num_batches_tracked when ``momentum=None``: a cumulative average).
    Evaluation: normalize with running_mean/running_var (batch statistics if there are none).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, *, bias: bool = True,
                 backward: str = "autograd") -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype,
                         bias=bias)
        self.backward = _check_backward(backward)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        exponential_average_factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # cumulative moving average: the k-th batch gets weight 1/k
                exponential_average_factor = 1.0 / float(self.num_batches_tracked)
        # batch statistics in training, and in evaluation when there are no running statistics
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        # buffers are passed when they are to be updated (training and tracking) or used (evaluation)
        use_buffers = not self.training or self.track_running_stats
        batch_norm = _autograd.batch_norm if self.backward == "closed_form" else F.batch_norm
        return batch_norm(input,
                          self.running_mean if use_buffers else None,
                          self.running_var if use_buffers else None,
                          self.weight, self.bias, bn_training, exponential_average_factor, self.eps)

    def extra_repr(self) -> str:
        extra = "" if self.backward == "autograd" else f", backward={self.backward!r}"
        return super().extra_repr() + extra


class BatchNorm1d(_BatchNorm):
    """BatchNorm over an (N, C) or (N, C, L) input: one mean and variance per feature C."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchNorm2d(_BatchNorm):
    """BatchNorm over an (N, C, H, W) input: one mean and variance per channel, over N * H * W values."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class BatchNorm3d(_BatchNorm):
    """BatchNorm over an (N, C, D, H, W) input: one mean and variance per channel, over N * D * H * W values."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 5:
            raise ValueError(f"expected 5D input (got {input.dim()}D input)")


class _InstanceNorm(_NormBase):
    """Instance normalization: each (example, channel) normalized over its spatial dims; see
    ``normbook.functional.instance_norm``. Defaults differ from BatchNorm: ``affine=False``,
    ``track_running_stats=False``. Accepts unbatched inputs (C, *S). ``num_batches_tracked`` is never
    incremented and ``momentum=None`` freezes the running statistics (torch's behaviour).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = False,
                 track_running_stats: bool = False, device=None, dtype=None, *, bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype,
                         bias=bias)

    def _get_no_batch_dim(self) -> int:
        raise NotImplementedError

    def _handle_no_batch_input(self, input: Tensor) -> Tensor:
        return self._apply_instance_norm(input.unsqueeze(0)).squeeze(0)

    def _apply_instance_norm(self, input: Tensor) -> Tensor:
        return F.instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training or not self.track_running_stats,
                               self.momentum if self.momentum is not None else 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # Before version 1 (torch 0.4) instance norms always saved running statistics.
        version = local_metadata.get("version", None)
        if version is None and not self.track_running_stats:
            keys = [prefix + name for name in ("running_mean", "running_var") if prefix + name in state_dict]
            if keys:
                klass = self.__class__.__name__
                error_msgs.append(
                    "Unexpected running stats buffer(s) {names} for {klass} with track_running_stats=False. If "
                    "state_dict is a checkpoint saved before 0.4.0, this may be expected because {klass} does not "
                    "track running stats by default since 0.4.0. Please remove these keys from state_dict. If the "
                    "running stats are actually needed, instead set track_running_stats=True in {klass} to enable "
                    "them. See the documentation of {klass} for details.".format(
                        names=" and ".join(f'"{k}"' for k in keys), klass=klass))
                for key in keys:
                    state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        feature_dim = input.dim() - self._get_no_batch_dim()
        if input.size(feature_dim) != self.num_features:
            if self.affine:
                raise ValueError(f"expected input's size at dim={feature_dim} to match num_features"
                                 f" ({self.num_features}), but got: {input.size(feature_dim)}.")
            warnings.warn(f"input's size at dim={feature_dim} does not match num_features. You can silence this "
                          "warning by not passing in num_features, which is not used because affine=False",
                          stacklevel=2)
        if input.dim() == self._get_no_batch_dim():
            return self._handle_no_batch_input(input)
        return self._apply_instance_norm(input)


class InstanceNorm1d(_InstanceNorm):
    """InstanceNorm over an (N, C, L) or unbatched (C, L) input."""

    def _get_no_batch_dim(self) -> int:
        return 2

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3):
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class InstanceNorm2d(_InstanceNorm):
    """InstanceNorm over an (N, C, H, W) or unbatched (C, H, W) input."""

    def _get_no_batch_dim(self) -> int:
        return 3

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (3, 4):
            raise ValueError(f"expected 3D or 4D input (got {input.dim()}D input)")


class InstanceNorm3d(_InstanceNorm):
    """InstanceNorm over an (N, C, D, H, W) or unbatched (C, D, H, W) input."""

    def _get_no_batch_dim(self) -> int:
        return 4

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (4, 5):
            raise ValueError(f"expected 4D or 5D input (got {input.dim()}D input)")


class LayerNorm(Module):
    """Layer normalization over the trailing ``normalized_shape`` dims; see ``normbook.functional.layer_norm``.

    Parameters (when ``elementwise_affine``): weight = 1 and bias = 0, each of shape normalized_shape (no bias
    when ``bias=False``). No buffers: the same computation in training and evaluation.
    """

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(self, normalized_shape: _shape_t, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None, *, backward: str = "autograd") -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape: Tuple[int, ...] = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.backward = _check_backward(backward)
        if self.elementwise_affine:
            self.weight = Parameter(torch.empty(self.normalized_shape, **factory_kwargs))
            if bias:
                self.bias = Parameter(torch.empty(self.normalized_shape, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        layer_norm = _autograd.layer_norm if self.backward == "closed_form" else F.layer_norm
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        extra = "" if self.backward == "autograd" else f", backward={self.backward!r}"
        return ("{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None) + extra)


class GroupNorm(Module):
    """Group normalization: channels split into ``num_groups`` groups, each (example, group) normalized over its
    channels and spatial dims; see ``normbook.functional.group_norm``. Parameters (when ``affine``): weight (C,) = 1,
    bias (C,) = 0. No buffers.
    """

    __constants__ = ["num_groups", "num_channels", "eps", "affine"]

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, device=None,
                 dtype=None, *, bias: bool = True) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if self.affine:
            self.weight = Parameter(torch.empty(num_channels, **factory_kwargs))
            if bias:
                self.bias = Parameter(torch.empty(num_channels, **factory_kwargs))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return "{num_groups}, {num_channels}, eps={eps}, affine={affine}, bias={use_bias}".format(
            **self.__dict__, use_bias=self.bias is not None)


class RMSNorm(Module):
    """Root-mean-square normalization over the trailing ``normalized_shape`` dims; see
    ``normbook.functional.rms_norm``. Parameter (when ``elementwise_affine``): weight = 1 of shape
    normalized_shape. ``eps=None`` means the machine epsilon of the arithmetic dtype (1.19e-07 for
    float16/bfloat16/float32).
    """

    __constants__ = ["normalized_shape", "eps", "elementwise_affine"]

    def __init__(self, normalized_shape: _shape_t, eps: Optional[float] = None, elementwise_affine: bool = True,
                 device=None, dtype=None) -> None:
        factory_kwargs = {"device": device, "dtype": dtype}
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape: Tuple[int, ...] = tuple(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if self.elementwise_affine:
            self.weight = Parameter(torch.empty(self.normalized_shape, **factory_kwargs))
        else:
            self.register_parameter("weight", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.elementwise_affine:
            init.ones_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return "{normalized_shape}, eps={eps}, elementwise_affine={elementwise_affine}".format(**self.__dict__)


def set_backward(model: Module, backward: str) -> Module:
    """Set ``backward`` ("autograd" or "closed_form") on every normbook BatchNorm and LayerNorm inside
    ``model`` (in place) and return ``model``."""
    _check_backward(backward)
    for module in model.modules():
        if isinstance(module, (_BatchNorm, LayerNorm)):
            module.backward = backward
    return model
