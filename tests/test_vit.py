"""normbook.models' small ViT: shapes, parity of the normbook-layer and torch-layer models, the placement switch."""
import pytest
import torch
from torch import nn

from normbook.book import models
import normbook.nn as nbnn


@pytest.mark.parametrize("norm", ["ln", "rms", "bn"])
@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_parity_and_shapes(norm, placement, qk_norm):
    torch.manual_seed(0)
    ours = models.vit(norm, placement, qk_norm, d=32, depth=2, heads=4, layers=nbnn).double()
    torch.manual_seed(0)
    ref = models.ViT(norm, placement, qk_norm, d=32, depth=2, heads=4, layers=nn).double()
    assert ours.state_dict().keys() == ref.state_dict().keys()
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), k
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    out, out_ref = ours(x), ref(x)
    assert out.shape == (6, 10)
    torch.testing.assert_close(out, out_ref, rtol=1e-7, atol=1e-9)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    for (k, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-7, atol=1e-9, msg=k)
    if norm == "bn":  # running statistics move alike
        torch.testing.assert_close(ours.blocks[0].norm1.bn.running_var, ref.blocks[0].norm1.bn.running_var)


def test_layers_argument_picks_the_library():
    m = models.vit("ln", "pre", True, layers=nbnn)
    assert isinstance(m.blocks[0].norm1, nbnn.LayerNorm)
    assert isinstance(m.blocks[0].attn.q_norm, nbnn.LayerNorm)
    assert isinstance(models.vit("rms", layers=nbnn).blocks[0].norm2, nbnn.RMSNorm)
    assert isinstance(models.vit("bn", layers=nbnn).blocks[0].norm1.bn, nbnn.BatchNorm1d)
    assert isinstance(models.vit("ln", "post").final_norm, nn.Identity)
    assert type(models.vit("ln", "pre").final_norm) is nn.LayerNorm  # torch.nn by default, like every factory


def test_patchify_tokens():
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    t = models.patchify(x, 7)
    assert t.shape == (2, 16, 49)
    assert torch.equal(t[1, 5].reshape(7, 7), x[1, 0, 7:14, 7:14])  # token 5 = row 1, column 1


def _block(placement):
    torch.manual_seed(0)
    return models.TransformerBlock(16, 2, "ln", placement, layers=nbnn)


def test_post_ln_normalizes_after_the_addition():
    block = _block("post")
    out = block(torch.randn(3, 5, 16) * 10 + 4)
    # each token of the output is a LayerNorm output with weight 1, bias 0: mean 0, variance 1
    torch.testing.assert_close(out.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=0)
    # and it is norm2(h + mlp(h)) with h = norm1(x + attn(x))
    x = torch.randn(3, 5, 16)
    h = block.norm1(x + block.attn(x))
    torch.testing.assert_close(block(x), block.norm2(h + block.mlp(h)))


def test_pre_ln_residual_path_has_no_norm():
    block = _block("pre")
    x = torch.randn(3, 5, 16) * 10 + 4
    # with both branches switched off, the block is the identity: nothing normalizes the residual stream
    for branch_out in (block.attn.proj, block.mlp[2]):
        nn.init.zeros_(branch_out.weight)
        nn.init.zeros_(branch_out.bias)
    torch.testing.assert_close(block(x), x)
    post = _block("post")
    for branch_out in (post.attn.proj, post.mlp[2]):
        nn.init.zeros_(branch_out.weight)
        nn.init.zeros_(branch_out.bias)
    assert not torch.allclose(post(x), x)  # post-LN normalizes even then


def test_qk_norm_bounds_logits():
    torch.manual_seed(0)
    attn = models.SelfAttention(16, 2, qk_norm=True, layers=nbnn)
    with torch.no_grad():
        attn.qkv.weight.mul_(100)
    attn(torch.randn(2, 6, 16))
    # unit-variance q, k of d_head = 8 features: |q.k| / sqrt(8) <= 8 / sqrt(8)
    assert attn.max_logit <= 8 / 8 ** 0.5 + 1e-4
    plain = models.SelfAttention(16, 2)
    with torch.no_grad():
        plain.qkv.weight.copy_(attn.qkv.weight)
        plain.qkv.bias.copy_(attn.qkv.bias)
    plain(torch.randn(2, 6, 16))
    assert plain.max_logit > 100


def test_bad_arguments():
    with pytest.raises(ValueError):
        models.token_norm("gn", 8)
    with pytest.raises(ValueError):
        models.TransformerBlock(8, 2, placement="middle")
    with pytest.raises(ValueError):
        models.SelfAttention(10, 3)
