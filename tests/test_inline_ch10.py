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


@pytest.mark.parametrize("shape", [(5, 37), (2, 3, 16), (1, 64)])
def test_layer_norm_for_compile(ns, shape):
    """The page's compile-friendly LayerNorm (input saved, statistics recomputed in the backward pass) equals
    normbook.book.ch10.layer_norm and torch, outputs and gradients, in float64."""
    from normbook.book import ch10
    n = shape[-1]
    x = (torch.randn(shape, dtype=torch.float64) * 3 + 50).requires_grad_()
    w = (torch.rand(n, dtype=torch.float64) + 0.5).requires_grad_()
    b = torch.randn(n, dtype=torch.float64).requires_grad_()
    dy = torch.randn(shape, dtype=torch.float64)
    page = ns["LayerNormForCompile"].apply(x, w, b, 1e-5)
    results = [(page,) + torch.autograd.grad(page, (x, w, b), dy)]
    for fn in (ch10.layer_norm, torch.nn.functional.layer_norm):
        y = fn(x, (n,), w, b, 1e-5)
        results.append((y,) + torch.autograd.grad(y, (x, w, b), dy))
    for other in results[1:]:
        for got, expected in zip(results[0], other):
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
