"""Looking inside a network: activations, gradients and timings, layer by layer.

The tools follow the diagnostics of Karpathy's *makemore* lectures and fast.ai's ``ActivationStats``:

* :class:`ActivationRecorder` -- a context manager that puts forward hooks on chosen layers and keeps their
  outputs, so we can ask for the standard deviation, a histogram or the saturated fraction at every depth;
* :func:`activation_std` -- the standard deviation of every chosen layer's output for one forward pass;
* :func:`saturation_fraction` -- the share of a squashing nonlinearity's outputs that sit on its flat tails;
* :func:`weight_grad_norms`, :func:`grad_to_data_ratios` and :func:`gradient_norms_at_init` -- the backward
  view: how large each layer's weight gradient is, absolutely and relative to the weights themselves.

(The stopwatch is in the library: :func:`normbook.timing.time_it`.)
"""
from __future__ import annotations

import math
from typing import Iterable, List, Optional, Tuple, Type, Union

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS", "ActivationRecorder", "activation_std", "first_nonfinite", "nonfinite_layers",
    "saturation_fraction",
    "weight_grad_norms", "grad_to_data_ratios", "gradient_norms_at_init",
]

#: The nonlinearities recorded by default: a block's output is the output of its activation.
ACTIVATIONS: Tuple[Type[nn.Module], ...] = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU)

ModuleTypes = Union[Type[nn.Module], Tuple[Type[nn.Module], ...]]


class ActivationRecorder:
    """Record the outputs of every submodule of ``model`` that is an instance of ``types``, in call order.

    Use it as a context manager; the hooks are removed on exit, so the model is left as it was::

        with ActivationRecorder(model, nn.ReLU) as rec:
            model(x)
        rec.outputs      # list of tensors, one per ReLU call, detached and (by default) moved to the CPU
        rec.names        # the submodules' names in the model, e.g. ["2", "5", ...]

    ``to_cpu=False`` keeps the tensors where they are (saves a copy on a GPU).
    """

    def __init__(self, model: nn.Module, types: ModuleTypes = ACTIVATIONS, to_cpu: bool = True):
        self.model, self.types, self.to_cpu = model, types, to_cpu
        self.outputs: List[torch.Tensor] = []
        self.names: List[str] = []
        self._handles: list = []

    def _hook(self, name: str):
        def hook(module, inputs, output):
            out = output.detach()
            self.outputs.append(out.cpu() if self.to_cpu else out)
            self.names.append(name)
        return hook

    def __enter__(self) -> "ActivationRecorder":
        self.outputs.clear()
        self.names.clear()
        for name, module in self.model.named_modules():
            if isinstance(module, self.types):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        if not self._handles:
            raise ValueError(f"the model has no submodule of type {self.types}; nothing would be recorded")
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def stds(self) -> List[float]:
        """Standard deviation of each recorded output over all its elements (inf or nan once values overflow)."""
        return [_std(t) for t in self.outputs]


def _std(t: torch.Tensor) -> float:
    # float64: squares of float32 values up to 3.4e38 stay finite, so the std is finite until an element is inf
    return t.double().std().item() if t.numel() > 1 else float("nan")


@torch.no_grad()
def activation_std(model: nn.Module, x: torch.Tensor, types: ModuleTypes = ACTIVATIONS) -> List[float]:
    """Run ``model(x)`` without gradients; return the std of every ``types`` layer's output, input side first."""
    with ActivationRecorder(model, types, to_cpu=False) as rec:
        model(x)
    return rec.stds()


def first_nonfinite(values: Iterable[float]) -> Optional[int]:
    """The 1-based position of the first value that is inf or nan (``None`` if all are finite)."""
    for i, v in enumerate(values, start=1):
        if not math.isfinite(v):
            return i
    return None


@torch.no_grad()
def nonfinite_layers(model: nn.Module, x: torch.Tensor, types: ModuleTypes = ACTIVATIONS) -> dict:
    """Where a forward pass breaks down: the 1-based index of the first ``types`` layer whose output holds an
    inf (``"first_inf"``) and a nan (``"first_nan"``), and the largest finite std before that
    (``"max_finite_std"``). Indices are ``None`` when no such layer exists."""
    with ActivationRecorder(model, types, to_cpu=False) as rec:
        model(x)
    first_inf = next((i for i, t in enumerate(rec.outputs, 1) if torch.isinf(t).any()), None)
    first_nan = next((i for i, t in enumerate(rec.outputs, 1) if torch.isnan(t).any()), None)
    finite = [s for s in rec.stds() if math.isfinite(s)]
    return {"first_inf": first_inf, "first_nan": first_nan, "max_finite_std": max(finite) if finite else None}


def saturation_fraction(t: torch.Tensor, lower: float = 0.03, upper: float = 0.97) -> float:
    """Fraction of the elements of ``t`` at or below ``lower`` or at or above ``upper``.

    The defaults suit a sigmoid: outside [0.03, 0.97] its slope s(1 - s) is below 0.03, an eighth of its peak
    0.25, so little gradient gets through. For tanh use ``lower=-0.97, upper=0.97`` (Karpathy's threshold).
    """
    if lower >= upper:
        raise ValueError(f"lower ({lower}) must be smaller than upper ({upper})")
    if t.numel() == 0:
        raise ValueError("cannot compute a saturated fraction of an empty tensor")
    return ((t <= lower) | (t >= upper)).double().mean().item()


def _weights(model: nn.Module, types: ModuleTypes) -> List[torch.Tensor]:
    weights = [m.weight for m in model.modules() if isinstance(m, types) and getattr(m, "weight", None) is not None]
    if not weights:
        raise ValueError(f"the model has no {types} layer with a weight")
    return weights


def weight_grad_norms(model: nn.Module, types: ModuleTypes = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
                      ) -> List[float]:
    """Frobenius norm of each ``types`` layer's ``weight.grad`` (after a backward pass), input side first,
    computed in float64: entries near float32's smallest normal number (1e-38) have a sum of squares that
    underflows float32 to 0 although the entries are not zero.

    A layer whose weight has no gradient yet reports nan."""
    return [w.grad.double().norm().item() if w.grad is not None else float("nan") for w in _weights(model, types)]


def grad_to_data_ratios(model: nn.Module, types: ModuleTypes = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
                        ) -> List[float]:
    """``weight.grad.std() / weight.std()`` for each ``types`` layer: Karpathy's grad:data ratio.

    Multiplied by the learning rate it estimates how much one SGD step changes the weights relative to their
    size; a useful range is about 1e-3 per step. Layers far apart in this ratio cannot share one learning rate.
    """
    out = []
    for w in _weights(model, types):
        if w.grad is None:
            out.append(float("nan"))
        else:
            out.append((w.grad.double().std() / w.detach().double().std()).item())
    return out


def gradient_norms_at_init(model: nn.Module, x: torch.Tensor, seed: int = 0,
                           types: ModuleTypes = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) -> List[float]:
    """Weight-gradient norms per layer for the loss ``mean over the batch of <model(x), r>``, r ~ N(0, 1).

    A fixed random readout ``r`` (drawn from its own generator seeded with ``seed``) gives every output unit a
    gradient of order one whatever the scale of the activations, so the norms show what the backward pass does
    on its way down, not what the loss happens to be. Existing gradients are cleared first.
    """
    model.zero_grad(set_to_none=True)
    out = model(x)
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(out.shape, generator=gen).to(out.device, out.dtype)
    loss = (out * r).sum() / out.shape[0]
    loss.backward()
    return weight_grad_norms(model, types)
