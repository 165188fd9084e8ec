"""normbook.book.ch09: the factor split of W2's gradient is exact, the intervention does what it says, the op
counter counts what runs, and the z-loss is PaLM's."""
import pytest
import torch

from normbook.book import ch09, models


def _model(placement="pre", seed=0):
    torch.manual_seed(seed)
    return models.vit("ln", placement, d=32, depth=3, heads=4).double()


def _batch():
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 1, 28, 28, generator=g, dtype=torch.float64), torch.randint(0, 10, (8,), generator=g)


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_factors_reproduce_the_weight_gradient(placement):
    model = _model(placement)
    X, y = _batch()
    captured = []
    hooks = [b.mlp[2].register_forward_hook(lambda m, a, o: captured.append(a[0].detach())) for b in model.blocks]
    factors = ch09.w2_gradient_factors(model, X, y)
    for h in hooks:
        h.remove()
    # the gradient equals delta^T a summed over tokens; check it through the norms and directly on block 0
    assert factors["grad"] == pytest.approx([float(b.mlp[2].weight.grad.norm()) for b in model.blocks])
    a0 = captured[0].reshape(-1, captured[0].shape[-1])
    assert factors["input"][0] == pytest.approx(float(a0.norm()))
    assert all(len(v) == 3 for v in factors.values())
    assert (factors["grad"] <= factors["input"] * factors["upstream"] * (1 + 1e-12)).all()   # ||d a^T|| <= ||d|| ||a||


def test_detached_branch_inputs_give_every_block_the_top_gradient():
    model = _model("pre")
    X, y = _batch()
    plain = ch09.w2_gradient_factors(model, X, y)
    cut = ch09.w2_gradient_factors(model, X, y, detach_branch_inputs=True)
    # the forward pass is unchanged (same inputs a), every block now sees the same upstream gradient ...
    assert cut["input"] == pytest.approx(plain["input"])
    assert cut["upstream"] == pytest.approx([cut["upstream"][-1]] * 3)
    # ... the last block's, which no later branch could change
    assert cut["upstream"][-1] == pytest.approx(plain["upstream"][-1])
    assert plain["upstream"][0] != pytest.approx(cut["upstream"][0])
    # and no hook is left behind
    assert all(not b.norm1._forward_pre_hooks and not b.mlp[2]._forward_hooks for b in model.blocks)


def test_count_ops():
    x = torch.randn(4, 8, requires_grad=True)
    w, b = torch.ones(8, requires_grad=True), torch.zeros(8, requires_grad=True)
    g = torch.randn(4, 8)
    ln = ch09.count_ops(lambda: torch.nn.functional.layer_norm(x, (8,), w, b).backward(g))
    assert "native_layer_norm" in ln and "native_layer_norm_backward" in ln and "detach" not in ln
    rms = ch09.count_ops(lambda: torch.nn.functional.rms_norm(x, (8,), w, 1e-6).backward(g))
    assert len(rms) > 3 * len(ln) and "rsqrt" in rms
    # min_numel keeps the passes over the (4, 8) input and drops those on its (4, 1) row statistics
    x2, w2 = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()   # no .grad to accumulate into
    full = ch09.count_ops(lambda: torch.nn.functional.rms_norm(x2, (8,), w2, 1e-6).backward(g), min_numel=x.numel())
    assert "pow" in full and "rsqrt" not in full and "add_" not in full
    assert 0 < len(full) < len(rms)
    x3, w3, b3 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    assert ch09.count_ops(lambda: torch.nn.functional.layer_norm(x3, (8,), w3, b3).backward(g),
                          min_numel=x.numel()) == ln


def test_z_loss():
    logits = torch.tensor([[0.0, 0.0], [3.0, 1.0]])
    log_z = torch.log(torch.exp(logits).sum(1))
    assert torch.allclose(ch09.log_partition(logits), log_z)
    assert float(ch09.z_loss(logits, 0.5)) == pytest.approx(0.5 * float((log_z ** 2).mean()))
    assert float(ch09.z_loss(torch.log_softmax(torch.randn(3, 5), 1))) == pytest.approx(0.0, abs=1e-12)
