"""Numerical care: inputs with a large mean or a tiny variance, against a float64 reference computed from the very
same float32 values. normbook's two-pass variance must be at least as accurate as torch's kernels, and the
one-pass E[x^2] - E[x]^2 formula (shown here for contrast) must fail these inputs, or the test would prove nothing.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as TF

import normbook.autograd as A
import normbook.functional as F
from _layer_helpers import DEVICES

INPUTS = {
    "1e4+N(0,1)": lambda shape, g: 1e4 + torch.randn(shape, generator=g),
    "100+0.01*N(0,1)": lambda shape, g: 100 + 0.01 * torch.randn(shape, generator=g),
    "2000+N(0,1)": lambda shape, g: 2000 + torch.randn(shape, generator=g),
    "1+1e-4*N(0,1)": lambda shape, g: 1 + 1e-4 * torch.randn(shape, generator=g),  # variance far below eps
    "1e-3*N(0,1)": lambda shape, g: 1e-3 * torch.randn(shape, generator=g),
}

# name -> (ours, torch, shape); each normalizes with statistics of the input (BN in training mode)
LAYERS = {
    "batch_norm": (lambda x: F.batch_norm(x, None, None, training=True),
                   lambda x: TF.batch_norm(x, None, None, training=True), (64, 4, 8, 8)),
    "batch_norm-closed_form": (lambda x: A.batch_norm(x, None, None, training=True),
                               lambda x: TF.batch_norm(x, None, None, training=True), (64, 4, 8, 8)),
    "layer_norm": (lambda x: F.layer_norm(x, x.shape[-1:]), lambda x: TF.layer_norm(x, x.shape[-1:]), (16, 32, 256)),
    "layer_norm-closed_form": (lambda x: A.layer_norm(x, x.shape[-1:]), lambda x: TF.layer_norm(x, x.shape[-1:]),
                               (16, 32, 256)),
    "group_norm": (lambda x: F.group_norm(x, 4), lambda x: TF.group_norm(x, 4), (8, 16, 12, 12)),
}


def _naive_layer_norm(x, eps=1e-5):
    """The one-pass formula normbook avoids."""
    mean = x.mean(-1, keepdim=True)
    var = (x * x).mean(-1, keepdim=True) - mean * mean
    return (x - mean) / torch.sqrt(var.clamp_min(0) + eps)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("data", list(INPUTS))
@pytest.mark.parametrize("layer", list(LAYERS))
def test_as_accurate_as_torch(device, layer, data):
    ours_fn, torch_fn, shape = LAYERS[layer]
    x = INPUTS[data](shape, torch.Generator().manual_seed(0)).float().to(device)
    exact = torch_fn(x.double())                     # float64 from the same float32 values
    err_ours = (ours_fn(x).double() - exact).abs().max().item()
    err_torch = (torch_fn(x).double() - exact).abs().max().item()
    assert err_ours <= 1.5 * err_torch + 2e-6, (err_ours, err_torch)
    # x - mean is formed once, carefully: about float32 resolution of the O(1) output (torch: up to ~2e-3 here)
    assert err_ours < 5e-6, err_ours


def test_the_one_pass_formula_fails_where_normbook_does_not():
    x = (1e4 + torch.randn(16, 256, generator=torch.Generator().manual_seed(0))).float()
    exact = TF.layer_norm(x.double(), [256])
    assert (_naive_layer_norm(x).double() - exact).abs().max() > 0.1
    assert (F.layer_norm(x, [256]).double() - exact).abs().max() < 1e-2


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("data", list(INPUTS))
def test_running_var_as_accurate_as_torch(device, data):
    x = INPUTS[data]((256, 4, 4, 4), torch.Generator().manual_seed(1)).float().to(device)
    exact = x.double().var(dim=(0, 2, 3), unbiased=True)
    results = {}
    for name, fn in (("ours", F.batch_norm), ("closed_form", A.batch_norm), ("torch", TF.batch_norm)):
        rm, rv = torch.zeros(4, device=device), torch.zeros(4, device=device)
        fn(x, rm, rv, training=True, momentum=1.0)
        results[name] = ((rv.double() - exact).abs() / exact).max().item()
    assert results["ours"] <= 1.5 * results["torch"] + 1e-6, results
    assert results["closed_form"] <= 1.5 * results["torch"] + 1e-6, results
    assert results["ours"] < 1e-4, results


@pytest.mark.parametrize("device", DEVICES)
def test_large_mean_gradients(device):
    """The closed-form backward works from the centred input too: its gradient is as accurate as torch's."""
    x = (1e4 + torch.randn(32, 3, 6, 6, generator=torch.Generator().manual_seed(2))).float().to(device)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)).to(device)
    grads = {}
    for name, fn, dtype in (("exact", TF.batch_norm, torch.float64), ("torch", TF.batch_norm, torch.float32),
                            ("ours", F.batch_norm, torch.float32), ("closed_form", A.batch_norm, torch.float32)):
        xi = x.to(dtype).clone().requires_grad_()
        fn(xi, None, None, training=True).backward(g.to(dtype))
        grads[name] = xi.grad.double()
    err = {k: (v - grads["exact"]).abs().max().item() for k, v in grads.items() if k != "exact"}
    assert err["ours"] <= 1.5 * err["torch"] + 1e-5, err
    assert err["closed_form"] <= 1.5 * err["torch"] + 1e-5, err


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_zero_input_is_finite(dtype):
    """torch issue #41527: an all-zero float16 input once gave NaN in LayerNorm."""
    x = torch.zeros(4, 8, dtype=dtype)
    for y in (F.layer_norm(x, [8]), F.group_norm(x.view(4, 8, 1), 2), F.batch_norm(x, None, None, training=True),
              F.rms_norm(x, [8])):
        assert torch.isfinite(y).all() and y.dtype == dtype
