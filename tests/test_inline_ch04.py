"""Chapter 4's mechanism cells agree with normbook and torch.nn: the three running-average conventions and
momentum=None, the recomputation of population statistics, and the fold of BatchNorm into a convolution."""
import copy
import math

import pytest
import torch
from torch import nn

import normbook
import normbook.book.models
import normbook.nn as N
from normbook.book import inference
from normbook.batchnorm import recompute_batchnorm_stats
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("04")


def test_update_conventions(ns):
    gen = torch.Generator().manual_seed(0)
    stats = [float(3 + 2 * torch.randn(1, generator=gen)) for _ in range(50)]
    page = ns["running_estimates"]
    pairs = [(page(stats, ns["torch_update"], alpha=0.1),
              inference.running_estimates(stats, inference.torch_update, momentum=0.1)),
             (page(stats, ns["old_value_update"], rho=0.9),
              inference.running_estimates(stats, inference.d2l_update, momentum=0.9)),
             (page(stats, ns["old_value_update"], rho=0.99),
              inference.running_estimates(stats, inference.keras_update, momentum=0.99)),
             (page(stats, ns["cumulative_update"]),
              inference.running_estimates(stats, inference.cumulative_update))]
    for a, b in pairs:
        assert all(math.isclose(u, v, rel_tol=1e-12, abs_tol=1e-12) for u, v in zip(a, b))


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
def test_updates_match_torch_layer(ns, momentum):
    torch.manual_seed(1)
    batches = [torch.randn(16, 1, dtype=torch.float64) * 2 + 3 for _ in range(20)]
    layer = nn.BatchNorm1d(1, momentum=momentum).double()
    for b in batches:
        layer(b)
    means = [b.mean().item() for b in batches]
    if momentum is None:
        page = ns["running_estimates"](means, ns["cumulative_update"])
    else:
        page = ns["running_estimates"](means, ns["torch_update"], alpha=momentum)
    assert math.isclose(page[-1], layer.running_mean.item(), rel_tol=1e-10)


def _net(layers):
    return normbook.book.models.lenet(normbook.book.models.batch_norm(layers=layers))


@pytest.mark.parametrize("layers", [N, nn])
def test_recompute_bn_stats(ns, layers):
    torch.manual_seed(2)
    net = _net(layers)
    for _ in range(3):
        net(torch.rand(32, 1, 28, 28))
    net.eval()
    batches = [torch.rand(32, 1, 28, 28) for _ in range(4)]
    page, ours = copy.deepcopy(net), copy.deepcopy(net)
    ns["recompute_bn_stats"](page, batches)
    recompute_batchnorm_stats(ours, batches)
    assert not page.training
    for a, b in zip(page.state_dict().values(), ours.state_dict().values()):
        torch.testing.assert_close(a, b)
    for m in page.modules():
        if "BatchNorm" in type(m).__name__:
            assert m.momentum == 0.1
    # the first BatchNorm2d holds the average of its per-batch statistics
    with torch.no_grad():
        z = [net[0](b) for b in batches]
    dims = (0, 2, 3)
    torch.testing.assert_close(page[1].running_mean, torch.stack([t.mean(dims) for t in z]).mean(0))
    torch.testing.assert_close(page[1].running_var, torch.stack([t.var(dims) for t in z]).mean(0))


def test_recompute_bn_stats_leaves_untracked_layers_alone(ns):
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(4, 6), N.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3),
                        nn.BatchNorm1d(3, track_running_stats=False), nn.Linear(3, 2), nn.BatchNorm1d(2))
    batches = [torch.randn(16, 4) * 2 + 1 for _ in range(3)]
    page, ours = copy.deepcopy(net), copy.deepcopy(net)
    ns["recompute_bn_stats"](page, batches)
    recompute_batchnorm_stats(ours, batches)
    assert page[4].running_mean is None and list(page[4].state_dict()) == ["weight", "bias"]
    for a, b in zip(page.state_dict().values(), ours.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert int(page[1].num_batches_tracked) == 3 and int(page[6].num_batches_tracked) == 3


def test_fold_conv_bn(ns):
    torch.manual_seed(3)
    conv, bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
        for _ in range(3):
            bn(conv(torch.randn(8, 3, 6, 6) * 2 + 1))
    bn.eval()
    with torch.no_grad():
        W, b = ns["fold_conv_bn"](conv, bn)
        W_t, b_t = torch.nn.utils.fusion.fuse_conv_bn_weights(conv.weight, None, bn.running_mean, bn.running_var,
                                                               bn.eps, bn.weight, bn.bias)
        folded = normbook.fold_batchnorm(nn.Sequential(conv, bn))
        x = torch.randn(2, 3, 7, 7)
        torch.testing.assert_close(W, W_t)
        torch.testing.assert_close(b, b_t)
        torch.testing.assert_close(W, folded[0].weight)
        torch.testing.assert_close(nn.functional.conv2d(x, W, b), bn(conv(x)), rtol=1e-5, atol=1e-5)
