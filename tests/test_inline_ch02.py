"""Chapter 2's mechanism cells agree with normbook and torch.nn: the batch_norm function (training, evaluation,
running estimates), the BatchNorm module (buffers, state_dict, momentum=None) and the closed-form
autograd.Function (outputs and gradients; like normbook's, it raises under create_graph=True)."""
import pytest
import torch

import normbook
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("02")


@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 7), (3, 2, 4, 4)])
def test_batch_norm_function(ns, shape):
    torch.manual_seed(0)
    c = shape[1]
    x = torch.randn(shape, dtype=torch.float64) * 2 + 3
    gamma, beta = torch.rand(c, dtype=torch.float64) + 0.5, torch.randn(c, dtype=torch.float64)
    bufs = {k: (torch.randn(c, dtype=torch.float64), torch.rand(c, dtype=torch.float64) + 0.5)
            for k in ("page", "torch", "normbook")}
    bufs = {k: (a.clone(), b.clone()) for k, (a, b) in zip(bufs, [bufs["page"]] * 3)}
    for training in (True, False):
        page = ns["batch_norm"](x, *bufs["page"], gamma, beta, training, 0.2, 1e-3)
        ref = torch.nn.functional.batch_norm(x, *bufs["torch"], gamma, beta, training, 0.2, 1e-3)
        ours = normbook.functional.batch_norm(x, *bufs["normbook"], gamma, beta, training, 0.2, 1e-3)
        torch.testing.assert_close(page, ref)
        torch.testing.assert_close(page, ours)
    for i in range(2):
        torch.testing.assert_close(bufs["page"][i], bufs["torch"][i])
        torch.testing.assert_close(bufs["page"][i], bufs["normbook"][i])


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batch_norm_module(ns, momentum):
    torch.manual_seed(1)
    page = ns["BatchNorm"](4, momentum=momentum)
    ref = torch.nn.BatchNorm1d(4, momentum=momentum)
    ours = normbook.nn.BatchNorm1d(4, momentum=momentum)
    assert list(page.state_dict()) == list(ref.state_dict()) == list(ours.state_dict())
    assert [n for n, _ in page.named_parameters()] == [n for n, _ in ref.named_parameters()]
    for _ in range(4):
        x = torch.randn(8, 4) * 3 + 1
        y = page(x)
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y, ours(x), rtol=1e-5, atol=1e-5)
    for a, b in zip(page.state_dict().values(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    page.eval(), ref.eval()
    x = torch.randn(5, 4)
    torch.testing.assert_close(page(x), ref(x), rtol=1e-5, atol=1e-5)
    assert page.double().running_mean.dtype == torch.float64


def test_autograd_function(ns):
    torch.manual_seed(2)
    x = torch.randn(10, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = ns["BatchNormFunction"]
    assert torch.autograd.gradcheck(lambda *a: fn.apply(*a, 1e-5), (x, w, b))
    dy = torch.randn(10, 3, dtype=torch.float64)
    page = fn.apply(x, w, b, 1e-5)
    ref = torch.nn.functional.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)
    ours = normbook.autograd.batch_norm(x, None, None, w, b, training=True)
    torch.testing.assert_close(page, ref)
    torch.testing.assert_close(page, ours)
    g_page = torch.autograd.grad(page, (x, w, b), dy)
    for other in (ref, ours):
        for a, g in zip(g_page, torch.autograd.grad(other, (x, w, b), dy)):
            torch.testing.assert_close(a, g)


def test_autograd_function_refuses_double_backward(ns):
    """The page's closed form, like normbook's, raises when asked for a graph of its gradient (create_graph=True):
    x_hat and r were saved without one, so a second derivative through them would silently be wrong."""
    torch.manual_seed(4)
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    fn = ns["BatchNormFunction"]
    for make in (lambda: fn.apply(x, w, b, 1e-5),
                 lambda: normbook.autograd.batch_norm(x, None, None, w, b, training=True)):
        with pytest.raises(RuntimeError, match="double backward is not supported"):
            torch.autograd.grad(make().pow(2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="use normbook.functional.batch_norm"):
        torch.autograd.gradgradcheck(lambda *a: fn.apply(*a, 1e-5), (x, w, b))
    # a first derivative still works, and the exact higher derivatives are normbook.functional's
    (g,) = torch.autograd.grad(fn.apply(x, w, b, 1e-5).pow(2).sum(), x)
    assert torch.isfinite(g).all()
    assert torch.autograd.gradgradcheck(
        lambda *a: normbook.functional.batch_norm(a[0], None, None, a[1], a[2], training=True), (x, w, b))
