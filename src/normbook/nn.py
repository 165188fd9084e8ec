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

The closed-form gradient is differentiable once: a backward pass with ``create_graph=True`` (a gradient penalty,
a Hessian-vector product) through a ``"closed_form"`` layer raises a RuntimeError; ``"autograd"`` layers have
exact higher derivatives.
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


# --------------------------------------------------------------------------------------------------------------
# BatchNorm in practice (chapter 7): frozen BN, Batch Renormalization, Ghost BN, weight-standardized convolution
# --------------------------------------------------------------------------------------------------------------
class FrozenBatchNorm2d(Module):
    """BatchNorm2d with fixed statistics and affine transform, as ``torchvision.ops.misc.FrozenBatchNorm2d``
    (torchvision's detection models use it when fine-tuning with small batches).

    Buffers (no parameters): weight (C,) = 1, bias (C,) = 0, running_mean (C,) = 0, running_var (C,) = 1.
    Input (N, C, H, W); output of the same shape, ``(x - running_mean) / sqrt(running_var + eps) * weight +
    bias`` in training and in evaluation alike. A BatchNorm2d ``state_dict`` loads into it (its
    ``num_batches_tracked`` is dropped) and its ``state_dict`` loads into torchvision's class and back.
    :meth:`from_batch_norm` copies a trained BatchNorm2d; :func:`normbook.batchnorm.freeze_batch_norm` converts a
    whole model.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        if not isinstance(num_features, numbers.Integral) or num_features < 1:
            raise ValueError(f"num_features must be a positive integer, got {num_features!r}")
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    @classmethod
    def from_batch_norm(cls, bn: Module) -> "FrozenBatchNorm2d":
        """A frozen copy of a BatchNorm2d (torch's or normbook's) with running statistics; missing affine
        parameters become 1 and 0."""
        if getattr(bn, "running_mean", None) is None or getattr(bn, "running_var", None) is None:
            raise ValueError("from_batch_norm needs a BatchNorm with running statistics (track_running_stats=True)")
        frozen = cls(bn.num_features, bn.eps)
        with torch.no_grad():
            if bn.weight is not None:
                frozen.weight.copy_(bn.weight)
            if bn.bias is not None:
                frozen.bias.copy_(bn.bias)
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
        return frozen.to(bn.running_mean.device)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)  # a BatchNorm2d checkpoint carries one
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected 4D input (got {x.dim()}D input)")
        if x.shape[1] != self.weight.numel():
            raise ValueError(f"expected {self.weight.numel()} channels, got input of size {list(x.shape)}")
        scale = self.weight.reshape(1, -1, 1, 1) * (self.running_var.reshape(1, -1, 1, 1) + self.eps).rsqrt()
        shift = self.bias.reshape(1, -1, 1, 1) - self.running_mean.reshape(1, -1, 1, 1) * scale
        return x * scale + shift

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.weight.shape[0]}, eps={self.eps})"


class _BatchRenorm(_BatchNorm):
    """Batch Renormalization (Ioffe 2017); see ``normbook.functional.batch_renorm``.

    Same arguments, parameters and buffers as BatchNorm (so a BatchNorm ``state_dict`` loads into it), plus the
    clipping schedule: for the first ``warmup_steps`` training batches r_max = 1 and d_max = 0 (plain BN); then
    r_max rises linearly to ``r_max`` at step ``r_max_steps`` and d_max to ``d_max`` at ``d_max_steps``. The
    paper's ImageNet run: 5000, 40000 and 25000 steps, r_max = 3, d_max = 5 (the defaults). The step is
    ``num_batches_tracked``. Requires ``track_running_stats=True``. Evaluation: BatchNorm with running statistics.
    ``momentum=None`` keeps a cumulative average (1 / num_batches_tracked), as BatchNorm does.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 device=None, dtype=None, *, r_max: float = 3.0, d_max: float = 5.0, warmup_steps: int = 5000,
                 r_max_steps: int = 40000, d_max_steps: int = 25000) -> None:
        if not r_max >= 1.0 or not d_max >= 0.0:
            raise ValueError(f"BatchRenorm needs r_max >= 1 and d_max >= 0, got r_max={r_max}, d_max={d_max}")
        if not 0 <= warmup_steps <= min(r_max_steps, d_max_steps):
            raise ValueError("BatchRenorm needs 0 <= warmup_steps <= r_max_steps and d_max_steps, got "
                             f"{warmup_steps}, {r_max_steps}, {d_max_steps}")
        super().__init__(num_features, eps, momentum, affine, True, device=device, dtype=dtype)
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.warmup_steps, self.r_max_steps, self.d_max_steps = int(warmup_steps), int(r_max_steps), int(d_max_steps)

    def limits(self, step: Optional[int] = None) -> Tuple[float, float]:
        """(r_max, d_max) in force at training step ``step`` (default: the next batch, num_batches_tracked + 1)."""
        if step is None:
            step = int(self.num_batches_tracked) + 1

        def ramp(end: int) -> float:
            if step <= self.warmup_steps:
                return 0.0
            return 1.0 if end == self.warmup_steps else min(1.0, (step - self.warmup_steps) / (end - self.warmup_steps))
        return 1.0 + (self.r_max - 1.0) * ramp(self.r_max_steps), self.d_max * ramp(self.d_max_steps)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not self.training:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, False,
                                self.momentum, self.eps)
        r_max, d_max = self.limits()
        self.num_batches_tracked.add_(1)
        # momentum=None: a cumulative average, as in BatchNorm (recompute_batchnorm_stats sets it)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_renorm(input, self.running_mean, self.running_var, self.weight, self.bias, True,
                              momentum, self.eps, r_max, d_max)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"r_max={self.r_max}, d_max={self.d_max}, warmup_steps={self.warmup_steps}, "
                f"r_max_steps={self.r_max_steps}, d_max_steps={self.d_max_steps}")


class BatchRenorm1d(_BatchRenorm):
    """Batch Renormalization over an (N, C) or (N, C, L) input; see :class:`_BatchRenorm`."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"expected 2D or 3D input (got {input.dim()}D input)")


class BatchRenorm2d(_BatchRenorm):
    """Batch Renormalization over an (N, C, H, W) input; see :class:`_BatchRenorm`."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() != 4:
            raise ValueError(f"expected 4D input (got {input.dim()}D input)")


class GhostBatchNorm2d(BatchNorm2d):
    """Ghost Batch Normalization (Hoffer et al. 2017) over an (N, C, H, W) input: in training, the batch is split
    into consecutive "ghost" batches of ``virtual_batch_size`` examples (the last may be smaller) and each is
    normalized with its own statistics; the running statistics are updated once per ghost batch (so
    ``num_batches_tracked`` counts ghost batches). Evaluation, parameters, buffers and ``state_dict``: those of
    BatchNorm2d. With ``virtual_batch_size >= N`` it is BatchNorm2d.
    """

    def __init__(self, num_features: int, virtual_batch_size: int = 32, eps: float = 1e-5,
                 momentum: Optional[float] = 0.1, affine: bool = True, track_running_stats: bool = True,
                 device=None, dtype=None) -> None:
        if not isinstance(virtual_batch_size, numbers.Integral) or virtual_batch_size < 1:
            raise ValueError(f"virtual_batch_size must be a positive integer, got {virtual_batch_size!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.virtual_batch_size = int(virtual_batch_size)

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not self.training:
            return super().forward(input)
        return torch.cat([super(GhostBatchNorm2d, self).forward(chunk)
                          for chunk in input.split(self.virtual_batch_size)], dim=0)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", virtual_batch_size={self.virtual_batch_size}"


class WSConv2d(torch.nn.Conv2d):
    """A Conv2d whose weight is standardized before every use (Weight Standardization, Qiao et al. 2019): each
    output channel's C_in * kH * kW weights get zero mean and unit variance
    (``normbook.functional.weight_standardization``). Same arguments and ``state_dict`` as ``torch.nn.Conv2d``
    (the stored weight is the raw one) plus ``ws_eps`` (1e-5). Input (N, C_in, H, W) -> (N, C_out, H', W').
    Meant to be followed by GroupNorm, as in the paper.
    """

    def __init__(self, *args, ws_eps: float = 1e-5, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not ws_eps > 0:
            raise ValueError(f"ws_eps must be positive, got {ws_eps}")
        self.ws_eps = ws_eps

    def forward(self, input: Tensor) -> Tensor:
        return self._conv_forward(input, F.weight_standardization(self.weight, self.ws_eps), self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", ws_eps={self.ws_eps}"


__all__ += ["FrozenBatchNorm2d", "BatchRenorm1d", "BatchRenorm2d", "GhostBatchNorm2d",
            "WSConv2d"]
