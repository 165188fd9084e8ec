"""normbook.batchnorm: one rule for "is a BatchNorm", population statistics, freezing."""
import pytest
import torch
from torch import nn

import normbook
import normbook.nn as nbnn
from normbook import distributed
from normbook.batchnorm import batchnorm_layers, freeze_batch_norm, is_batchnorm, recompute_batchnorm_stats


def _model(layers=nbnn):
    normbook.seed_everything(0)
    return nn.Sequential(nn.Linear(4, 6, bias=False), layers.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 5, bias=False), layers.BatchNorm1d(5), nn.Linear(5, 3))


@pytest.mark.parametrize("layer", [nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.BatchNorm3d(3), nn.SyncBatchNorm(3),
                                   nn.LazyBatchNorm2d(), nbnn.BatchNorm1d(3), nbnn.BatchNorm2d(3), nbnn.BatchNorm3d(3),
                                   nbnn.BatchRenorm2d(3), nbnn.GhostBatchNorm2d(3, 2),
                                   distributed.SyncBatchNorm(3)], ids=lambda m: type(m).__module__ + "." + type(m).__name__)
def test_is_batchnorm_true(layer):
    assert is_batchnorm(layer)


@pytest.mark.parametrize("layer", [nn.InstanceNorm2d(3), nbnn.InstanceNorm2d(3), nn.LayerNorm(3), nbnn.LayerNorm(3),
                                   nn.GroupNorm(1, 3), nbnn.GroupNorm(1, 3), nbnn.FrozenBatchNorm2d(3), nn.Linear(3, 3)],
                         ids=lambda m: type(m).__module__ + "." + type(m).__name__)
def test_is_batchnorm_false(layer):
    assert not is_batchnorm(layer)


def test_batchnorm_layers_in_order():
    model = _model()
    assert batchnorm_layers(model) == [model[1], model[4]]


@pytest.mark.parametrize("layers", [nn, nbnn])
def test_recompute_batchnorm_stats(layers):
    model = _model(layers)
    g = torch.Generator().manual_seed(1)
    data = [(1 + torch.randn(16, 4, generator=g), None) for _ in range(5)]
    for X, _ in data:  # some running history to be replaced
        model(3 * X)
    model.eval()
    bn1 = model[1]
    bn1.momentum = 0.3
    recompute_batchnorm_stats(model, data)
    # first BN: running mean = average of the batch means of the first linear layer's outputs
    with torch.no_grad():
        means = torch.stack([model[0](X).mean(0) for X, _ in data]).mean(0)
        variances = torch.stack([model[0](X).var(0) for X, _ in data]).mean(0)
    torch.testing.assert_close(bn1.running_mean, means)
    torch.testing.assert_close(bn1.running_var, variances)
    assert int(bn1.num_batches_tracked) == len(data)
    assert bn1.momentum == 0.3 and model[4].momentum == 0.1
    assert not model.training and not any(m.training for m in model.modules())
    # num_batches limits the pass; a train-mode model stays in train mode
    model.train()
    recompute_batchnorm_stats(model, data, num_batches=2)
    assert int(bn1.num_batches_tracked) == 2 and model.training


@pytest.mark.parametrize("layers", [nn, nbnn])
def test_recompute_with_dropout_off(layers):
    """batchnorm_only=True: dropout before a BN layer stays off while the statistics are collected, so they are
    those of the evaluation-mode network; by default (the whole model in train mode) dropout inflates them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 6), layers.BatchNorm1d(6)).eval()
    data = [torch.randn(4096, 4) + 1 for _ in range(3)]
    with torch.no_grad():
        clean = torch.cat([model[1](X) for X in data])
    recompute_batchnorm_stats(model, data, batchnorm_only=True)
    torch.testing.assert_close(model[2].running_mean, clean.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[2].running_var, clean.var(0), rtol=2e-3, atol=1e-5)
    assert not any(m.training for m in model.modules())
    recompute_batchnorm_stats(model, data)                 # dropout on: a larger variance
    assert bool((model[2].running_var > 1.3 * clean.var(0)).all())


def test_recompute_skips_untracked_and_plain_tensors():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False))
    assert recompute_batchnorm_stats(model, [torch.randn(8, 4)]) is model
    model = nn.Sequential(nn.Linear(4, 6), nbnn.BatchNorm1d(6))
    recompute_batchnorm_stats(model, [torch.randn(8, 4)])  # batches without labels
    assert int(model[1].num_batches_tracked) == 1


def test_recompute_from_an_empty_loader_raises():
    model = _model()
    with pytest.raises(ValueError, match="no batches"):
        recompute_batchnorm_stats(model, [])
    assert model[1].momentum == 0.1  # restored even so


@pytest.mark.parametrize("layers", [nn, nbnn])
def test_freeze_batch_norm(layers):
    model = nn.Sequential(nn.Conv2d(1, 3, 3), layers.BatchNorm2d(3), nn.Sequential(layers.BatchNorm2d(3)))
    x = torch.randn(4, 1, 6, 6)
    model(x)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    freeze_batch_norm(model)
    assert isinstance(model[1], nbnn.FrozenBatchNorm2d) and isinstance(model[2][0], nbnn.FrozenBatchNorm2d)
    model.train()  # frozen: the same output in train mode
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


def test_recompute_handles_batch_renorm():
    # recompute sets momentum=None on every BatchNorm-like layer; Batch Renorm takes it as BatchNorm does
    import normbook.nn as N

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), N.BatchRenorm1d(3, warmup_steps=0, r_max_steps=0,
                                                                        d_max_steps=0))
    X = torch.randn(64, 4) * 2 + 1
    model.train()(X[:8])  # a training step moves the running estimates
    model.eval()
    recompute_batchnorm_stats(model, [X[i:i + 16] for i in range(0, 64, 16)])
    h = model[0](X).detach()
    torch.testing.assert_close(model[1].running_mean, h.mean(0), rtol=1e-5, atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training
