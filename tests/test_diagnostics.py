"""normbook.diagnostics: hooks, saturation, gradient measures and the stopwatch."""
import math

import pytest
import torch
from torch import nn

from normbook.book import diagnostics as D
from normbook.book.models import batch_norm, deep_mlp


def test_recorder_collects_every_activation_and_removes_hooks():
    torch.manual_seed(0)
    net = deep_mlp(5, 8, init="kaiming", bias=False)
    x = torch.randn(4, 8)
    with D.ActivationRecorder(net, nn.ReLU) as rec:
        out = net(x)
    assert len(rec.outputs) == 5 and rec.names == ["1", "3", "5", "7", "9"]
    assert torch.equal(rec.outputs[-1], out.detach())
    assert not rec.outputs[0].requires_grad
    assert all(len(m._forward_hooks) == 0 for m in net.modules())
    assert rec.stds() == pytest.approx([t.double().std().item() for t in rec.outputs])


def test_recorder_refuses_a_model_without_the_type():
    with pytest.raises(ValueError, match="nothing would be recorded"):
        with D.ActivationRecorder(nn.Linear(2, 2), nn.Sigmoid):
            pass


def test_activation_std_follows_the_variance_recursion():
    torch.manual_seed(0)
    x = torch.randn(64, 256)
    stds = D.activation_std(deep_mlp(20, 256, init="default", bias=False), x)
    assert len(stds) == 20
    per_layer = (stds[-1] / stds[0]) ** (1 / 19)
    assert per_layer == pytest.approx(1 / math.sqrt(6), rel=0.05)     # gain 1/6 on E[h^2]
    bn = D.activation_std(deep_mlp(20, 256, init="normal", norm=batch_norm(), bias=False), x)
    assert all(abs(s - math.sqrt(0.5 - 1 / (2 * math.pi))) < 0.03 for s in bn)


def test_nonfinite_layers_and_first_nonfinite():
    torch.manual_seed(0)
    info = D.nonfinite_layers(deep_mlp(60, 256, init="normal", bias=False), torch.randn(16, 256))
    assert 30 <= info["first_inf"] <= 40 and info["first_nan"] >= info["first_inf"]
    assert math.isfinite(info["max_finite_std"]) and info["max_finite_std"] > 1e30
    ok = D.nonfinite_layers(deep_mlp(5, 16, init="kaiming", bias=False), torch.randn(4, 16))
    assert ok["first_inf"] is None and ok["first_nan"] is None
    assert D.first_nonfinite([1.0, 2.0, float("inf"), float("nan")]) == 3
    assert D.first_nonfinite([1.0]) is None


def test_saturation_fraction():
    t = torch.tensor([0.0, 0.02, 0.03, 0.5, 0.97, 0.99, 0.6, 0.4])
    assert D.saturation_fraction(t) == pytest.approx(5 / 8)
    assert D.saturation_fraction(torch.tensor([-0.98, 0.0, 0.5, 0.99]), -0.97, 0.97) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        D.saturation_fraction(t, 0.9, 0.1)
    with pytest.raises(ValueError):
        D.saturation_fraction(torch.tensor([]))


def test_gradient_measures():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert all(math.isnan(g) for g in D.weight_grad_norms(net))       # no backward yet
    norms = D.gradient_norms_at_init(net, torch.randn(5, 3), seed=1)
    assert norms == pytest.approx([net[0].weight.grad.norm().item(), net[2].weight.grad.norm().item()])
    again = D.gradient_norms_at_init(net, torch.randn(5, 3).zero_() + 1, seed=1)   # grads cleared first
    assert again != norms
    ratios = D.grad_to_data_ratios(net)
    expected = (net[2].weight.grad.std() / net[2].weight.std()).item()
    assert ratios[1] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        D.weight_grad_norms(nn.Sequential(nn.ReLU()))


def test_gradient_is_inversely_proportional_to_weight_scale_under_bn():
    torch.manual_seed(0)
    x = torch.randn(8, 16)
    a = deep_mlp(3, 16, init="kaiming", norm=batch_norm(), bias=False)
    b = deep_mlp(3, 16, init="kaiming", norm=batch_norm(), bias=False)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b[0].weight.mul_(10)
    ga, gb = D.gradient_norms_at_init(a, x), D.gradient_norms_at_init(b, x)
    assert gb[0] == pytest.approx(ga[0] / 10, rel=1e-4)
    assert gb[1:] == pytest.approx(ga[1:], rel=1e-4)
