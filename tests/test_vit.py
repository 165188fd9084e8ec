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


# ---------------------------------------------------------------------------------------------------------------
# The alternatives to normalization placement (chapter 9): additive options, defaults unchanged
# ---------------------------------------------------------------------------------------------------------------
def test_default_state_dict_is_unchanged():
    keys = set(models.vit("ln", "pre").state_dict())
    assert not any(k.split(".")[2].startswith(("scale", "out_norm")) for k in keys if k.startswith("blocks."))


def test_sandwich_adds_a_norm_at_the_end_of_each_branch():
    torch.manual_seed(0)
    block = models.TransformerBlock(16, 2, "ln", "sandwich")
    x = torch.randn(3, 5, 16) * 10
    h = x + block.out_norm1(block.attn(block.norm1(x)))
    torch.testing.assert_close(block(x), h + block.out_norm2(block.mlp(block.norm2(h))))
    assert isinstance(models.vit("ln", "sandwich").final_norm, nn.LayerNorm)


def test_rezero_starts_as_the_identity_and_layerscale_at_its_init():
    torch.manual_seed(0)
    block = models.TransformerBlock(16, 2, "ln", "none", branch_scale="rezero")
    assert isinstance(block.norm1, nn.Identity) and block.scale1.scale.shape == ()
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(block(x), x)                      # alpha = 0: the block is the identity
    vit_rz = models.vit("ln", "none", branch_scale="rezero")
    assert isinstance(vit_rz.final_norm, nn.Identity)
    assert not any(isinstance(m, (nn.LayerNorm, nbnn.LayerNorm)) for m in vit_rz.modules())
    ls = models.TransformerBlock(16, 2, "ln", "pre", branch_scale="layerscale", scale_init=1e-3)
    assert ls.scale2.scale.shape == (16,) and torch.all(ls.scale2.scale == 1e-3)
    with torch.no_grad():
        expected = x + 1e-3 * ls.attn(ls.norm1(x))
        expected = expected + 1e-3 * ls.mlp(ls.norm2(expected))
    torch.testing.assert_close(ls(x), expected)
    with pytest.raises(ValueError):
        models.BranchScale(16, "skipinit")


def test_deepnorm_alpha_and_beta():
    n = 6
    torch.manual_seed(0)
    deep = models.vit("ln", "deepnorm", depth=n)
    torch.manual_seed(0)
    plain = models.vit("ln", "post", depth=n)
    alpha, beta = (2 * n) ** 0.25, (8 * n) ** -0.25
    block, ref = deep.blocks[2], plain.blocks[2]
    assert block.alpha == pytest.approx(alpha)
    d = 64
    torch.testing.assert_close(block.attn.qkv.weight[:2 * d], ref.attn.qkv.weight[:2 * d])   # q, k: gain 1
    torch.testing.assert_close(block.attn.qkv.weight[2 * d:], beta * ref.attn.qkv.weight[2 * d:])
    for a, b in ((block.attn.proj, ref.attn.proj), (block.mlp[0], ref.mlp[0]), (block.mlp[2], ref.mlp[2])):
        torch.testing.assert_close(a.weight, beta * b.weight)
    x = torch.randn(2, 16, d)
    h = block.norm1(alpha * x + block.attn(x))
    torch.testing.assert_close(block(x), block.norm2(alpha * h + block.mlp(h)))


def test_tfixup_scales_the_branches_without_norms():
    n = 4
    torch.manual_seed(0)
    tf = models.vit("ln", "none", depth=n, init="tfixup")
    torch.manual_seed(0)
    ref = models.vit("ln", "none", depth=n)
    gain = 0.67 * n ** -0.25
    torch.testing.assert_close(tf.blocks[0].mlp[2].weight, gain * ref.blocks[0].mlp[2].weight)
    torch.testing.assert_close(tf.embed.weight, ref.embed.weight)
    with pytest.raises(ValueError):
        models.vit(init="fixup")


def test_softcap_bounds_the_logits_the_softmax_sees():
    torch.manual_seed(0)
    attn = models.SelfAttention(16, 2, softcap=5.0)
    with torch.no_grad():
        attn.qkv.weight.mul_(100)
    attn(torch.randn(2, 6, 16))
    assert attn.max_raw_logit > 50 and attn.max_logit <= 5.0
    with pytest.raises(ValueError):
        models.SelfAttention(16, 2, softcap=0.0)


@pytest.mark.parametrize("lib", [nn, nbnn])
def test_bias_free_norms_and_eps(lib):
    m = models.vit("ln", "pre", layers=lib, norm_bias=False, eps=1e-3)
    norms = [mod for mod in m.modules() if isinstance(mod, lib.LayerNorm)]
    assert len(norms) == 2 * 4 + 1
    assert all(mod.bias is None and mod.eps == 1e-3 for mod in norms)
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_placement_is_checked():
    with pytest.raises(ValueError, match="placement must be one of"):
        models.TransformerBlock(8, 2, placement="middle")
