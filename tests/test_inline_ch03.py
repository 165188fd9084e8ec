"""Chapter 3's mechanism cells agree with normbook and torch.nn: one BN code path for (N, C), (N, C, L),
(N, C, H, W) and (N, C, D, H, W) inputs (reduction dims, outputs, gradients, running buffers, eval mode)."""
import pytest
import torch

import normbook.functional as NF
from _notebook import mechanism_namespace

SHAPES = [(8, 3), (4, 3, 7), (4, 3, 5, 5), (2, 3, 3, 4, 4)]


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("03")


@pytest.mark.parametrize("shape", SHAPES)
def test_reduction_dims(ns, shape):
    x = torch.randn(shape)
    assert ns["reduction_dims"](x) == (0,) + tuple(range(2, len(shape)))
    assert ns["channel_view"](torch.ones(3), x).shape == (1, 3) + (1,) * (len(shape) - 2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_nd(ns, shape, training):
    torch.manual_seed(len(shape))
    x = torch.randn(shape, dtype=torch.float64) * 2 + 1
    w = torch.rand(3, dtype=torch.float64) + 0.5
    b = torch.randn(3, dtype=torch.float64)
    rm0, rv0 = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    outs, bufs, grads = [], [], []
    for fn in (lambda *a: ns["batch_norm_nd"](*a[:6], momentum=0.3, eps=1e-3),
               lambda x, w, b, rm, rv, t: NF.batch_norm(x, rm, rv, w, b, t, 0.3, 1e-3),
               lambda x, w, b, rm, rv, t: torch.nn.functional.batch_norm(x, rm, rv, w, b, t, 0.3, 1e-3)):
        xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
        rm, rv = rm0.clone(), rv0.clone()
        y = fn(xr, wr, br, rm, rv, training)
        y.pow(3).sum().backward()
        outs.append(y.detach())
        bufs.append((rm, rv))
        grads.append((xr.grad, wr.grad, br.grad))
    for other in (1, 2):
        torch.testing.assert_close(outs[0], outs[other])
        torch.testing.assert_close(bufs[0], bufs[other])
        torch.testing.assert_close(grads[0], grads[other])
