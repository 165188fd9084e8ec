"""Chapter 1's mechanism cells agree with normbook: the page's `mlp` builds the same network as
`normbook.book.models.deep_mlp` from the same seed (weights, biases, layer types), and the page's forward hooks
measure what `normbook.diagnostics.activation_std` measures; its saturation and gradient-to-data diagnostics agree
with `normbook.diagnostics`."""
import pytest
import torch
from torch import nn

from normbook.book import diagnostics
from normbook.book.models import batch_norm, deep_mlp
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("01")


SETTINGS = [dict(init="default"), dict(init="normal", bias=False), dict(init="kaiming", norm=True, bias=False),
            dict(init=0.3, activation=nn.Sigmoid), dict(init="normal", norm=True, in_features=12,
                                                         activation=nn.Tanh)]


@pytest.mark.parametrize("kw", SETTINGS)
def test_mlp_matches_deep_mlp(ns, kw):
    pkg_kw = dict(kw)
    if pkg_kw.pop("norm", False):
        pkg_kw["norm"] = batch_norm()
    torch.manual_seed(0)
    page = ns["mlp"](6, 16, **kw)
    torch.manual_seed(0)
    ours = deep_mlp(6, 16, **pkg_kw)
    assert [type(m) for m in page] == [type(m) for m in ours]
    sd_page, sd_ours = page.state_dict(), ours.state_dict()
    assert list(sd_page) == list(sd_ours)
    for k in sd_page:
        torch.testing.assert_close(sd_page[k], sd_ours[k], rtol=0, atol=0)
    x = torch.randn(5, kw.get("in_features", 16))
    page_stds = ns["activation_stds"](page, x)
    assert page_stds == diagnostics.activation_std(ours, x)
    assert sum(len(m._forward_hooks) for m in page.modules()) == 0


def test_hooks_follow_overflow(ns):
    torch.manual_seed(1)
    net = ns["mlp"](60, 64, init="normal", bias=False)
    x = torch.randn(4, 64)
    page, ours = ns["activation_stds"](net, x), diagnostics.activation_std(net, x)
    assert len(page) == 60
    assert str(page) == str(ours)  # nan and inf in the same places
    # and torch.nn's own hooks see the same ReLU outputs as a manual forward pass
    h = x
    for m in net:
        h = m(h)
    assert page[-1] == h.double().std().item() or str(page[-1]) == str(h.double().std().item())


@pytest.mark.parametrize("bounds", [(0.03, 0.97), (-0.97, 0.97)])
def test_saturation_fraction_matches_diagnostics(ns, bounds):
    t = torch.sigmoid(3 * torch.randn(64, 50)) if bounds[0] > 0 else torch.tanh(2 * torch.randn(64, 50))
    assert ns["saturation_fraction"](t, *bounds) == diagnostics.saturation_fraction(t, *bounds)
    edges = torch.tensor([bounds[0], bounds[1], 0.5])  # the bounds themselves count as saturated
    assert ns["saturation_fraction"](edges, *bounds) == diagnostics.saturation_fraction(edges, *bounds) == 2 / 3


@pytest.mark.parametrize("norm", [False, True])
def test_grad_to_data_ratios_match_diagnostics(ns, norm):
    torch.manual_seed(3)
    model = nn.Sequential(ns["mlp"](3, 16, in_features=12, init=0.5, norm=norm, activation=nn.Sigmoid),
                          nn.Linear(16, 4))
    x, target = torch.randn(10, 12), torch.randint(0, 4, (10,))
    nn.functional.cross_entropy(model(x), target).backward()
    page = ns["grad_to_data_ratios"](model)
    assert len(page) == 4  # the linear layers only, not BN's gamma
    torch.testing.assert_close(torch.tensor(page), torch.tensor(diagnostics.grad_to_data_ratios(model, nn.Linear)),
                               rtol=1e-12, atol=0)
