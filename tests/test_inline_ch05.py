"""Chapter 5's mechanism cells agree with normbook and torch.nn: LayerNorm, InstanceNorm, GroupNorm (the
(N, G, C/G * S) reshape) and RMSNorm as short functions, and LayerNorm's backward pass written out."""
import pytest
import torch
import torch.nn.functional as TF

import normbook.autograd as NA
import normbook.functional as NF
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("05")


def _x(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2


@pytest.mark.parametrize("shape,groups", [((4, 6, 5, 5), 3), ((2, 6, 5, 5), 1), ((2, 6, 7), 6),
                                          ((3, 8, 2, 3, 3), 2)])
def test_group_norm(ns, shape, groups):
    x = _x(shape).requires_grad_()
    w, b = torch.rand(shape[1], dtype=torch.float64) + 0.5, torch.randn(shape[1], dtype=torch.float64)
    page = ns["group_norm"](x, groups, w, b, 1e-5)
    torch.testing.assert_close(page, NF.group_norm(x, groups, w, b, 1e-5))
    torch.testing.assert_close(page, TF.group_norm(x, groups, w, b, 1e-5))
    g_page, = torch.autograd.grad(page.pow(3).sum(), x)
    g_ref, = torch.autograd.grad(TF.group_norm(x, groups, w, b, 1e-5).pow(3).sum(), x)
    torch.testing.assert_close(g_page, g_ref)


@pytest.mark.parametrize("shape,k", [((4, 5, 10), 1), ((3, 5, 4, 4), 3), ((2, 7), 1)])
def test_layer_norm(ns, shape, k):
    x = _x(shape, 1)
    w, b = torch.rand(shape[-k:], dtype=torch.float64), torch.randn(shape[-k:], dtype=torch.float64)
    page = ns["layer_norm"](x, k, w, b)
    torch.testing.assert_close(page, NF.layer_norm(x, shape[-k:], w, b))
    torch.testing.assert_close(page, TF.layer_norm(x, shape[-k:], w, b))


@pytest.mark.parametrize("shape", [(4, 3, 7), (2, 3, 5, 5), (2, 2, 3, 3, 3)])
def test_instance_norm(ns, shape):
    x = _x(shape, 2)
    page = ns["instance_norm"](x)
    torch.testing.assert_close(page, NF.instance_norm(x))
    torch.testing.assert_close(page, TF.instance_norm(x))


@pytest.mark.parametrize("shape", [(4, 16), (2, 5, 8), (3, 2)])
def test_rms_normalize(ns, shape):
    x = _x(shape, 3)
    page = ns["rms_normalize"](x, eps=1e-6)
    torch.testing.assert_close(page, NF.rms_norm(x, shape[-1:], None, 1e-6))
    torch.testing.assert_close(page, TF.rms_norm(x, shape[-1:], None, 1e-6))


@pytest.mark.parametrize("shape", [(6, 10), (2, 5, 8), (3, 1, 4, 16)])
def test_layer_norm_backward(ns, shape):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 2
    w = torch.rand(shape[-1], generator=g, dtype=torch.float64) + 0.5
    b = torch.randn(shape[-1], generator=g, dtype=torch.float64)
    dy = torch.randn(shape, generator=g, dtype=torch.float64)
    page = ns["layer_norm_backward"](dy, x, w, 1e-5)
    for layer_norm in (TF.layer_norm, NA.layer_norm):       # torch's autograd, normbook's closed form
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        expected = torch.autograd.grad(layer_norm(xr, shape[-1:], wr, br, 1e-5), (xr, wr, br), dy)
        for got, want in zip(page, expected):
            torch.testing.assert_close(got, want)
