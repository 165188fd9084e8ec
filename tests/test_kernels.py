"""normbook.kernels: Triton LayerNorm, RMSNorm and channels-last BatchNorm.

On the CPU the kernels run in Triton's interpreter, which must be switched on (TRITON_INTERPRET=1) before Triton
is imported; the interpreter tests therefore run in a subprocess (tests/kernels_interpreted.py), so the variable
does not leak into this session. On a GPU the same comparisons run compiled, on real shapes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import normbook.functional as F

HERE = Path(__file__).resolve().parent


def test_kernels_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(HERE / "kernels_interpreted.py"), "-q",
                           "-p", "no:cacheprovider", "-x"], env=env, cwd=HERE.parent, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.bfloat16: dict(rtol=3e-2, atol=3e-2)}


def _fwd_bwd(fn, x, params, dy):
    y = fn(x, *params)
    return (y,) + torch.autograd.grad(y, [x] + [p for p in params if p is not None], dy)


def _close(got, expected, dtype):
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.float(), e.float(), **TOL[dtype])


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4096, 1024), (4096, 4096), (1024, 8192), (33, 3000)])
def test_row_norms_cuda(dtype, shape):
    from normbook import kernels as K
    d = shape[-1]
    x = torch.randn(shape, device="cuda").to(dtype).requires_grad_()
    w = (torch.rand(d, device="cuda") + 0.5).to(dtype).requires_grad_()
    b = torch.randn(d, device="cuda").to(dtype).requires_grad_()
    dy = torch.randn(shape, device="cuda").to(dtype)
    _close(_fwd_bwd(lambda x, w, b: K.layer_norm(x, (d,), w, b), x, [w, b], dy),
           _fwd_bwd(lambda x, w, b: torch.nn.functional.layer_norm(x, (d,), w, b), x, [w, b], dy), dtype)
    _close(_fwd_bwd(lambda x, w: K.rms_norm(x, (d,), w), x, [w], dy),
           _fwd_bwd(lambda x, w: F.rms_norm(x, (d,), w), x, [w], dy), dtype)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(32, 64, 56, 56), (8, 256, 14, 14), (3, 70, 9, 9)])
def test_batch_norm_cuda(dtype, shape):
    from normbook import kernels as K
    c = shape[1]
    x = torch.randn(shape, device="cuda").to(dtype).to(memory_format=torch.channels_last).requires_grad_()
    w = (torch.rand(c, device="cuda") + 0.5).to(dtype).requires_grad_()
    b = torch.randn(c, device="cuda").to(dtype).requires_grad_()
    dy = torch.randn(shape, device="cuda").to(dtype)
    bufs = [(torch.zeros(c, device="cuda", dtype=dtype), torch.ones(c, device="cuda", dtype=dtype))
            for _ in range(2)]
    got = _fwd_bwd(lambda x, w, b: K.batch_norm(x, *bufs[0], w, b, True, 0.1, 1e-5), x, [w, b], dy)
    expected = _fwd_bwd(lambda x, w, b: torch.nn.functional.batch_norm(x, *bufs[1], w, b, True, 0.1, 1e-5),
                        x, [w, b], dy)
    _close(got, expected, dtype)
    _close(bufs[0], bufs[1], dtype)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(4096, 1024), (33, 3000), (64, 65536)])
@pytest.mark.parametrize("kind", ["ln", "rms"])
def test_add_norm_cuda(dtype, shape, kind):
    """The fused residual add + norm against the unfused composition, compiled, on real shapes (rows of 65,536
    values take the looped kernels)."""
    from normbook import kernels as K
    d = shape[-1]
    x, r = (torch.randn(shape, device="cuda").to(dtype).requires_grad_() for _ in range(2))
    w = (torch.rand(d, device="cuda") + 0.5).to(dtype).requires_grad_()
    b = torch.randn(d, device="cuda").to(dtype).requires_grad_() if kind == "ln" else None
    dy, dh = torch.randn(shape, device="cuda").to(dtype), torch.randn(shape, device="cuda").to(dtype)
    leaves = [t for t in (x, r, w, b) if t is not None]

    def run(fused):
        if fused:
            y, h = (K.add_layer_norm(x, r, (d,), w, b) if kind == "ln" else K.add_rms_norm(x, r, (d,), w, 1e-6))
        else:
            h = x + r
            y = (torch.nn.functional.layer_norm(h, (d,), w, b) if kind == "ln"
                 else F.rms_norm(h, (d,), w, 1e-6))
        return (y, h) + torch.autograd.grad([y, h], leaves, [dy, dh])
    _close(run(True), run(False), dtype)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_long_rows_cuda(dtype):
    from normbook import kernels as K
    d = 65536 + 17
    x = torch.randn(48, d, device="cuda").to(dtype).requires_grad_()
    w = (torch.rand(d, device="cuda") + 0.5).to(dtype).requires_grad_()
    b = torch.randn(d, device="cuda").to(dtype).requires_grad_()
    dy = torch.randn(48, d, device="cuda").to(dtype)
    _close(_fwd_bwd(lambda x, w, b: K.layer_norm(x, (d,), w, b), x, [w, b], dy),
           _fwd_bwd(lambda x, w, b: torch.nn.functional.layer_norm(x, (d,), w, b), x, [w, b], dy), dtype)
    _close(_fwd_bwd(lambda x, w: K.rms_norm(x, (d,), w), x, [w], dy),
           _fwd_bwd(lambda x, w: F.rms_norm(x, (d,), w), x, [w], dy), dtype)
