"""Second derivatives: exact where normbook promises them, an error everywhere else.

* ``normbook.functional`` is plain tensor code: autograd differentiates it to any order. Every layer passes
  ``torch.autograd.gradgradcheck`` in float64 and gives torch's second derivative.
* Every custom ``torch.autograd.Function`` of normbook (the closed-form backward passes of ``normbook.autograd``,
  the SyncBatchNorm Function of ``normbook.distributed``, the Triton Functions of ``normbook.kernels``, chapter 10's
  compile-friendly Functions in ``normbook.book.ch10``) computes
  its gradient from tensors saved in ``forward`` without a graph, so a graph built through it would give a wrong
  second derivative. Each one raises instead, at the backward pass that asks for the graph (``create_graph=True``).
  The Triton Functions are tested under Triton's interpreter in tests/kernels_interpreted.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as TF

import normbook.autograd as A
import normbook.functional as F
import normbook.nn as nbnn
from normbook import distributed as D

SRC = Path(__file__).resolve().parent.parent / "src" / "normbook"
F64 = dict(dtype=torch.float64)
DOUBLE_BACKWARD = "double backward is not supported"


def _f64(*shape, shift=0.0):
    return (torch.randn(*shape, **F64) + shift).requires_grad_()


def _stats(c):
    return torch.randn(c, **F64), torch.rand(c, **F64) + 0.5


# Each layer as fn(x, w, b) for normbook.functional and for torch.nn.functional; shapes of x, w and b.
rm3, rv3 = _stats(3)
LAYERS = {
    "batch_norm-train": (lambda f: lambda x, w, b: f.batch_norm(x, rm3.clone(), rv3.clone(), w, b, True, 0.1, 1e-5),
                         (4, 3, 2, 2), (3,)),
    "batch_norm-eval": (lambda f: lambda x, w, b: f.batch_norm(x, rm3, rv3, w, b, False, 0.1, 1e-5),
                        (4, 3, 2), (3,)),
    "batch_norm-2d": (lambda f: lambda x, w, b: f.batch_norm(x, None, None, w, b, True, 0.1, 1e-5), (5, 3), (3,)),
    "instance_norm": (lambda f: lambda x, w, b: f.instance_norm(x, None, None, w, b, True, 0.1, 1e-5),
                      (2, 3, 5), (3,)),
    "instance_norm-running": (lambda f: lambda x, w, b: f.instance_norm(x, rm3, rv3, w, b, False, 0.1, 1e-5),
                              (2, 3, 5), (3,)),
    "layer_norm": (lambda f: lambda x, w, b: f.layer_norm(x, [4, 5], w, b, 1e-5), (3, 4, 5), (4, 5)),
    "group_norm": (lambda f: lambda x, w, b: f.group_norm(x, 3, w, b, 1e-5), (2, 6, 3, 2), (6,)),
    "rms_norm": (lambda f: lambda x, w, b: f.rms_norm(x, [5], w, 1e-5) + b, (3, 4, 5), (5,)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_functional_passes_gradgradcheck(name):
    make, xshape, pshape = LAYERS[name]
    x, w, b = _f64(*xshape, shift=1.0), _f64(*pshape, shift=1.0), _f64(*pshape)
    assert torch.autograd.gradgradcheck(make(F), (x, w, b))


def test_weight_standardization_passes_gradgradcheck():
    assert torch.autograd.gradgradcheck(F.weight_standardization, (_f64(4, 3, 2, 2),))


def _grad_norm_gradient(fn, x, w, b, c, inputs):
    """d/d(inputs) of ||dL/dx||^2 for L = sum(c * fn(x, w, b)^2): the gradient of a gradient penalty."""
    y = fn(x, w, b)
    dx, = torch.autograd.grad((c * y * y).sum(), x, create_graph=True)
    return torch.autograd.grad(dx.pow(2).sum(), inputs)


@pytest.mark.parametrize("name", LAYERS)
def test_functional_second_derivative_equals_torch(name):
    make, xshape, pshape = LAYERS[name]
    x, w, b = _f64(*xshape, shift=1.0), _f64(*pshape, shift=1.0), _f64(*pshape)
    c = torch.randn(xshape, **F64)
    ours = _grad_norm_gradient(make(F), x, w, b, c, (x, w, b))
    theirs = _grad_norm_gradient(make(TF), x, w, b, c, (x, w, b))
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# The custom Functions refuse to build a graph
# ---------------------------------------------------------------------------------------------------------------
CLOSED_FORM = {
    "autograd.batch_norm-train": lambda x, w, b: A.batch_norm(x, None, None, w, b, True),
    "autograd.batch_norm-eval": lambda x, w, b: A.batch_norm(x, rm3, rv3, w, b, False),
    "autograd.layer_norm": lambda x, w, b: A.layer_norm(x, x.shape[-1:], w, b),
    "nn.BatchNorm1d(closed_form)": lambda x, w, b: _module(nbnn.BatchNorm1d(3, backward="closed_form"), w, b)(x),
    "nn.LayerNorm(closed_form)": lambda x, w, b: _module(nbnn.LayerNorm(3, backward="closed_form"), w, b)(x),
}


def _module(m, w, b):
    """m in float64 with w and b (leaves of the test's graph) in place of its parameters."""
    m.double()
    del m.weight, m.bias
    m.weight, m.bias = w, b
    return m


def _inputs():
    return _f64(4, 3, shift=1.0), _f64(3, shift=1.0), _f64(3)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
@pytest.mark.parametrize("name", CLOSED_FORM)
@pytest.mark.parametrize("loss", ["quadratic", "linear"])
def test_closed_form_create_graph_raises(name, loss):
    """Whatever the loss: with a linear one the incoming gradient does not require grad (torch's
    once_differentiable then returns a gradient without a graph instead of raising)."""
    fn = CLOSED_FORM[name]
    x, w, b = _inputs()
    y = fn(x, w, b)
    c = torch.randn_like(y)
    loss_value = (c * y * y).sum() if loss == "quadratic" else (c * y).sum()
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
        torch.autograd.grad(loss_value, (x, w, b), create_graph=True)
    y = fn(x, w, b)
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
        (c * y).sum().backward(create_graph=True)


@pytest.mark.parametrize("name", ["autograd.batch_norm-train", "autograd.layer_norm"])
def test_closed_form_gradgradcheck_raises(name):
    x, w, b = _inputs()
    assert torch.autograd.gradcheck(CLOSED_FORM[name], (x, w, b))
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
        torch.autograd.gradgradcheck(CLOSED_FORM[name], (x, w, b))


def test_torch_once_differentiable_misses_what_we_catch():
    """Why normbook.autograd does not use torch.autograd.function.once_differentiable (its docstring says so):
    with torch.autograd.grad(..., inputs) the error node it adds is on no path to the inputs and never runs, and
    the wrong second derivative comes back silently."""
    from torch.autograd.function import once_differentiable

    class Once(A.BatchNormFunction):   # once_differentiable runs backward under no_grad: our check is silent
        backward = staticmethod(once_differentiable(A.BatchNormFunction.backward))

    x = _f64(5, 3)
    c = torch.randn(5, 3, **F64)
    y = Once.apply(x, None, None, None, None, True, 0.1, 1e-5)
    dx, = torch.autograd.grad((c * y * y).sum(), x, create_graph=True)
    silent, = torch.autograd.grad(dx.pow(2).sum() + x.pow(2).sum(), x)        # no error ...
    y = TF.batch_norm(x, None, None, None, None, True)
    dx, = torch.autograd.grad((c * y * y).sum(), x, create_graph=True)
    exact, = torch.autograd.grad(dx.pow(2).sum() + x.pow(2).sum(), x)
    torch.testing.assert_close(silent, 2 * x)          # ... every path through BatchNorm is lost ...
    assert not torch.allclose(silent, exact)           # ... and the answer is wrong


# ---------------------------------------------------------------------------------------------------------------
# SyncBatchNorm's Function, in a one-process gloo group inside this test process
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def one_process_group(tmp_path):
    if dist.is_initialized():
        pytest.fail("a process group is already initialized in this test process")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_sync_batch_norm_create_graph_raises(one_process_group):
    x, w, b = _f64(6, 3, 2, shift=1.0), _f64(3, shift=1.0), _f64(3)
    rm, rv = _stats(3)
    y = D.sync_batch_norm(x, rm, rv, w, b, True)
    c = torch.randn_like(y)
    # the first derivative is torch's BatchNorm's (one process: the whole batch)
    ours = torch.autograd.grad((c * y * y).sum(), (x, w, b), retain_graph=True)
    yt = TF.batch_norm(x, None, None, w, b, True)
    theirs = torch.autograd.grad((c * yt * yt).sum(), (x, w, b))
    for o, t in zip(ours, theirs):
        torch.testing.assert_close(o, t)
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
        torch.autograd.grad((c * y * y).sum(), (x, w, b), create_graph=True)
    module = D.SyncBatchNorm(3).double()
    y = module(x)
    with pytest.raises(RuntimeError, match=DOUBLE_BACKWARD):
        (c * y).sum().backward(create_graph=True)


# ---------------------------------------------------------------------------------------------------------------
# Every custom Function in the package is covered above or in tests/kernels_interpreted.py
# ---------------------------------------------------------------------------------------------------------------
COVERED = {   # (module file, class) -> (test file, test)
    ("autograd.py", "BatchNormFunction"): ("test_double_backward.py", "test_closed_form_create_graph_raises"),
    ("autograd.py", "LayerNormFunction"): ("test_double_backward.py", "test_closed_form_create_graph_raises"),
    ("distributed.py", "_SyncBatchNormFn"): ("test_double_backward.py", "test_sync_batch_norm_create_graph_raises"),
    ("kernels.py", "LayerNormFunction"): ("kernels_interpreted.py", "test_create_graph_raises"),
    ("kernels.py", "RMSNormFunction"): ("kernels_interpreted.py", "test_create_graph_raises"),
    ("kernels.py", "BatchNormFunction"): ("kernels_interpreted.py", "test_create_graph_raises"),
    ("kernels.py", "AddNormFunction"): ("kernels_interpreted.py", "test_create_graph_raises"),
    ("ch10.py", "LayerNormFunction"): ("test_ch10.py", "test_create_graph_raises"),
    ("ch10.py", "RMSNormFunction"): ("test_ch10.py", "test_create_graph_raises"),
    ("ch10.py", "GroupNormFunction"): ("test_ch10.py", "test_create_graph_raises"),
    ("ch10.py", "BatchNormFunction"): ("test_ch10.py", "test_create_graph_raises"),
}


def test_every_custom_function_is_covered():
    """A new autograd.Function in src/normbook needs a double-backward test (and an entry in COVERED)."""
    found = set()
    for path in SRC.rglob("*.py"):
        for name in re.findall(r"^class (\w+)\((?:torch\.)?(?:autograd\.)?Function\)", path.read_text(), re.M):
            found.add((path.name, name))
    assert found == set(COVERED), f"without a double-backward test: {found - set(COVERED)}"
    for test_file, test in set(COVERED.values()):
        assert f"def {test}(" in (Path(__file__).parent / test_file).read_text(), (test_file, test)
