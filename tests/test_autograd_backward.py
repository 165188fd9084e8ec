"""The closed-form backward passes of normbook.autograd: gradcheck in float64, equality with autograd's gradients
(through normbook.functional and through torch), identical forward results and running-statistics updates."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import assume, given
from hypothesis import strategies as st

import normbook.autograd as A
import normbook.functional as F
import normbook.nn as nbnn
from _layer_helpers import DEVICES, HYPOTHESIS, close


def _leaf(t):
    return None if t is None else t.detach().clone().requires_grad_()


def _grads(fn, x, w, b, g):
    x, w, b = _leaf(x), _leaf(w), _leaf(b)
    y = fn(x, w, b)
    y.backward(g)
    return y.detach(), [None if t is None else t.grad for t in (x, w, b)]


# ---------------------------------------------------------------------------------------------------------------
# gradcheck
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", ["weight+bias", "weight", "none"])
@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 6), (2, 3, 2, 3)])
def test_gradcheck_batch_norm_closed_form(training, affine, shape):
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 1).requires_grad_()
    w = (torch.rand(3, dtype=torch.float64) + 0.5).requires_grad_() if affine != "none" else None
    b = torch.randn(3, dtype=torch.float64).requires_grad_() if affine == "weight+bias" else None
    rm, rv = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    inputs = tuple(t for t in (x, w, b) if t is not None)

    def fn(*args):
        x, w, b = (list(args) + [None, None])[:3]
        if affine == "none":
            w = b = None
        return A.batch_norm(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5)

    assert torch.autograd.gradcheck(fn, inputs)


@pytest.mark.parametrize("normalized_shape", [(6,), (3, 4)])
@pytest.mark.parametrize("affine", ["weight+bias", "weight", "none"])
def test_gradcheck_layer_norm_closed_form(normalized_shape, affine):
    x = (torch.randn((2, 3) + normalized_shape, dtype=torch.float64) * 3 - 1).requires_grad_()
    w = (torch.rand(normalized_shape, dtype=torch.float64) + 0.5).requires_grad_() if affine != "none" else None
    b = torch.randn(normalized_shape, dtype=torch.float64).requires_grad_() if affine == "weight+bias" else None
    inputs = tuple(t for t in (x, w, b) if t is not None)

    def fn(*args):
        x, w, b = (list(args) + [None, None])[:3]
        if affine == "none":
            w = b = None
        return A.layer_norm(x, normalized_shape, w, b, 1e-5)

    assert torch.autograd.gradcheck(fn, inputs)


def test_gradcheck_layer_norm_closed_form_without_leading_dims():
    x = torch.randn(7, dtype=torch.float64, requires_grad=True)
    w = torch.rand(7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: A.layer_norm(x, 7, w, None), (x, w))


# ---------------------------------------------------------------------------------------------------------------
# closed form == autograd
# ---------------------------------------------------------------------------------------------------------------
def _assume_well_conditioned(x, dims):
    """Skip examples in which some group of values is nearly constant (two close values, say). There x - mean
    loses most of its float32 digits and 1/sqrt(var + eps) amplifies the loss, so any two correct float32
    implementations disagree in the 4th digit; test_precision covers tiny variances against a float64 oracle."""
    assume(x.double().var(dim=dims, unbiased=False).min().item() > 1e-2)


@st.composite
def bn_case(draw):
    n, c = draw(st.integers(2, 8)), draw(st.integers(1, 6))
    spatial = draw(st.lists(st.integers(1, 5), min_size=0, max_size=3))
    return [n, c] + spatial, draw(st.booleans()), draw(st.booleans()), draw(st.booleans()), \
        draw(st.sampled_from([torch.float32, torch.float64]))


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=bn_case())
def test_batch_norm_closed_form_equals_autograd(device, case):
    shape, training, has_w, has_b, dtype = case
    c = shape[1]
    x = torch.randn(shape, device=device, dtype=dtype) * 3 + 2
    _assume_well_conditioned(x, dims=[d for d in range(x.dim()) if d != 1])
    w = torch.rand(c, device=device, dtype=dtype) + 0.5 if has_w else None
    b = torch.randn(c, device=device, dtype=dtype) if has_b else None
    g = torch.randn(shape, device=device, dtype=dtype)
    stats = [(torch.zeros(c, device=device, dtype=dtype), torch.ones(c, device=device, dtype=dtype))
             for _ in range(3)]
    results = [_grads(lambda x, w, b, s=s, f=f: f(x, s[0], s[1], w, b, training, 0.2, 1e-5), x, w, b, g)
               for f, s in zip((A.batch_norm, F.batch_norm), stats)]
    # torch on the CPU: its CUDA kernel mishandles a bias without a weight in evaluation mode (torch 2.11)
    cpu = [None if t is None else t.cpu() for t in (x, w, b, g)]
    stats[2] = (stats[2][0].cpu(), stats[2][1].cpu())
    y_t, g_t = _grads(lambda x, w, b: TF.batch_norm(x, stats[2][0], stats[2][1], w, b, training, 0.2, 1e-5), *cpu)
    y_t, g_t = y_t.to(device), [None if t is None else t.to(device) for t in g_t]
    (y_cf, g_cf), (y_ag, g_ag) = results
    close(y_cf, y_ag)
    close(y_cf, y_t)
    tol = dict(rtol=1e-4, atol=1e-5 * x.numel() ** 0.5) if dtype == torch.float32 else {}
    for a, b_, t in zip(g_cf, g_ag, g_t):
        if a is not None:
            close(a, b_, **tol)
            close(a, t, **tol)
    for s in stats[1:]:
        close(stats[0][0], s[0].to(device))
        close(stats[0][1], s[1].to(device))


@st.composite
def ln_case(draw):
    normalized = draw(st.lists(st.integers(2, 6), min_size=1, max_size=3))
    lead = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    return lead + normalized, normalized, draw(st.booleans()), draw(st.booleans()), \
        draw(st.sampled_from([torch.float32, torch.float64]))


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=ln_case())
def test_layer_norm_closed_form_equals_autograd(device, case):
    shape, normalized, has_w, has_b, dtype = case
    x = torch.randn(shape, device=device, dtype=dtype) * 3 + 2
    _assume_well_conditioned(x, dims=list(range(-len(normalized), 0)))
    w = torch.rand(normalized, device=device, dtype=dtype) + 0.5 if has_w else None
    b = torch.randn(normalized, device=device, dtype=dtype) if has_b else None
    g = torch.randn(shape, device=device, dtype=dtype)
    (y_cf, g_cf), (y_ag, g_ag), (y_t, g_t) = [
        _grads(lambda x, w, b, f=f: f(x, normalized, w, b, 1e-5), x, w, b, g)
        for f in (A.layer_norm, F.layer_norm, TF.layer_norm)]
    close(y_cf, y_ag)
    close(y_cf, y_t)
    tol = dict(rtol=1e-4, atol=1e-5 * x.numel() ** 0.5) if dtype == torch.float32 else {}
    for a, b_, t in zip(g_cf, g_ag, g_t):
        if a is not None:
            close(a, b_, **tol)
            close(a, t, **tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_closed_form_low_precision(dtype):
    """float16/bfloat16 input with float32 parameters: gradients in each tensor's own dtype, close to autograd's."""
    x = (torch.randn(8, 4, 3, 3) * 2 + 1).to(dtype)
    w, b = torch.rand(4) + 0.5, torch.randn(4)
    g = torch.randn(8, 4, 3, 3).to(dtype)
    (y1, g1), (y2, g2) = [_grads(lambda x, w, b, f=f: f(x, None, None, w, b, True), x, w, b, g)
                          for f in (A.batch_norm, F.batch_norm)]
    assert y1.dtype == dtype and g1[0].dtype == dtype and g1[1].dtype == torch.float32
    close(y1, y2)
    for a, c in zip(g1, g2):
        close(a.float(), c.float(), rtol=2e-2, atol=2e-2)


def test_closed_form_saves_only_input_weight_and_statistics():
    """What the closed form keeps for backward: input, weight and two (C,) vectors, against autograd's graph."""
    def saved_bytes(fn):
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(total)

    x = torch.randn(16, 8, 10, 10, requires_grad=True)
    w, b = torch.ones(8, requires_grad=True), torch.zeros(8, requires_grad=True)
    closed = saved_bytes(lambda: A.batch_norm(x, None, None, w, b, True))
    graph = saved_bytes(lambda: F.batch_norm(x, None, None, w, b, True))
    assert closed == x.numel() * 4 + 2 * 8 * 4  # x - mean, weight, invstd
    assert graph > 2 * closed


# ---------------------------------------------------------------------------------------------------------------
# modules on the closed-form path
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_module_closed_form_matches_torch(device, momentum):
    ours = nbnn.BatchNorm2d(5, momentum=momentum, backward="closed_form", device=device)
    theirs = torch.nn.BatchNorm2d(5, momentum=momentum, device=device)
    for step in range(4):
        if step == 3:
            ours.eval(), theirs.eval()
        x = torch.randn(6, 5, 4, 4, device=device) * 2 + 3
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        y1, y2 = ours(x1), theirs(x2)
        close(y1, y2)
        y1.square().sum().backward()
        y2.square().sum().backward()
        close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
        close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-3)
        close(ours.bias.grad, theirs.bias.grad, rtol=1e-4, atol=1e-3)
        close(ours.running_mean, theirs.running_mean)
        close(ours.running_var, theirs.running_var)
        assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item()


def test_layernorm_module_closed_form_matches_torch():
    ours, theirs = nbnn.LayerNorm([4, 5], backward="closed_form"), torch.nn.LayerNorm([4, 5])
    x = torch.randn(3, 4, 5) * 4 - 2
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    close(y1, y2)
    (y1 * y1.detach()).sum().backward()
    (y2 * y2.detach()).sum().backward()
    close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)
    close(ours.weight.grad, theirs.weight.grad, rtol=1e-4, atol=1e-4)
    close(ours.bias.grad, theirs.bias.grad, rtol=1e-4, atol=1e-4)
