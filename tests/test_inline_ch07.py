"""Chapter 7's mechanism cells agree with normbook (and torchvision/torch): FrozenBN2d, the Batch Renorm forward
with r and d, ghost batches and weight standardization."""
import pytest
import torch
import torchvision

import normbook.functional as F
import normbook.nn as N
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("07")


def test_frozen_bn_cell(ns):
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.normal_()
    bn(torch.randn(16, 4, 3, 3) * 2 + 1)
    page, ours, theirs = ns["FrozenBN2d"](4), N.FrozenBatchNorm2d(4), torchvision.ops.misc.FrozenBatchNorm2d(4)
    for m in (page, ours, theirs):
        m.load_state_dict(bn.state_dict())
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(page(x), ours(x), rtol=0, atol=0)
    torch.testing.assert_close(page(x), theirs(x), rtol=0, atol=0)
    assert list(page.state_dict()) == list(ours.state_dict())


@pytest.mark.parametrize("r_max,d_max", [(1.0, 0.0), (1.5, 0.3), (100.0, 100.0)])
def test_batch_renorm_cell(ns, r_max, d_max):
    torch.manual_seed(1)
    x = (torch.randn(6, 3, 4, 4) * 2 + 1).requires_grad_()
    rm, rv = torch.randn(3), torch.rand(3) * 3 + 0.2
    page = ns["batch_renorm_train"](x, rm, rv, 1e-5, r_max, d_max)
    ours = F.batch_renorm(x, rm.clone(), rv.clone(), None, None, True, 0.1, 1e-5, r_max, d_max)
    torch.testing.assert_close(page, ours, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(x)
    torch.testing.assert_close(torch.autograd.grad(page, x, g)[0], torch.autograd.grad(ours, x, g)[0],
                               rtol=1e-4, atol=1e-5)
    module = N.BatchRenorm2d(3, r_max=r_max, d_max=d_max, warmup_steps=0, r_max_steps=0, d_max_steps=0)
    module.running_mean.copy_(rm)
    module.running_var.copy_(rv)
    torch.testing.assert_close(page, module(x), rtol=1e-5, atol=1e-5)


def test_ghost_cell(ns):
    torch.manual_seed(2)
    x = torch.randn(12, 3, 4, 4) * 2 + 1
    ghost = N.GhostBatchNorm2d(3, virtual_batch_size=4, affine=False)
    torch.testing.assert_close(ns["ghost_batch_norm"](x, 4, 1e-5), ghost(x), rtol=1e-5, atol=1e-5)


def test_weight_standardization_cell(ns):
    torch.manual_seed(3)
    w = torch.randn(5, 3, 3, 3, requires_grad=True)
    page, ours = ns["standardize_weight"](w, 1e-5), F.weight_standardization(w, 1e-5)
    torch.testing.assert_close(page, ours, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(w)
    torch.testing.assert_close(torch.autograd.grad(page, w, g)[0], torch.autograd.grad(ours, w, g)[0],
                               rtol=1e-4, atol=1e-5)
    conv = N.WSConv2d(3, 5, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(w)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(conv(x), torch.nn.functional.conv2d(x, page), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_variance_shift_cell(ns, p):
    # the predicted shift against simulated dropout: correlated, non-negative inputs with a mean (as after a
    # ReLU), a linear layer, many samples; the ratio of the two variances must match the formula
    g = torch.Generator().manual_seed(4)
    n, d, k = 200_000, 16, 5
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) / d ** 0.5
    h = torch.relu(torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + 0.3)
    w = torch.randn(k, d, generator=g, dtype=torch.float64)
    mask = (torch.rand(n, d, generator=g, dtype=torch.float64) >= p).double() / (1 - p)
    z_eval, z_train = h @ w.T, (h * mask) @ w.T
    measured = z_eval.var(0) / z_train.var(0)
    predicted = ns["dropout_variance_shift"](z_eval.var(0), w, (h ** 2).mean(0), p)
    torch.testing.assert_close(predicted, measured, rtol=0.02, atol=0)
    assert float(measured.max()) < 0.99  # a real shift, not a ratio of 1 matched trivially
