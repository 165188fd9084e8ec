"""Shared helpers for the layer tests (test_functional, test_nn_parity, test_autograd_backward, test_errors,
test_precision, test_fold)."""
from __future__ import annotations

import inspect
import os

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

CUDA = torch.cuda.is_available()

# Every parity test runs on the CPU and, where there is one, on a GPU.
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not CUDA, reason="CUDA not available")),
]

# Modest example counts keep the layer suite under two minutes on two CPU cores.
# In CI (CI=true) hypothesis draws the same examples on every run, so a red CI is reproducible; elsewhere it
# explores new ones each run. conftest.py seeds torch per test, so the tensors drawn inside a test repeat too.
IN_CI = bool(os.environ.get("CI"))
HYPOTHESIS = settings(max_examples=30, deadline=None, derandomize=IN_CI,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(max_examples=15, deadline=None, derandomize=IN_CI, suppress_health_check=[HealthCheck.too_slow])

# Tolerances: torch.testing.assert_close's defaults per dtype (fp32 rtol 1.3e-6 / atol 1e-5, fp16 1e-3 / 1e-5,
# bf16 1.6e-2 / 1e-5); bitwise equality is impossible because ATen computes x * alpha + beta.
# Gradients are sums over many values, so they get a looser absolute tolerance, scaled by the reduction size.
LOW_PRECISION_TOL = {torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=5e-2, atol=5e-2)}


def close(actual, expected, **kw):
    torch.testing.assert_close(actual, expected, **kw)


def grad_close(actual, expected, reduce_size: int = 1, **kw):
    """Gradients accumulate rounding errors over ``reduce_size`` terms: widen atol accordingly."""
    kw.setdefault("rtol", 1e-4)
    kw.setdefault("atol", 1e-5 * max(1.0, reduce_size ** 0.5))
    torch.testing.assert_close(actual, expected, **kw)


def copy_params(src: torch.nn.Module, dst: torch.nn.Module) -> None:
    """Give dst the parameters and buffers of src (same names)."""
    dst.load_state_dict(src.state_dict())


def randomize_(module: torch.nn.Module, generator: torch.Generator = None) -> torch.nn.Module:
    """Random affine parameters and running statistics, so tests do not pass by the grace of weight=1, bias=0."""
    with torch.no_grad():
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.dtype == torch.long:
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            elif name.endswith("weight"):
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=generator))
    return module


# ---------------------------------------------------------------------------------------------------------------
# torch versions. normbook mirrors torch 2.14 (what `make test` installs); the GPU machines and Colab may run an
# older torch. Numerical parity holds on any torch >= 2.4, so those tests adapt; the tests of torch 2.14's exact
# surface (constructor signatures, repr, new error messages) are skipped on an older torch, with the reason.
# ---------------------------------------------------------------------------------------------------------------
REFERENCE_TORCH = (2, 14)
TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
OLDER_TORCH = TORCH_VERSION < REFERENCE_TORCH
requires_reference_torch = pytest.mark.skipif(
    OLDER_TORCH,
    reason=f"checks torch {REFERENCE_TORCH[0]}.{REFERENCE_TORCH[1]}'s exact API; this is torch {torch.__version__}")


def torch_takes(name: str, keyword: str) -> bool:
    """Whether torch.nn.<name>'s constructor accepts ``keyword`` (``bias=`` on the norms is recent)."""
    return keyword in inspect.signature(getattr(torch.nn, name).__init__).parameters


def torch_nn(name: str, *args, **kwargs) -> torch.nn.Module:
    """torch.nn.<name>(*args, **kwargs). On a torch whose constructor lacks a keyword: a default value (bias=True)
    is dropped, since that is what the older torch does anyway; any other value skips the test."""
    for keyword in [k for k in kwargs if not torch_takes(name, k)]:
        if keyword == "bias" and kwargs[keyword] is True:
            del kwargs[keyword]
        else:
            pytest.skip(f"torch {torch.__version__}'s nn.{name} has no {keyword}= argument")
    return getattr(torch.nn, name)(*args, **kwargs)


def bias_flags(name: str):
    """Hypothesis strategy for ``bias=``: both values where torch has the argument, True alone where it has not."""
    return st.booleans() if torch_takes(name, "bias") else st.just(True)
