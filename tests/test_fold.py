"""fold_batchnorm: same eval outputs, no foldable BatchNorm left, the original model untouched."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import normbook
import normbook.nn as nbnn
from normbook.book.models import batch_norm, lenet, small_cnn
from _layer_helpers import DEVICES, randomize_, torch_takes


def torch_nn_bn1d_without_bias(num_features):
    """torch's BatchNorm1d with a weight and no bias (bias=False on a torch that has it; else the bias removed)."""
    if torch_takes("BatchNorm1d", "bias"):
        return nn.BatchNorm1d(num_features, bias=False)
    bn = nn.BatchNorm1d(num_features)
    bn.bias = None
    return bn


BN_TYPES = (nbnn.BatchNorm1d, nbnn.BatchNorm2d, nbnn.BatchNorm3d, nn.modules.batchnorm._BatchNorm)
FOLDABLE_INTO = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _trained(model, x, steps=3):
    """A few training-mode passes, so running statistics are far from their initial 0 and 1, plus random affine
    parameters."""
    for m in model.modules():
        if isinstance(m, BN_TYPES):
            randomize_(m)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x * 2 + 0.5)
    return model.eval()


def _foldable_pairs(model):
    pairs = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            children = list(seq.children())
            pairs += [(a, b) for a, b in zip(children, children[1:])
                      if isinstance(a, FOLDABLE_INTO) and isinstance(b, BN_TYPES) and b.running_mean is not None]
    return pairs


def _assert_same_function(original, folded, x):
    # TF32 convolutions (cuDNN's default on recent GPUs) round to ~1e-3: compare in full float32
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        y, y_folded = original(x), folded(x)
    scale = y.abs().max().item()
    assert (y - y_folded).abs().max().item() <= 1e-5 * scale, ((y - y_folded).abs().max().item(), scale)


def _snapshot(model):
    return copy.deepcopy(model.state_dict()), [(type(m), m.training) for m in model.modules()]


def _assert_unchanged(model, snapshot):
    state, modules = snapshot
    assert [(type(m), m.training) for m in model.modules()] == modules
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layers", [nbnn, nn], ids=["normbook", "torch"])
@pytest.mark.parametrize("build", [lenet, small_cnn], ids=["LeNet-BN", "small_cnn"])
def test_fold(device, layers, build):
    torch.manual_seed(0)
    model = build(batch_norm(layers=layers)).to(device)
    x = torch.randn(16, 1, 28, 28, device=device)
    _trained(model, x)
    model.train()  # fold_batchnorm must not care, nor change it
    snapshot = _snapshot(model)
    folded = normbook.fold_batchnorm(model)
    _assert_unchanged(model, snapshot)
    assert not folded.training and all(not m.training for m in folded.modules())
    assert not any(isinstance(m, BN_TYPES) for m in folded.modules())   # every BN here follows a conv/linear
    assert not _foldable_pairs(folded)
    model.eval()
    _assert_same_function(model, folded, x)


def test_fold_nested_mixed_and_leftovers():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Sequential(nn.Conv1d(3, 4, 3, bias=True), nbnn.BatchNorm1d(4, affine=False), nn.ReLU()),
        nn.Sequential(nn.Conv1d(4, 6, 3, groups=2), torch_nn_bn1d_without_bias(6)),
        nn.ReLU(),
        nbnn.BatchNorm1d(6),                                 # follows a ReLU: stays
        nn.Conv1d(6, 6, 1, bias=False),
        nbnn.BatchNorm1d(6, track_running_stats=False),      # no running statistics: stays
        nn.Flatten(),
        nn.Linear(6 * 6, 5), nbnn.BatchNorm1d(5, momentum=None),
    )
    x = torch.randn(8, 3, 10)
    _trained(model, x)
    snapshot = _snapshot(model)
    folded = normbook.fold_batchnorm(model)
    _assert_unchanged(model, snapshot)
    remaining = [m for m in folded.modules() if isinstance(m, BN_TYPES)]
    assert len(remaining) == 2
    assert remaining[0].running_mean is not None and remaining[1].running_mean is None
    assert not _foldable_pairs(folded)
    _assert_same_function(model, folded, x)


class _Block(nn.Module):
    """A custom module holding a Sequential: folding reaches Sequentials at any depth."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv3d(2, 3, 2), nbnn.BatchNorm3d(3), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 3 * 3 * 3, 4, bias=False), nn.BatchNorm1d(4))

    def forward(self, x):
        return self.head(self.body(x))


def test_fold_inside_custom_modules():
    torch.manual_seed(0)
    model = _Block()
    x = torch.randn(6, 2, 4, 4, 4)
    _trained(model, x)
    folded = normbook.fold_batchnorm(model)
    assert not any(isinstance(m, BN_TYPES) for m in folded.modules())
    assert folded.head[1].bias is not None
    _assert_same_function(model, folded, x)


def test_fold_leaves_a_lone_batchnorm():
    model = nn.Sequential(nbnn.BatchNorm2d(3), nn.Conv2d(3, 2, 1))
    folded = normbook.fold_batchnorm(model)
    assert isinstance(folded[0], nbnn.BatchNorm2d) and not folded[0].training
    assert folded[0] is not model[0]
