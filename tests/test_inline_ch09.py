"""Chapter 9's Transformer block, as the page writes it, equals normbook.book.models.TransformerBlock."""
import pytest
import torch
from torch import nn

from normbook.book import models
import normbook.nn as nbnn
from tests._notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("09")


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_block_equals_package(ns, placement, qk_norm):
    torch.manual_seed(0)
    ours = ns["Block"](32, 4, placement=placement, qk_norm=qk_norm)
    torch.manual_seed(0)
    ref = models.TransformerBlock(32, 4, "ln", placement, qk_norm, layers=nbnn)
    assert ours.state_dict().keys() == ref.state_dict().keys()
    ours.load_state_dict(ref.state_dict())
    ours, ref = ours.double(), ref.double()
    x = torch.randn(3, 16, 32, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out, out_ref = ours(x), ref(x2)
    torch.testing.assert_close(out, out_ref, rtol=1e-7, atol=1e-9)
    g = torch.randn_like(out)
    out.backward(g)
    out_ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-7, atol=1e-9)
    for (k, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-9, msg=k)


def test_same_seed_same_initial_weights(ns):
    torch.manual_seed(1)
    ours = ns["Block"](16, 2)
    torch.manual_seed(1)
    ref = models.TransformerBlock(16, 2, layers=nn)
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
