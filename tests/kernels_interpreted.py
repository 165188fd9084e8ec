"""normbook.kernels under Triton's CPU interpreter (run by tests/test_kernels.py in a subprocess with
TRITON_INTERPRET=1, so the variable never reaches the rest of the test session). Small shapes: the interpreter
executes every program of a kernel in Python."""
import os

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
        results.append(_grads(lambda *a: fn(a[0], rm, rv, a[1], a[2], True, 0.1, 1e-5), (x, w, b), dy))
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
    with pytest.raises(ValueError):
        K.row_launch_config(20000, 4)


def test_float64_rejected():
    with pytest.raises(TypeError):
        K.layer_norm(torch.randn(2, 3, dtype=torch.float64), (3,))
