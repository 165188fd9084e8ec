"""normbook.kernels under Triton's CPU interpreter (run by tests/test_kernels.py in a subprocess with
TRITON_INTERPRET=1, so the variable never reaches the rest of the test session). Small shapes: the interpreter
executes every program of a kernel in Python."""
import os
import re

import pytest
import torch

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1 (tests/test_kernels.py does)"

import normbook.functional as F  # noqa: E402
from normbook import kernels as K  # noqa: E402

TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}
DTYPES = [torch.float32, torch.bfloat16]


def _grads(fn, inputs, dy):
    y = fn(*inputs)
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    return (y,) + torch.autograd.grad(y, leaves, dy)


def _close(got, expected, dtype):
    for g, e in zip(got, expected):
        assert g.dtype == e.dtype and g.shape == e.shape
        torch.testing.assert_close(g.float(), e.float(), **TOL[dtype])


def _param(shape, dtype, offset=0.0):
    return (torch.randn(shape) * 0.5 + offset).to(dtype).requires_grad_()


# rows of 37 (not a power of two) and 64; 3 rows (fewer than the 8 backward programs) and 40 rows
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 37), (4, 10, 64), (2, 3, 5, 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm(dtype, shape, affine):
    ns = shape[-1:] if len(shape) < 4 else shape[-2:]
    x = (torch.randn(shape) * 2 + 3).to(dtype).requires_grad_()
    w = _param(ns, dtype, 1.0) if affine else None
    b = _param(ns, dtype) if affine else None
    dy = torch.randn(shape).to(dtype)
    got = _grads(lambda *a: K.layer_norm(a[0], ns, a[1], a[2], 1e-5), (x, w, b), dy)
    expected = _grads(lambda *a: F.layer_norm(a[0], ns, a[1], a[2], 1e-5), (x, w, b), dy)
    _close(got, expected, dtype)
    if dtype == torch.float32:   # and torch's own kernel
        _close(got, _grads(lambda *a: torch.nn.functional.layer_norm(a[0], ns, a[1], a[2], 1e-5),
                           (x, w, b), dy), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 37), (4, 10, 64)])
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rms_norm(dtype, shape, eps):
    ns = shape[-1:]
    x = torch.randn(shape).to(dtype).requires_grad_()
    w = _param(ns, dtype, 1.0)
    dy = torch.randn(shape).to(dtype)
    got = _grads(lambda *a: K.rms_norm(a[0], ns, a[1], eps), (x, w), dy)
    expected = _grads(lambda *a: F.rms_norm(a[0], ns, a[1], eps), (x, w), dy)
    _close(got, expected, dtype)
    if dtype == torch.float32:
        _close(got, _grads(lambda *a: torch.nn.functional.rms_norm(a[0], ns, a[1], eps), (x, w), dy), dtype)


def _add_norm(kind, fused):
    """(x, r, w, b) -> (y, h): the fused kernel, or the unfused composition h = x + r, y = norm(h)."""
    def fn(x, r, w, b, ns, eps):
        if fused:
            if kind == "ln":
                return K.add_layer_norm(x, r, ns, w, b, eps)
            return K.add_rms_norm(x, r, ns, w, eps)
        h = x + r
        return (F.layer_norm(h, ns, w, b, eps) if kind == "ln" else F.rms_norm(h, ns, w, eps)), h
    return fn


ADD_CASES = [(kind, dtype, shape) for kind in ("ln", "rms") for dtype in DTYPES
             for shape in [(3, 37), (2, 5, 64)]]


def _sum_within_one_ulp(h, x, r):
    """h equals x + r (float32), or lies within one unit in the last place of it (bfloat16: Triton's
    interpreter truncates a float32 value stored to bfloat16, where compiled kernels and torch round to
    nearest)."""
    exact = x.detach().double() + r.detach().double()
    if h.dtype == torch.float32:
        torch.testing.assert_close(h.detach(), (x + r).detach(), rtol=0, atol=0)
    else:
        ulp = exact.abs() * 2.0 ** -7 + 1e-30
        assert ((h.detach().double() - exact).abs() <= ulp).all()


def _unfused_from(h, kind, w, b, ns, dy, dh, uses):
    """The composition's outputs and gradients given the sum h: y = norm(h); d(x) = d(residual) =
    d(norm)/dh + the gradient of the residual output."""
    hl = h.detach().clone().requires_grad_()
    y = F.layer_norm(hl, ns, w, b, 1e-5) if kind == "ln" else F.rms_norm(hl, ns, w, 1e-5)
    params = [t for t in (w, b) if t is not None]
    if uses == "residual":
        return (y, h, dh, dh, *[torch.zeros_like(t) for t in params])
    grads = torch.autograd.grad(y, [hl] + params, dy)
    d_sum = grads[0] + (dh if uses == "both" else 0)
    return (y, h, d_sum, d_sum, *grads[1:])


ADD_CASES = [(kind, dtype, shape) for kind in ("ln", "rms") for dtype in DTYPES
             for shape in [(3, 37), (2, 5, 64)]]


@pytest.mark.parametrize("kind, dtype, shape", ADD_CASES)
@pytest.mark.parametrize("uses", ["both", "output", "residual"])
def test_add_norm_equals_composition(kind, dtype, shape, uses):
    """Forward: the sum equals x + r and the output equals the norm of that sum. Backward: the gradients of x,
    the residual, the weight and the bias equal the unfused composition's, with the gradient arriving through
    the normalized output, the new residual stream, or both (an unused output brings no gradient)."""
    ns = shape[-1:]
    torch.manual_seed(0)
    x = (torch.randn(shape) * 2 + 1).to(dtype).requires_grad_()
    r = torch.randn(shape).to(dtype).requires_grad_()
    w = _param(ns, dtype, 1.0)
    b = _param(ns, dtype) if kind == "ln" else None
    dy, dh = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    y, h = _add_norm(kind, True)(x, r, w, b, ns, 1e-5)
    _sum_within_one_ulp(h, x, r)
    leaves = [t for t in (x, r, w, b) if t is not None]
    outs, grad_outs = {"both": ([y, h], [dy, dh]), "output": ([y], [dy]), "residual": ([h], [dh])}[uses]
    grads = torch.autograd.grad(outs, leaves, grad_outs, allow_unused=True)
    grads = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]
    _close((y, h, *grads), _unfused_from(h, kind, w, b, ns, dy, dh, uses), dtype)
    if dtype == torch.float32:   # and the composition computed from x and r themselves
        y, h = _add_norm(kind, True)(x, r, w, b, ns, 1e-5)
        y2, h2 = _add_norm(kind, False)(x, r, w, b, ns, 1e-5)
        _close((y, h, *torch.autograd.grad([y, h], leaves, [dy, dh])),
               (y2, h2, *torch.autograd.grad([y2, h2], leaves, [dy, dh])), dtype)


# Rows longer than one block: MAX_BLOCK_BYTES lowered so that short rows take the looped kernels, with tiles of
# LOOP_TILE_BYTES that do not divide the row (a masked tail tile); and one row of 70,000 float32 values (280 KB,
# more than one 64 KiB block) with the package's own limits.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 37), (12, 40), (2, 3, 100)])
def test_looped_kernels(monkeypatch, dtype, shape):
    monkeypatch.setattr(K, "MAX_BLOCK_BYTES", 32)
    monkeypatch.setattr(K, "LOOP_TILE_BYTES", 32)
    ns = shape[-1:]
    assert not K._fits_one_block(shape[-1], torch.empty(0, dtype=dtype).element_size())
    x = (torch.randn(shape) * 3 + 100).to(dtype).requires_grad_()   # a large mean: Welford must not cancel
    r = torch.randn(shape).to(dtype).requires_grad_()
    w, b = _param(ns, dtype, 1.0), _param(ns, dtype)
    dy, dh = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    for kernel, book in ((lambda x, w, b: K.layer_norm(x, ns, w, b), lambda x, w, b: F.layer_norm(x, ns, w, b)),
                         (lambda x, w, b: K.rms_norm(x, ns, w) + b, lambda x, w, b: F.rms_norm(x, ns, w) + b)):
        _close(_grads(kernel, (x, w, b), dy), _grads(book, (x, w, b), dy), dtype)
    for kind in ("ln", "rms"):
        bias = b if kind == "ln" else None
        y, h = _add_norm(kind, True)(x, r, w, bias, ns, 1e-5)
        _sum_within_one_ulp(h, x, r)
        leaves = [t for t in (x, r, w, bias) if t is not None]
        _close((y, h, *torch.autograd.grad([y, h], leaves, [dy, dh])),
               _unfused_from(h, kind, w, bias, ns, dy, dh, "both"), dtype)


@pytest.mark.parametrize("kind", ["ln", "rms"])
def test_long_rows(kind):
    d = 70_000
    assert not K._fits_one_block(d, 4) and K.looped_launch_config(d, 4) == (4096, 16)
    torch.manual_seed(0)
    x = (torch.randn(3, d) * 2 + 5).requires_grad_()
    w, b = _param(d, torch.float32, 1.0), _param(d, torch.float32)
    dy = torch.randn(3, d)
    if kind == "ln":
        got = _grads(lambda x, w, b: K.layer_norm(x, (d,), w, b), (x, w, b), dy)
        expected = _grads(lambda x, w, b: torch.nn.functional.layer_norm(x, (d,), w, b), (x, w, b), dy)
    else:
        got = _grads(lambda x, w: K.rms_norm(x, (d,), w), (x, w), dy)
        expected = _grads(lambda x, w: F.rms_norm(x, (d,), w), (x, w), dy)
    _close(got, expected, torch.float32)


def test_add_norm_checks_the_residual():
    x = torch.randn(4, 6)
    with pytest.raises(RuntimeError, match="residual must have the input's shape and dtype"):
        K.add_layer_norm(x, torch.randn(4, 5), (6,))
    with pytest.raises(RuntimeError, match="residual must have the input's shape and dtype"):
        K.add_rms_norm(x, torch.randn(4, 6).bfloat16(), (6,))


# channels-last 4-D (rows not a multiple of the tile), a 2-D (N, C) input, and a 3-D (N, C, L) input
@pytest.mark.parametrize("dtype, shape, affine", [
    (dtype, shape, True) for dtype in DTYPES for shape in [(3, 6, 5, 7), (2, 70, 3, 3), (9, 5), (4, 3, 11)]
] + [(torch.float32, (3, 6, 5, 7), False), (torch.bfloat16, (9, 5), False)])
def test_batch_norm_training(dtype, shape, affine):
    c = shape[1]
    x = (torch.randn(shape) * 2 + 3).to(dtype)
    if x.dim() == 4:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    w = _param(c, dtype, 1.0) if affine else None
    b = _param(c, dtype) if affine else None
    dy = torch.randn(shape).to(dtype)
    buffers = []
    results = []
    rm0, rv0 = torch.randn(c).to(dtype), (torch.rand(c) + 0.5).to(dtype)
    for fn in (K.batch_norm, F.batch_norm):
        rm, rv = rm0.clone(), rv0.clone()
        results.append(_grads(lambda *a, fn=fn, rm=rm, rv=rv: fn(a[0], rm, rv, a[1], a[2], True, 0.1, 1e-5),
                              (x, w, b), dy))
        buffers.append((rm, rv))
    _close(results[0], results[1], dtype)
    _close(buffers[0], buffers[1], dtype)


def test_batch_norm_eval_is_functional():
    x = torch.randn(4, 3, 2, 2)
    rm, rv = torch.randn(3), torch.rand(3) + 0.5
    torch.testing.assert_close(K.batch_norm(x, rm, rv, None, None, False),
                               F.batch_norm(x, rm, rv, None, None, False))


def test_launch_config():
    assert K.row_launch_config(37, 4) == (64, 1)
    assert K.row_launch_config(4096, 4) == (4096, 16)
    assert K.row_launch_config(1024, 2) == (1024, 2)
    with pytest.raises(ValueError, match="looped kernels"):
        K.row_launch_config(20000, 4)
    assert K.looped_launch_config(20000, 4) == (4096, 16)
    assert K.looped_launch_config(70000, 2) == (8192, 16)
    assert K._fits_one_block(16384, 4) and not K._fits_one_block(16385, 4)


def test_float64_rejected():
    with pytest.raises(TypeError):
        K.layer_norm(torch.randn(2, 3, dtype=torch.float64), (3,))


def test_batch_norm_updates_running_stats_with_functional(monkeypatch):
    """One implementation of the running-statistics update: the kernel path calls normbook.functional's."""
    calls = []
    update = F._update_running_stats
    monkeypatch.setattr(F, "_update_running_stats", lambda *a: calls.append(a[4:]) or update(*a))
    K.batch_norm(torch.randn(4, 3, 2, 2), torch.zeros(3), torch.ones(3), None, None, True, 0.3, 1e-5)
    assert calls == [(16, 0.3)]   # n = N * H * W values per channel, the momentum


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_momentum_none_raises_as_torch(training):
    """momentum must be a number in the functional form, as in torch.nn.functional.batch_norm (momentum=None, the
    cumulative average, is a module option)."""
    x = torch.randn(4, 3, 2, 2)
    with pytest.raises(TypeError, match="argument 'momentum'"):
        torch.nn.functional.batch_norm(x, torch.zeros(3), torch.ones(3), None, None, training, None)
    with pytest.raises(TypeError, match=r"batch_norm\(\): argument 'momentum' must be float, not NoneType"):
        K.batch_norm(x, torch.zeros(3), torch.ones(3), None, None, training, None)


def _torch_message(fn):
    with pytest.raises(RuntimeError) as err:
        fn()
    return str(err.value)


X6 = torch.randn(4, 6)
X4D = torch.randn(4, 3, 2, 2)
TF = torch.nn.functional
WRONG_SHAPES = {   # (normbook.kernels call, torch.nn.functional call)
    "layer_norm weight (5,)": (lambda: K.layer_norm(X6, (6,), torch.ones(5)),
                               lambda: TF.layer_norm(X6, (6,), torch.ones(5))),
    "layer_norm weight (6, 1)": (lambda: K.layer_norm(X6, (6,), torch.ones(6, 1)),
                                 lambda: TF.layer_norm(X6, (6,), torch.ones(6, 1))),
    "layer_norm bias (2, 3)": (lambda: K.layer_norm(X6, (6,), None, torch.ones(2, 3)),
                               lambda: TF.layer_norm(X6, (6,), None, torch.ones(2, 3))),
    "layer_norm normalized_shape": (lambda: K.layer_norm(X6, (5,)), lambda: TF.layer_norm(X6, (5,))),
    "rms_norm weight (5,)": (lambda: K.rms_norm(X6, (6,), torch.ones(5)),
                             lambda: TF.rms_norm(X6, (6,), torch.ones(5))),
    "rms_norm weight (2, 3)": (lambda: K.rms_norm(X6, (6,), torch.ones(2, 3)),
                               lambda: TF.rms_norm(X6, (6,), torch.ones(2, 3))),
    "batch_norm weight (4,)": (lambda: K.batch_norm(X4D, None, None, torch.ones(4), None, True),
                               lambda: TF.batch_norm(X4D, None, None, torch.ones(4), None, True)),
    "batch_norm bias (2,)": (lambda: K.batch_norm(X4D, None, None, None, torch.ones(2), True),
                             lambda: TF.batch_norm(X4D, None, None, None, torch.ones(2), True)),
}


@pytest.mark.parametrize("name", WRONG_SHAPES)
def test_wrong_shapes_raise_torchs_error(name):
    ours, theirs = WRONG_SHAPES[name]
    with pytest.raises(RuntimeError, match=re.escape(_torch_message(theirs))):
        ours()


@pytest.mark.parametrize("layout", ["strided", "column"])
def test_strided_and_column_parameters(layout):
    """The kernels index parameters as contiguous vectors: a strided view (or, for BatchNorm, a (C, 1) weight,
    which torch accepts) is made contiguous, and its gradient comes back in its own shape."""
    def param(n):
        if layout == "strided":
            return (torch.rand(2 * n) + 0.5)[::2].detach().requires_grad_()
        return (torch.rand(n, 1) + 0.5).requires_grad_()
    x = torch.randn(4, 3, 2, 2).requires_grad_()
    w, b = param(3), param(3)
    dy = torch.randn(4, 3, 2, 2)
    got = _grads(lambda *a: K.batch_norm(a[0], None, None, a[1], a[2], True), (x, w, b), dy)
    _close(got, _grads(lambda *a: F.batch_norm(a[0], None, None, a[1], a[2], True), (x, w, b), dy), torch.float32)
    if layout == "strided":
        x2, w2, b2, dy2 = torch.randn(5, 3).requires_grad_(), param(3), param(3), torch.randn(5, 3)
        for k, f in ((K.layer_norm, F.layer_norm), (lambda x, s, w, b: K.rms_norm(x, s, w) + b,
                                                    lambda x, s, w, b: F.rms_norm(x, s, w) + b)):
            _close(_grads(lambda *a, k=k: k(a[0], (3,), a[1], a[2]), (x2, w2, b2), dy2),
                   _grads(lambda *a, f=f: f(a[0], (3,), a[1], a[2]), (x2, w2, b2), dy2), torch.float32)


KERNEL_FUNCTIONS = {   # each Function, called through its wrapper on a small float32 input
    "LayerNormFunction": lambda x, w: K.layer_norm(x, x.shape[-1:], w, None),
    "RMSNormFunction": lambda x, w: K.rms_norm(x, x.shape[-1:], w),
    "BatchNormFunction": lambda x, w: K.batch_norm(x, None, None, w, None, True, 0.1, 1e-5),
    "AddNormFunction": lambda x, w: K.add_layer_norm(x, torch.ones_like(x), x.shape[-1:], w, None)[0],
    "AddNormFunction(rms)": lambda x, w: K.add_rms_norm(x, torch.ones_like(x), x.shape[-1:], w)[0],
}


@pytest.mark.parametrize("name", KERNEL_FUNCTIONS)
@pytest.mark.parametrize("loss", ["quadratic", "linear"])
def test_create_graph_raises(name, loss):
    """The backward kernels work outside autograd's graph: a backward pass that builds a graph (for a second
    derivative) raises instead of returning a wrong one."""
    x, w = (torch.randn(6, 5) + 1).requires_grad_(), _param(5, torch.float32, 1.0)
    y = KERNEL_FUNCTIONS[name](x, w)
    assert type(y.grad_fn).__name__ == name.split("(")[0] + "Backward"
    c = torch.randn_like(y)
    loss_value = (c * y * y).sum() if loss == "quadratic" else (c * y).sum()
    with pytest.raises(RuntimeError, match="double backward is not supported"):
        torch.autograd.grad(loss_value, (x, w), create_graph=True)
