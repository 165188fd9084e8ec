"""normbook.functional against torch.nn.functional: values, gradients, in-place running statistics, gradcheck in
float64, and compilation without graph breaks."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given
from hypothesis import strategies as st

import normbook.functional as F
from _layer_helpers import DEVICES, HYPOTHESIS, OLDER_TORCH, close, grad_close


def _leaves(tensors, device=None):
    return [None if t is None else t.detach().to(device or t.device, copy=True).requires_grad_() for t in tensors]


def _compare(ours_fn, theirs_fn, inputs, reduce_size):
    """normbook on the inputs' device against torch on the CPU (the reference semantics; torch's CUDA kernels
    have their own quirks, e.g. torch 2.11 returns a zero bias gradient from F.batch_norm in evaluation mode on
    CUDA when weight is None). Module tests compare against torch on the same device."""
    a, b = _leaves(inputs), _leaves(inputs, "cpu")
    y1, y2 = ours_fn(*a), theirs_fn(*b)
    close(y1.cpu(), y2)
    g = torch.randn_like(y2)
    y1.backward(g.to(y1.device))
    y2.backward(g)
    for t1, t2 in zip(a, b):
        if t1 is not None:
            grad_close(t1.grad.cpu(), t2.grad, reduce_size)


def _maybe(draw, t):
    return t if draw(st.booleans()) else None


@st.composite
def bn_inputs(draw, device):
    n, c = draw(st.integers(2, 6)), draw(st.integers(1, 5))
    spatial = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    x = torch.randn([n, c] + spatial, device=device, dtype=torch.float64) * 3 + 1
    w = _maybe(draw, torch.rand(c, device=device, dtype=torch.float64) + 0.5)
    b = _maybe(draw, torch.randn(c, device=device, dtype=torch.float64))
    training = draw(st.booleans())
    tracked = draw(st.booleans()) or not training
    momentum = draw(st.sampled_from([0.1, 0.7, 1.0]))
    return x, w, b, training, tracked, momentum


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(data=st.data())
def test_batch_norm_matches_torch(device, data):
    x, w, b, training, tracked, momentum = data.draw(bn_inputs(device))
    c = x.shape[1]
    rm1 = torch.randn(c, device=device, dtype=x.dtype) if tracked else None
    rv1 = torch.rand(c, device=device, dtype=x.dtype) + 0.5 if tracked else None
    rm2, rv2 = (rm1.to("cpu", copy=True), rv1.to("cpu", copy=True)) if tracked else (None, None)  # torch on CPU
    _compare(lambda x, w, b: F.batch_norm(x, rm1, rv1, w, b, training, momentum, 1e-5),
             lambda x, w, b: TF.batch_norm(x, rm2, rv2, w, b, training, momentum, 1e-5),
             (x, w, b), x.numel() // c)
    if tracked:
        close(rm1.cpu(), rm2)  # updated in place, identically
        close(rv1.cpu(), rv2)


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(data=st.data())
def test_instance_norm_matches_torch(device, data):
    n, c = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    spatial = data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    if math.prod(spatial) == 1:
        spatial[0] = 3
    x = torch.randn([n, c] + spatial, device=device, dtype=torch.float64) * 2 - 1
    w = _maybe(data.draw, torch.rand(c, device=device, dtype=torch.float64) + 0.5)
    b = _maybe(data.draw, torch.randn(c, device=device, dtype=torch.float64))
    use_input_stats = data.draw(st.booleans())
    tracked = data.draw(st.booleans()) or not use_input_stats
    rm1 = torch.randn(c, device=device, dtype=x.dtype) if tracked else None
    rv1 = torch.rand(c, device=device, dtype=x.dtype) + 0.5 if tracked else None
    rm2, rv2 = (rm1.to("cpu", copy=True), rv1.to("cpu", copy=True)) if tracked else (None, None)  # torch on CPU
    _compare(lambda x, w, b: F.instance_norm(x, rm1, rv1, w, b, use_input_stats, 0.3, 1e-5),
             lambda x, w, b: TF.instance_norm(x, rm2, rv2, w, b, use_input_stats, 0.3, 1e-5),
             (x, w, b), x[0, 0].numel())
    if tracked:
        close(rm1.cpu(), rm2)
        close(rv1.cpu(), rv2)


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(data=st.data())
def test_layer_norm_matches_torch(device, data):
    shape = data.draw(st.lists(st.integers(2, 5), min_size=1, max_size=3))
    lead = data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    x = torch.randn(lead + shape, device=device, dtype=torch.float64) * 3 + 2
    w = _maybe(data.draw, torch.rand(shape, device=device, dtype=torch.float64) + 0.5)
    b = _maybe(data.draw, torch.randn(shape, device=device, dtype=torch.float64))
    _compare(lambda x, w, b: F.layer_norm(x, shape, w, b, 1e-5), lambda x, w, b: TF.layer_norm(x, shape, w, b, 1e-5),
             (x, w, b), x.numel())


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(data=st.data())
def test_group_norm_matches_torch(device, data):
    g = data.draw(st.integers(1, 4))
    c = g * data.draw(st.integers(1, 3))
    spatial = data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    if (c // g) * math.prod(spatial) == 1:
        spatial.append(2)
    x = torch.randn([data.draw(st.integers(1, 4)), c] + spatial, device=device, dtype=torch.float64) * 2 + 1
    w = _maybe(data.draw, torch.rand(c, device=device, dtype=torch.float64) + 0.5)
    b = _maybe(data.draw, torch.randn(c, device=device, dtype=torch.float64))
    _compare(lambda x, w, b: F.group_norm(x, g, w, b, 1e-5), lambda x, w, b: _torch_group_norm(x, g, w, b, 1e-5),
             (x, w, b), x.numel())


def _torch_group_norm(x, num_groups, weight, bias, eps):
    """torch's group_norm; torch 2.11's backward fails ("tensor does not have a device") for a bias without a
    weight, so an older torch gets the equivalent weight of ones there."""
    if weight is None and bias is not None and OLDER_TORCH:
        weight = torch.ones_like(bias)
    return TF.group_norm(x, num_groups, weight, bias, eps)


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(data=st.data())
def test_rms_norm_matches_torch(device, data):
    shape = data.draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    lead = data.draw(st.lists(st.integers(1, 4), min_size=0, max_size=2))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    eps = data.draw(st.sampled_from([None, 1e-6, 0.1]))
    x = torch.randn(lead + shape, device=device, dtype=dtype) * 3
    w = _maybe(data.draw, torch.rand(shape, device=device, dtype=dtype) + 0.5)
    _compare(lambda x, w: F.rms_norm(x, shape, w, eps), lambda x, w: TF.rms_norm(x, shape, w, eps), (x, w),
             x.numel())


def test_int_normalized_shape_is_accepted():
    x = torch.randn(3, 5)
    close(F.layer_norm(x, 5), TF.layer_norm(x, (5,)))
    close(F.rms_norm(x, 5), TF.rms_norm(x, (5,)))


def test_rms_norm_default_eps_is_the_opmath_epsilon():
    """eps=None is finfo(float32).eps for float16/bfloat16/float32 and finfo(float64).eps for float64 (torch's
    behaviour, not the docs'): visible on an all-zero row scaled by a tiny value."""
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        x = torch.full((2, 4), 1e-4, dtype=dtype)
        close(F.rms_norm(x, [4]), TF.rms_norm(x, [4]))


def test_empty_batch_leaves_running_stats_alone():
    rm, rv = torch.zeros(3), torch.ones(3)
    y = F.batch_norm(torch.randn(0, 3), rm, rv, training=True)
    assert y.shape == (0, 3)
    assert rm.eq(0).all() and rv.eq(1).all()


# ---------------------------------------------------------------------------------------------------------------
# gradcheck in float64
# ---------------------------------------------------------------------------------------------------------------
def _f64(*shape, shift=0.0):
    return (torch.randn(*shape, dtype=torch.float64) + shift).requires_grad_()


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_batch_norm(training):
    x, w, b = _f64(4, 3, 2, 2, shift=1.0), _f64(3, shift=1.0), _f64(3)
    rm, rv = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    fn = lambda x, w, b: F.batch_norm(x, rm.clone(), rv.clone(), w, b, training, 0.1, 1e-5)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("use_input_stats", [True, False])
def test_gradcheck_instance_norm(use_input_stats):
    x, w, b = _f64(2, 3, 5), _f64(3), _f64(3)
    rm, rv = torch.randn(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64) + 0.5
    fn = lambda x, w, b: F.instance_norm(x, rm.clone(), rv.clone(), w, b, use_input_stats)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w, b))


def test_gradcheck_layer_norm():
    x, w, b = _f64(3, 4, 5, shift=2.0), _f64(4, 5), _f64(4, 5)
    assert torch.autograd.gradcheck(lambda x, w, b: F.layer_norm(x, [4, 5], w, b), (x, w, b))
    assert torch.autograd.gradgradcheck(lambda x, w, b: F.layer_norm(x, [4, 5], w, b), (x, w, b))


def test_gradcheck_group_norm():
    x, w, b = _f64(2, 6, 3, 2), _f64(6), _f64(6)
    assert torch.autograd.gradcheck(lambda x, w, b: F.group_norm(x, 3, w, b), (x, w, b))


def test_gradcheck_rms_norm():
    x, w = _f64(3, 4, 5), _f64(5)
    assert torch.autograd.gradcheck(lambda x, w: F.rms_norm(x, [5], w), (x, w))
    assert torch.autograd.gradcheck(lambda x: F.rms_norm(x, [4, 5], None, 1e-3), (x,))


# ---------------------------------------------------------------------------------------------------------------
# torch.compile: every functional traces into one graph
# ---------------------------------------------------------------------------------------------------------------
COMPILE_CASES = {
    "batch_norm-train": lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, True, 0.1, 1e-5),
    "batch_norm-eval": lambda x, w, b, rm, rv: F.batch_norm(x, rm, rv, w, b, False, 0.1, 1e-5),
    "instance_norm": lambda x, w, b, rm, rv: F.instance_norm(x, rm, rv, w, b, True, 0.1, 1e-5),
    "layer_norm": lambda x, w, b, rm, rv: F.layer_norm(x, x.shape[-2:], None, None),
    "group_norm": lambda x, w, b, rm, rv: F.group_norm(x, 2, w, b),
    "rms_norm": lambda x, w, b, rm, rv: F.rms_norm(x, x.shape[-1:]),
}


@pytest.mark.parametrize("name", list(COMPILE_CASES))
def test_dynamo_traces_without_graph_breaks(name):
    torch._dynamo.reset()
    x = torch.randn(4, 6, 3, 3)
    args = (x, torch.rand(6) + 0.5, torch.randn(6), torch.zeros(6), torch.ones(6))
    explanation = torch._dynamo.explain(COMPILE_CASES[name])(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
