"""Chapter 9's own measurements on the small ViT of :mod:`normbook.book.models`.

- :func:`w2_gradient_factors`: the gradient of each block's second MLP weight, ``dL/dW2 = sum over tokens of
  delta a^T``, split into its two factors, the input ``a`` of W2 and the upstream gradient ``delta`` at W2's output
  (in the pre-LN placement, the gradient of the residual stream after the block); optionally with the branches'
  inputs detached, so that no gradient reaches the residual stream through a later branch (the intervention).
- :func:`count_ops`: the operations a function runs through the dispatcher (views and detaches left out).
- :func:`z_loss`: PaLM's auxiliary loss on the softmax normalizer of the classifier's logits.
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["w2_gradient_factors", "count_ops", "z_loss", "log_partition"]


def w2_gradient_factors(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                        detach_branch_inputs: bool = False) -> Dict[str, np.ndarray]:
    """One forward and backward pass of the cross-entropy loss on (X, y) at the model's current weights; per block:

    - ``input``: the Frobenius norm of W2's input ``a`` (the GELU output, all tokens of the batch);
    - ``upstream``: the Frobenius norm of the gradient ``delta`` at W2's output;
    - ``grad``: the Frobenius norm of ``dL/dW2 = delta^T a`` (over all tokens), W2's weight gradient.

    ``detach_branch_inputs=True`` (pre-LN and sandwich placements) detaches the input of every branch's norm, so
    the residual stream receives no gradient through the branches: every block's ``delta`` is then the gradient
    at the top of the stream. The model's parameters keep their gradients from this pass (zeroed first)."""
    model.zero_grad(set_to_none=True)
    inputs: List[torch.Tensor] = []
    deltas: List[torch.Tensor] = []
    hooks = []

    def keep_input_and_delta(module, args, out):
        inputs.append(args[0].detach())
        out.register_hook(lambda g: deltas.append(g.detach()))

    for block in model.blocks:
        hooks.append(block.mlp[2].register_forward_hook(keep_input_and_delta))
        if detach_branch_inputs:
            for norm in (block.norm1, block.norm2):
                hooks.append(norm.register_forward_pre_hook(lambda m, args: (args[0].detach(),)))
    try:
        model.train()
        F.cross_entropy(model(X), y).backward()
    finally:
        for h in hooks:
            h.remove()
    deltas = deltas[::-1]                          # the backward pass visits the blocks last to first
    return {
        "input": np.array([float(a.norm()) for a in inputs]),
        "upstream": np.array([float(d.norm()) for d in deltas]),
        "grad": np.array([float(b.mlp[2].weight.grad.norm()) for b in model.blocks]),
    }


def count_ops(fn: Callable[[], object], min_numel: int = 0) -> List[str]:
    """The names of the operations ``fn()`` runs through torch's dispatcher (forward and, if fn calls it, backward),
    leaving out views, detaches and other aliasing operations, which move no data. With ``min_numel``, only the
    operations that read or write a tensor of at least that many elements (a full pass over an ``(N, d)`` input,
    not an operation on its ``(N, 1)`` row statistics or on a ``(d,)`` weight)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    def largest(*trees) -> int:
        return max((t.numel() for t in tree_leaves(trees) if isinstance(t, torch.Tensor)), default=0)

    class _Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops: List[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            returns = func._schema.returns
            alias = returns[0].alias_info if returns else None
            out = func(*args, **(kwargs or {}))
            if (alias is None or alias.is_write) and largest(args, kwargs, out) >= min_numel:
                self.ops.append(func.overloadpacket.__name__)
            return out

    with _Recorder() as recorder:
        fn()
    return recorder.ops


def log_partition(logits: torch.Tensor) -> torch.Tensor:
    """log Z = logsumexp of each row of logits: the softmax's normalizer, on a log scale (0 when the logits are
    already log-probabilities)."""
    return torch.logsumexp(logits.float(), dim=-1)


def z_loss(logits: torch.Tensor, coefficient: float = 1e-4) -> torch.Tensor:
    """``coefficient * mean((log Z)^2)``, the auxiliary loss PaLM adds to keep the softmax normalizer near 1
    (Chowdhery et al. 2022; Wortsman et al. 2023 use it against output-logit divergence)."""
    return coefficient * log_partition(logits).pow(2).mean()
