"""normbook.nn against torch.nn: constructors, state_dict, train/eval behaviour, gradients, running statistics.

Each hypothesis example builds the same layer from both libraries, loads torch's (randomized) state into
normbook's, then runs several training steps (outputs, input and parameter gradients, running statistics and
num_batches_tracked compared after each) and one evaluation step, and finally moves the state_dict back from
normbook to a fresh torch layer.
"""
from __future__ import annotations

import copy
import inspect
import math
import warnings

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import normbook
import normbook.book.models
import normbook.nn as nbnn
from _layer_helpers import (DEVICES, HYPOTHESIS, LOW_PRECISION_TOL, bias_flags, close, grad_close, randomize_,
                            OLDER_TORCH, requires_reference_torch, torch_nn)

CLASSES = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "GroupNorm", "RMSNorm"]


# ---------------------------------------------------------------------------------------------------------------
# The engine: run both layers side by side
# ---------------------------------------------------------------------------------------------------------------
def _step(nb, ref, x, g=None):
    """One forward/backward through both layers; compare outputs and all gradients."""
    oracle = copy.deepcopy(ref).double()           # torch in float64, for gradients dominated by rounding
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    for m in (nb, ref):
        m.zero_grad(set_to_none=True)
    y1, y2 = nb(x1), ref(x2)
    assert y1.dtype == y2.dtype and y1.shape == y2.shape
    tol = LOW_PRECISION_TOL.get(x.dtype, {})
    x3 = x.double().requires_grad_(True)
    y3 = oracle(x3)
    _oracle_check(y1, y2, y3, close, tol)
    g = torch.randn_like(y2) if g is None else g
    y1.backward(g)
    y2.backward(g)
    y3.backward(g.double())
    reduce_size = max(1, x.numel() // max(1, sum(p.numel() for p in ref.parameters()) or 1))
    _grad_check(x1.grad, x2.grad, x3.grad, reduce_size, tol)
    for (n1, p1), (n2, p2), (_, p3) in zip(nb.named_parameters(), ref.named_parameters(),
                                           oracle.named_parameters()):
        assert n1 == n2
        _grad_check(p1.grad, p2.grad, p3.grad, x.numel(), tol)


def _grad_check(ours, theirs, exact, reduce_size, tol):
    _oracle_check(ours, theirs, exact, lambda a, b, **kw: grad_close(a, b, reduce_size, **kw), tol)


def _oracle_check(ours, theirs, exact, compare, tol):
    """Results equal torch's within tolerance; where they do not (a group of two nearly equal values amplifies
    rounding by 1/std), they must be at least as close to the float64 result as torch's are."""
    try:
        compare(ours, theirs, **tol)
    except AssertionError:
        err_ours = (ours.double() - exact).abs().max().item()
        err_theirs = (theirs.double() - exact).abs().max().item()
        assert err_ours <= 2 * err_theirs + 1e-6, (err_ours, err_theirs)


def _compare_state(nb, ref):
    s1, s2 = nb.state_dict(), ref.state_dict()
    assert list(s1.keys()) == list(s2.keys())
    for k in s2:
        assert s1[k].dtype == s2[k].dtype, k
        if s2[k].dtype == torch.long:
            assert torch.equal(s1[k], s2[k]), k
        else:
            close(s1[k], s2[k], rtol=1e-5, atol=1e-6, msg=k)


def run_parity(nb, ref, make_input, train_steps=3):
    """Train steps, then eval, then state_dict normbook -> torch and torch -> normbook."""
    randomize_(ref)
    nb.load_state_dict(ref.state_dict())          # torch -> normbook
    _compare_state(nb, ref)
    nb.train(), ref.train()
    for _ in range(train_steps):
        _step(nb, ref, make_input())
        _compare_state(nb, ref)
    nb.eval(), ref.eval()
    x = make_input()
    _step(nb, ref, x)
    _compare_state(nb, ref)
    fresh = randomize_(copy.deepcopy(ref))         # a torch layer of the same configuration, other values
    fresh.load_state_dict(nb.state_dict())        # normbook -> torch
    fresh.eval()
    with torch.no_grad():
        close(fresh(x), ref(x), **LOW_PRECISION_TOL.get(x.dtype, {}))


def _input(shape, device, dtype=torch.float32, scale=2.0, shift=1.0):
    return lambda: (torch.randn(shape, device=device, dtype=torch.float32) * scale + shift).to(dtype)


# ---------------------------------------------------------------------------------------------------------------
# Constructors, repr, state_dict layout
# ---------------------------------------------------------------------------------------------------------------
@requires_reference_torch
@pytest.mark.parametrize("name", CLASSES)
def test_signature_matches_torch(name):
    ours = inspect.signature(getattr(nbnn, name).__init__).parameters
    theirs = inspect.signature(getattr(torch.nn, name).__init__).parameters
    ours = [(p.name, p.kind, p.default) for p in ours.values() if p.name != "backward"]
    theirs = [(p.name, p.kind, p.default) for p in theirs.values()]
    assert ours == theirs


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm"])
def test_backward_keyword_is_keyword_only(name):
    p = inspect.signature(getattr(nbnn, name).__init__).parameters["backward"]
    assert p.kind is inspect.Parameter.KEYWORD_ONLY and p.default == "autograd"


CONFIGS = [
    ("BatchNorm2d", (4,), {}), ("BatchNorm1d", (3,), dict(affine=False)), ("BatchNorm3d", (2,), dict(bias=False)),
    ("BatchNorm2d", (5,), dict(track_running_stats=False, momentum=None, eps=1e-3)),
    ("InstanceNorm1d", (3,), {}), ("InstanceNorm2d", (4,), dict(affine=True, track_running_stats=True)),
    ("InstanceNorm3d", (2,), dict(affine=True, bias=False)),
    ("LayerNorm", (5,), {}), ("LayerNorm", ([3, 4],), dict(elementwise_affine=False)),
    ("LayerNorm", (torch.Size([2, 3]),), dict(bias=False, eps=1e-6)),
    ("GroupNorm", (2, 4), {}), ("GroupNorm", (3, 6), dict(affine=False)), ("GroupNorm", (1, 3), dict(bias=False)),
    ("RMSNorm", (5,), {}), ("RMSNorm", ([2, 3],), dict(eps=1e-6, elementwise_affine=False)),
]


@pytest.mark.parametrize("name,args,kwargs", CONFIGS)
def test_repr_state_dict_and_initial_values(name, args, kwargs):
    ours, theirs = getattr(nbnn, name)(*args, **kwargs), torch_nn(name, *args, **kwargs)
    if not OLDER_TORCH:  # older torch prints its reprs differently
        assert repr(ours) == repr(theirs)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        assert (getattr(ours, attr, None) is None) == (getattr(theirs, attr, None) is None), attr
    _compare_state(ours, theirs)
    assert getattr(ours, "_version", None) == getattr(theirs, "_version", None)


def test_repr_shows_a_non_default_backward():
    assert "backward='closed_form'" in repr(nbnn.BatchNorm2d(3, backward="closed_form"))
    assert "backward='closed_form'" in repr(nbnn.LayerNorm(3, backward="closed_form"))


@pytest.mark.parametrize("name,args", [("BatchNorm2d", (3,)), ("InstanceNorm2d", (3,)), ("LayerNorm", (3,)),
                                       ("GroupNorm", (1, 3)), ("RMSNorm", (3,))])
def test_dtype_and_device_factory_kwargs(name, args):
    kwargs = dict(affine=True, track_running_stats=True) if name.startswith("Instance") else {}
    ours = getattr(nbnn, name)(*args, dtype=torch.float64, device="cpu", **kwargs)
    theirs = getattr(torch.nn, name)(*args, dtype=torch.float64, device="cpu", **kwargs)
    _compare_state(ours, theirs)  # num_batches_tracked stays long whatever dtype says


def test_reset_parameters_and_running_stats():
    ours, theirs = nbnn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5) * 3 + 2
    randomize_(theirs)
    ours.load_state_dict(theirs.state_dict())
    for m in (ours, theirs):
        m(x)
        m.reset_running_stats()
    _compare_state(ours, theirs)
    assert ours.num_batches_tracked.item() == 0 and ours.running_var.eq(1).all()
    assert not ours.weight.eq(1).all()  # reset_running_stats leaves the parameters alone
    for m in (ours, theirs):
        m(x)
        m.reset_parameters()
    _compare_state(ours, theirs)
    assert ours.weight.eq(1).all() and ours.bias.eq(0).all()


# ---------------------------------------------------------------------------------------------------------------
# state_dict loading
# ---------------------------------------------------------------------------------------------------------------
def test_state_dict_round_trip_in_a_model():
    torch.manual_seed(0)
    theirs = normbook.book.models.lenet(normbook.book.models.batch_norm(layers=torch.nn))
    ours = normbook.book.models.lenet(normbook.book.models.batch_norm(layers=nbnn))
    x = torch.randn(8, 1, 28, 28)
    theirs(x)
    ours.load_state_dict(theirs.state_dict())          # torch -> normbook, strict
    back = normbook.book.models.lenet(normbook.book.models.batch_norm(layers=torch.nn))
    back.load_state_dict(ours.state_dict())            # normbook -> torch, strict
    for m in (ours, theirs, back):
        m.eval()
    close(ours(x), theirs(x))
    close(back(x), theirs(x))
    assert ours[1].num_batches_tracked.item() == 1


@pytest.mark.parametrize("version", [None, 1])
def test_version_1_checkpoint_without_num_batches_tracked(version):
    """torch's _NormBase version-2 rule: an old checkpoint without num_batches_tracked still loads strictly and the
    module keeps its own counter."""
    results = []
    xs = [torch.randn(4, 3), torch.randn(4, 3)]
    for layers in (nbnn, torch.nn):
        m = layers.BatchNorm1d(3)
        m(xs[0])
        m(xs[1])
        sd = {k: v.clone() + 1 for k, v in m.state_dict().items() if k != "num_batches_tracked"}
        sd = type(m.state_dict())(sd)
        sd._metadata = {"": {"version": version}} if version is not None else {"": {}}
        result = m.load_state_dict(sd)  # strict
        assert not result.missing_keys and not result.unexpected_keys
        results.append((m.num_batches_tracked.item(), m.running_mean.clone()))
    assert results[0][0] == results[1][0] == 2
    close(results[0][1], results[1][1])


def test_instance_norm_pre_0_4_checkpoint_error():
    for layers in (nbnn, torch.nn):
        m = layers.InstanceNorm2d(3)
        sd = type(m.state_dict())({"running_mean": torch.zeros(3), "running_var": torch.ones(3)})
        sd._metadata = {"": {}}
        with pytest.raises(RuntimeError, match="Unexpected running stats buffer"):
            m.load_state_dict(sd)


def test_backward_choice_survives_state_dict_and_deepcopy():
    m = nbnn.BatchNorm2d(3, backward="closed_form")
    assert "backward" not in m.state_dict()
    t = torch.nn.BatchNorm2d(3)
    t.load_state_dict(m.state_dict())
    m.load_state_dict(t.state_dict())
    assert copy.deepcopy(m).backward == "closed_form"


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm
# ---------------------------------------------------------------------------------------------------------------
@st.composite
def bn_cases(draw):
    kind = draw(st.sampled_from(["BatchNorm1d", "BatchNorm1d-3D", "BatchNorm2d", "BatchNorm3d"]))
    c = draw(st.integers(1, 6))
    n = draw(st.integers(1, 6))
    n_spatial = {"BatchNorm1d": 0, "BatchNorm1d-3D": 1, "BatchNorm2d": 2, "BatchNorm3d": 3}[kind]
    spatial = [draw(st.integers(1, 5 if n_spatial < 3 else 3)) for _ in range(n_spatial)]
    if n * math.prod(spatial) == 1:
        n = 2
    kwargs = dict(
        eps=draw(st.sampled_from([1e-5, 1e-3, 0.5])),
        momentum=draw(st.sampled_from([0.1, 0.3, 1.0, None])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        bias=draw(bias_flags(kind.split("-")[0])),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
    )
    backward = draw(st.sampled_from(["autograd", "closed_form"]))
    return kind.split("-")[0], [n, c] + spatial, kwargs, backward


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=bn_cases())
def test_batchnorm_parity(device, case):
    name, shape, kwargs, backward = case
    ours = getattr(nbnn, name)(shape[1], device=device, backward=backward, **kwargs)
    theirs = torch_nn(name, shape[1], device=device, **kwargs)
    run_parity(ours, theirs, _input(shape, device, kwargs["dtype"]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_running_stats_after_many_steps(device, momentum):
    """momentum=None is the cumulative average: after k batches running_mean is the mean of the k batch means."""
    ours, theirs = nbnn.BatchNorm2d(4, momentum=momentum, device=device), \
        torch.nn.BatchNorm2d(4, momentum=momentum, device=device)
    means = []
    for _ in range(7):
        x = torch.randn(5, 4, 3, 3, device=device) * 3 + torch.randn(1, device=device)
        means.append(x.mean(dim=(0, 2, 3)))
        ours(x), theirs(x)
    _compare_state(ours, theirs)
    assert ours.num_batches_tracked.item() == 7
    if momentum is None:
        close(ours.running_mean, torch.stack(means).mean(0))


def test_batchnorm_track_running_stats_switched_off_after_construction():
    """torch: training then uses batch statistics without touching the buffers; eval still uses the buffers."""
    ours, theirs = nbnn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    randomize_(theirs)
    ours.load_state_dict(theirs.state_dict())
    for m in (ours, theirs):
        m.track_running_stats = False
    run_parity(ours, theirs, _input([6, 3], "cpu"), train_steps=2)
    assert ours.num_batches_tracked.item() == 0


def test_batchnorm_eval_without_running_stats_uses_batch_stats():
    ours, theirs = nbnn.BatchNorm2d(3, track_running_stats=False).eval(), \
        torch.nn.BatchNorm2d(3, track_running_stats=False).eval()
    x = torch.randn(4, 3, 2, 2) + 5
    close(ours(x), theirs(x))


@pytest.mark.parametrize("device", DEVICES)
def test_batchnorm_channels_last(device):
    ours, theirs = nbnn.BatchNorm2d(4, device=device), torch.nn.BatchNorm2d(4, device=device)
    x = (torch.randn(3, 4, 5, 6, device=device) + 1).to(memory_format=torch.channels_last)
    run_parity(ours, theirs, lambda: x, train_steps=2)
    assert ours(x).is_contiguous(memory_format=torch.channels_last)


def test_batch_of_one_with_spatial_extent_trains():
    """[1, C, H, W] with H * W > 1 has more than one value per channel: allowed, like torch."""
    run_parity(nbnn.BatchNorm2d(3), torch.nn.BatchNorm2d(3), _input([1, 3, 2, 2], "cpu"), train_steps=2)


# ---------------------------------------------------------------------------------------------------------------
# InstanceNorm
# ---------------------------------------------------------------------------------------------------------------
@st.composite
def in_cases(draw):
    d = draw(st.integers(1, 3))
    c = draw(st.integers(1, 5))
    spatial = [draw(st.integers(1, 5 if d < 3 else 3)) for _ in range(d)]
    if math.prod(spatial) == 1:
        spatial[0] = 2
    batched = draw(st.booleans())
    shape = ([draw(st.integers(1, 4))] if batched else []) + [c] + spatial
    kwargs = dict(
        eps=draw(st.sampled_from([1e-5, 1e-2])),
        momentum=draw(st.sampled_from([0.1, 0.5, None])),
        affine=draw(st.booleans()),
        track_running_stats=draw(st.booleans()),
        bias=draw(bias_flags(f"InstanceNorm{d}d")),
        dtype=draw(st.sampled_from([torch.float32, torch.float64])),
    )
    return f"InstanceNorm{d}d", shape, kwargs


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=in_cases())
def test_instancenorm_parity(device, case):
    name, shape, kwargs = case
    num_features = shape[1] if len(shape) == int(name[-2]) + 2 else shape[0]
    ours = getattr(nbnn, name)(num_features, device=device, **kwargs)
    theirs = torch_nn(name, num_features, device=device, **kwargs)
    run_parity(ours, theirs, _input(shape, device, kwargs["dtype"]))
    assert ours.num_batches_tracked is None or ours.num_batches_tracked.item() == 0


def test_instancenorm_channel_mismatch_warns_without_affine():
    ours, theirs = nbnn.InstanceNorm1d(3), torch.nn.InstanceNorm1d(3)
    x = torch.randn(2, 5, 7)
    with pytest.warns(UserWarning, match="does not match num_features"):
        y1 = ours(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y2 = theirs(x)
    close(y1, y2)


# ---------------------------------------------------------------------------------------------------------------
# LayerNorm, GroupNorm, RMSNorm
# ---------------------------------------------------------------------------------------------------------------
@st.composite
def ln_cases(draw):
    normalized = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    if math.prod(normalized) == 1:  # one value per row: x_hat is rounding noise times 1/sqrt(eps); tested apart
        normalized[-1] = 2
    lead = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    as_int = len(normalized) == 1 and draw(st.booleans())
    kwargs = dict(eps=draw(st.sampled_from([1e-5, 1e-2])), elementwise_affine=draw(st.booleans()),
                  bias=draw(bias_flags("LayerNorm")), dtype=draw(st.sampled_from([torch.float32, torch.float64])))
    return (normalized[0] if as_int else normalized), lead + normalized, kwargs, \
        draw(st.sampled_from(["autograd", "closed_form"]))


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=ln_cases())
def test_layernorm_parity(device, case):
    normalized, shape, kwargs, backward = case
    ours = nbnn.LayerNorm(normalized, device=device, backward=backward, **kwargs)
    theirs = torch_nn("LayerNorm", normalized, device=device, **kwargs)
    run_parity(ours, theirs, _input(shape, device, kwargs["dtype"]), train_steps=2)


@st.composite
def gn_cases(draw):
    g = draw(st.integers(1, 4))
    c = g * draw(st.integers(1, 3))
    n = draw(st.integers(1, 4))
    spatial = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3))
    if (c // g) * math.prod(spatial) == 1:  # one value per group: tested apart
        spatial = spatial + [2]
    kwargs = dict(eps=draw(st.sampled_from([1e-5, 1e-2])), affine=draw(st.booleans()),
                  bias=draw(bias_flags("GroupNorm")), dtype=draw(st.sampled_from([torch.float32, torch.float64])))
    return g, [n, c] + spatial, kwargs


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=gn_cases())
def test_groupnorm_parity(device, case):
    g, shape, kwargs = case
    ours = nbnn.GroupNorm(g, shape[1], device=device, **kwargs)
    theirs = torch_nn("GroupNorm", g, shape[1], device=device, **kwargs)
    run_parity(ours, theirs, _input(shape, device, kwargs["dtype"]), train_steps=2)


@st.composite
def rms_cases(draw):
    normalized = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    lead = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    kwargs = dict(eps=draw(st.sampled_from([None, 1e-6, 1e-2])), elementwise_affine=draw(st.booleans()),
                  dtype=draw(st.sampled_from([torch.float32, torch.float64])))
    return normalized, lead + normalized, kwargs


@pytest.mark.parametrize("device", DEVICES)
@HYPOTHESIS
@given(case=rms_cases())
def test_rmsnorm_parity(device, case):
    normalized, shape, kwargs = case
    ours = nbnn.RMSNorm(normalized, device=device, **kwargs)
    theirs = torch.nn.RMSNorm(normalized, device=device, **kwargs)
    run_parity(ours, theirs, _input(shape, device, kwargs["dtype"]), train_steps=2)


# ---------------------------------------------------------------------------------------------------------------
# float16 / bfloat16 inputs
# ---------------------------------------------------------------------------------------------------------------
LOW_PRECISION_LAYERS = [
    ("BatchNorm2d", (4,), {}, [6, 4, 5, 5]),
    ("BatchNorm1d", (4,), dict(momentum=None), [16, 4]),
    ("InstanceNorm2d", (4,), dict(affine=True, track_running_stats=True), [3, 4, 5, 5]),
    ("LayerNorm", ([8],), {}, [6, 5, 8]),
    ("GroupNorm", (2, 4), {}, [3, 4, 5, 5]),
    ("RMSNorm", ([8],), {}, [6, 5, 8]),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name,args,kwargs,shape", LOW_PRECISION_LAYERS, ids=[c[0] for c in LOW_PRECISION_LAYERS])
def test_low_precision_inputs(device, dtype, name, args, kwargs, shape):
    """float32 parameters and buffers, float16/bfloat16 input: statistics in float32, output in the input's
    dtype, buffers stay float32 and match torch's."""
    ours = getattr(nbnn, name)(*args, device=device, **kwargs)
    theirs = getattr(torch.nn, name)(*args, device=device, **kwargs)
    if device == "cuda":
        try:
            theirs(_input(shape, device, dtype)())
        except RuntimeError as e:  # torch 2.11's CUDA LayerNorm/GroupNorm: "expected scalar type Half but found Float"
            pytest.skip(f"torch's CUDA kernel refuses float32 parameters with a {dtype} input here: {e}")
        theirs.reset_parameters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "cannot dispatch to fused implementation" for RMSNorm
        run_parity(ours, theirs, _input(shape, device, dtype), train_steps=2)
    for _, buf in ours.named_buffers():
        assert buf.dtype in (torch.float32, torch.long)
    with torch.no_grad():
        assert ours(_input(shape, device, dtype)()).dtype == dtype


# ---------------------------------------------------------------------------------------------------------------
# Models built from normbook layers train like torch's
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory,backward", [("batch_norm", "autograd"), ("batch_norm", "closed_form"),
                                              ("group_norm", None), ("layer_norm", None)])
def test_lenet_trains_like_torch(factory, backward):
    make = getattr(normbook.book.models, factory)
    kwargs = {"num_groups": 2} if factory == "group_norm" else {}
    torch.manual_seed(0)
    theirs = normbook.book.models.lenet(make(layers=torch.nn, **kwargs))
    ours = normbook.book.models.lenet(make(layers=nbnn, **kwargs))
    ours.load_state_dict(theirs.state_dict())
    if backward:
        nbnn.set_backward(ours, backward)
    opt1 = torch.optim.SGD(ours.parameters(), lr=0.5)
    opt2 = torch.optim.SGD(theirs.parameters(), lr=0.5)
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, t = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        for model, opt in ((ours, opt1), (theirs, opt2)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), t).backward()
            opt.step()
    for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
        close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    ours.eval(), theirs.eval()
    x = torch.randn(8, 1, 28, 28)
    close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_set_backward():
    model = normbook.book.models.small_cnn(normbook.book.models.batch_norm(layers=nbnn))
    assert nbnn.set_backward(model, "closed_form") is model
    assert all(m.backward == "closed_form" for m in model.modules() if isinstance(m, nbnn.BatchNorm2d))
    with pytest.raises(ValueError, match="backward must be 'autograd' or 'closed_form', got 'manual'"):
        nbnn.set_backward(model, "manual")
    with pytest.raises(ValueError, match="got 'fast'"):
        nbnn.BatchNorm1d(3, backward="fast")


@pytest.mark.parametrize("ours,theirs,shape", [
    (nbnn.LayerNorm(1), torch.nn.LayerNorm(1), [4, 1]),
    (nbnn.GroupNorm(3, 3), torch.nn.GroupNorm(3, 3), [2, 3]),
    (nbnn.InstanceNorm1d(3, affine=True), torch.nn.InstanceNorm1d(3, affine=True), [2, 3, 2]),
], ids=["LN-1", "GN-group-of-1", "IN"])
def test_one_value_per_row_or_group(ours, theirs, shape):
    """With one value per row (or group) x - mean is 0 up to rounding, so outputs are ~bias and input gradients
    are rounding noise amplified by 1/sqrt(eps): compare with an absolute tolerance that allows for it."""
    randomize_(theirs)
    ours.load_state_dict(theirs.state_dict())
    x1 = torch.randn(shape).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = ours(x1), theirs(x2)
    close(y1, y2, atol=1e-4, rtol=1e-4)
    y1.sum().backward(), y2.sum().backward()
    close(x1.grad, x2.grad, atol=1e-3, rtol=0)
