"""Chapter 10's mechanism cells agree with normbook and torch: the LayerNorm row algorithm of the Triton kernels,
written in tensor code (forward: y, mean, rstd; backward: dx, dweight, dbias from the saved statistics)."""
import pytest
import torch

import normbook.functional as F
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("10")


@pytest.mark.parametrize("shape", [(5, 37), (1, 64), (16, 8)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_norm_rows(ns, shape, dtype):
    n = shape[-1]
    x = (torch.randn(shape, dtype=dtype) * 3 + 2).requires_grad_()
    w = (torch.rand(n, dtype=dtype) + 0.5).requires_grad_()
    b = torch.randn(n, dtype=dtype).requires_grad_()
    dy = torch.randn(shape, dtype=dtype)
    y_ref = F.layer_norm(x, (n,), w, b, 1e-5)
    grads = torch.autograd.grad(y_ref, (x, w, b), dy)
    y, mean, rstd = ns["layer_norm_rows_forward"](x.detach(), w.detach(), b.detach(), 1e-5)
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y, y_ref.detach(), **tol)
    torch.testing.assert_close(y, torch.nn.functional.layer_norm(x, (n,), w, b, 1e-5).detach(), **tol)
    torch.testing.assert_close(mean.double(), x.detach().double().mean(1), **tol)
    var = x.detach().double().var(1, unbiased=False)
    torch.testing.assert_close(rstd.double(), torch.rsqrt(var + 1e-5), **tol)
    got = ns["layer_norm_rows_backward"](x.detach(), dy, w.detach(), mean, rstd)
    for g, e in zip(got, grads):
        torch.testing.assert_close(g.to(dtype), e, **tol)
