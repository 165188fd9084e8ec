"""Chapter 7's layers: FrozenBatchNorm2d (parity with torchvision), Batch Renormalization (BN when r_max = 1 and
d_max = 0, the paper's identity, a float64 reference, the schedule), Ghost BN, weight-standardized convolution,
and the small ResNet."""
import pytest
import torch
import torchvision

import normbook.functional as F
import normbook.nn as N
from normbook.batchnorm import freeze_batch_norm
from normbook.book import models


def _trained_bn(c=5, seed=0):
    torch.manual_seed(seed)
    bn = torch.nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2.0)
        bn.bias.normal_()
    for _ in range(3):
        bn(torch.randn(8, c, 4, 4) * 3 + 1)
    return bn.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frozen_bn_matches_torchvision_and_eval_bn(seed):
    bn = _trained_bn(seed=seed)
    ours, theirs = N.FrozenBatchNorm2d(5), torchvision.ops.misc.FrozenBatchNorm2d(5)
    ours.load_state_dict(bn.state_dict())      # num_batches_tracked dropped
    theirs.load_state_dict(bn.state_dict())
    x = torch.randn(4, 5, 6, 6) * 2 - 1
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    torch.testing.assert_close(ours(x), bn(x), rtol=1e-5, atol=1e-5)
    ours.train()
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)  # frozen in training mode too


def test_frozen_bn_state_dict_both_ways_and_repr():
    bn = _trained_bn()
    theirs = torchvision.ops.misc.FrozenBatchNorm2d(5, eps=1e-3)
    theirs.load_state_dict(bn.state_dict())
    ours = N.FrozenBatchNorm2d(5, eps=1e-3)
    ours.load_state_dict(theirs.state_dict())
    back = torchvision.ops.misc.FrozenBatchNorm2d(5, eps=1e-3)
    back.load_state_dict(ours.state_dict())
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    assert not list(ours.parameters())
    assert N.FrozenBatchNorm2d(3).eps == torchvision.ops.misc.FrozenBatchNorm2d(3).eps


def test_frozen_bn_from_batch_norm_and_freeze_model():
    bn = _trained_bn()
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(N.FrozenBatchNorm2d.from_batch_norm(bn)(x), bn(x), rtol=1e-5, atol=1e-5)
    model = models.small_cnn(models.batch_norm(), width=8).eval()
    y = model(torch.randn(2, 1, 28, 28))
    frozen = freeze_batch_norm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.modules())
    assert sum(isinstance(m, N.FrozenBatchNorm2d) for m in frozen.modules()) == 3
    torch.manual_seed(0)
    assert y.shape == frozen(torch.randn(2, 1, 28, 28)).shape


def test_frozen_bn_errors():
    with pytest.raises(ValueError, match="4D"):
        N.FrozenBatchNorm2d(3)(torch.randn(2, 3))
    with pytest.raises(ValueError, match="channels"):
        N.FrozenBatchNorm2d(3)(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="positive"):
        N.FrozenBatchNorm2d(0)
    with pytest.raises(ValueError, match="running statistics"):
        N.FrozenBatchNorm2d.from_batch_norm(torch.nn.BatchNorm2d(3, track_running_stats=False))


@pytest.mark.parametrize("shape", [(6, 4), (5, 4, 7), (3, 4, 5, 5)])
def test_batch_renorm_is_batch_norm_when_unrelaxed(shape):
    torch.manual_seed(0)
    x = (torch.randn(shape) * 3 + 2).requires_grad_()
    w, b = torch.rand(4) + 0.5, torch.randn(4)
    rm1, rv1 = torch.randn(4), torch.rand(4) + 0.5
    rm2, rv2 = rm1.clone(), rv1.clone()
    y1 = F.batch_renorm(x, rm1, rv1, w, b, True, 0.1, 1e-5, r_max=1.0, d_max=0.0)
    y2 = torch.nn.functional.batch_norm(x, rm2, rv2, w, b, True, 0.1, 1e-5)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close((rm1, rv1), (rm2, rv2))
    g = torch.randn(shape)
    (g1,) = torch.autograd.grad(y1, x, g)
    (g2,) = torch.autograd.grad(y2, x, g)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


def _renorm_reference(x, rm, rv, w, b, eps, r_max, d_max):
    """Ioffe (2017), Algorithm 1, in float64, per channel of an (N, C, *S) input."""
    x = x.double()
    dims = [0] + list(range(2, x.dim()))
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    mu_b = x.mean(dims, keepdim=True)
    sigma_b = (x.var(dims, unbiased=False, keepdim=True) + eps).sqrt()
    sigma = (rv.double().reshape(shape) + eps).sqrt()
    r = (sigma_b / sigma).clamp(1 / r_max, r_max)
    d = ((mu_b - rm.double().reshape(shape)) / sigma).clamp(-d_max, d_max)
    return ((x - mu_b) / sigma_b * r + d) * w.double().reshape(shape) + b.double().reshape(shape), r, d


@pytest.mark.parametrize("r_max,d_max", [(1.0, 0.0), (1.5, 0.2), (3.0, 5.0)])
def test_batch_renorm_float64_reference(r_max, d_max):
    torch.manual_seed(1)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    w, b = torch.rand(3) + 0.5, torch.randn(3)
    rm, rv = torch.randn(3), torch.rand(3) * 4 + 0.1
    expected, _, _ = _renorm_reference(x, rm, rv, w, b, 1e-5, r_max, d_max)
    got = F.batch_renorm(x, rm.clone(), rv.clone(), w, b, True, 0.1, 1e-5, r_max, d_max)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


def test_batch_renorm_paper_identity_and_gradient():
    """Unclipped, (x - mu_B) / sigma_B * r + d = (x - mu) / sigma: training output = inference output; and the
    gradient is r times BN's (r and d are constants for autograd)."""
    torch.manual_seed(2)
    x = (torch.randn(16, 3, 4, 4) * 2 + 0.5).double().requires_grad_()
    rm, rv = torch.tensor([0.3, -0.2, 0.7]).double(), torch.tensor([3.0, 5.0, 4.5]).double()
    y = F.batch_renorm(x, rm.clone(), rv.clone(), None, None, True, 0.1, 1e-5, r_max=100.0, d_max=100.0)
    inference = (x - rm.reshape(1, 3, 1, 1)) / (rv.reshape(1, 3, 1, 1) + 1e-5).sqrt()
    torch.testing.assert_close(y, inference.detach())
    _, r, _ = _renorm_reference(x.detach(), rm, rv, torch.ones(3), torch.zeros(3), 1e-5, 100.0, 100.0)
    g = torch.randn_like(x)
    (g_renorm,) = torch.autograd.grad(y, x, g)
    bn = torch.nn.functional.batch_norm(x, None, None, training=True, eps=1e-5)
    (g_bn,) = torch.autograd.grad(bn, x, g)
    torch.testing.assert_close(g_renorm, g_bn * r)


def test_batch_renorm_module_schedule_state_dict_and_errors():
    m = N.BatchRenorm2d(3, warmup_steps=2, r_max_steps=6, d_max_steps=4)
    assert [m.limits(s) for s in (1, 2, 3, 4, 6, 9)] == [(1.0, 0.0), (1.0, 0.0), (1.5, 2.5), (2.0, 5.0),
                                                        (3.0, 5.0), (3.0, 5.0)]
    bn = torch.nn.BatchNorm2d(3)
    x = torch.randn(4, 3, 5, 5) * 2 + 1
    for _ in range(2):  # warm-up: exactly BN
        torch.testing.assert_close(m(x), bn(x))
    torch.testing.assert_close((m.running_mean, m.running_var), (bn.running_mean, bn.running_var))
    assert int(m.num_batches_tracked) == 2
    m.eval(), bn.eval()
    torch.testing.assert_close(m(x), bn(x))
    fresh = N.BatchRenorm2d(3)
    fresh.load_state_dict(bn.state_dict())
    bn2 = torch.nn.BatchNorm2d(3)
    bn2.load_state_dict(fresh.state_dict())
    assert "r_max=3.0" in repr(fresh)
    one = N.BatchRenorm1d(4, warmup_steps=0, r_max_steps=0, d_max_steps=0)
    assert one.limits() == (3.0, 5.0)
    assert one(torch.randn(8, 4)).shape == (8, 4)
    with pytest.raises(ValueError, match="4D"):
        m.train()(torch.randn(3, 3))
    with pytest.raises(ValueError, match="r_max"):
        N.BatchRenorm2d(3, r_max=0.5)
    with pytest.raises(ValueError, match="warmup"):
        N.BatchRenorm2d(3, warmup_steps=10, r_max_steps=5)
    # momentum=None: a cumulative average, as BatchNorm's (during the warmup Batch Renorm is BatchNorm)
    renorm, plain = N.BatchRenorm2d(3, momentum=None), torch.nn.BatchNorm2d(3, momentum=None)
    for _ in range(3):
        batch = torch.randn(6, 3, 2, 2) * 3 + 2
        torch.testing.assert_close(renorm.train()(batch), plain.train()(batch))
    torch.testing.assert_close((renorm.running_mean, renorm.running_var), (plain.running_mean, plain.running_var))
    with pytest.raises(RuntimeError, match="running_mean"):
        F.batch_renorm(x, None, None, training=True)


def test_ghost_batch_norm():
    torch.manual_seed(3)
    x = torch.randn(12, 3, 4, 4) * 2 + 1
    ghost, bn = N.GhostBatchNorm2d(3, virtual_batch_size=4), torch.nn.BatchNorm2d(3)
    y = ghost(x)
    expected = torch.cat([bn(chunk) for chunk in x.split(4)])
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close((ghost.running_mean, ghost.running_var), (bn.running_mean, bn.running_var))
    assert int(ghost.num_batches_tracked) == 3
    big, plain = N.GhostBatchNorm2d(3, virtual_batch_size=64), torch.nn.BatchNorm2d(3)
    torch.testing.assert_close(big(x), plain(x))
    ghost.eval(), bn.eval()
    torch.testing.assert_close(ghost(x), bn(x))
    fresh = torch.nn.BatchNorm2d(3)
    fresh.load_state_dict(ghost.state_dict())
    assert "virtual_batch_size=4" in repr(ghost)
    with pytest.raises(ValueError, match="virtual_batch_size"):
        N.GhostBatchNorm2d(3, virtual_batch_size=0)


def test_ws_conv_float64_reference_and_state_dict():
    torch.manual_seed(4)
    conv = N.WSConv2d(3, 5, 3, padding=1, bias=True)
    x = torch.randn(2, 3, 6, 6)
    w = conv.weight.detach().double()
    mu = w.mean((1, 2, 3), keepdim=True)
    w_hat = (w - mu) / (w.var((1, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    expected = torch.nn.functional.conv2d(x.double(), w_hat, conv.bias.double(), padding=1)
    torch.testing.assert_close(conv(x).double(), expected, rtol=1e-5, atol=1e-5)
    ws = F.weight_standardization(conv.weight)
    torch.testing.assert_close(ws.mean((1, 2, 3)), torch.zeros(5), atol=1e-6, rtol=0)
    plain = torch.nn.Conv2d(3, 5, 3, padding=1)
    plain.load_state_dict(conv.state_dict())
    conv.load_state_dict(plain.state_dict())
    conv(x).sum().backward()
    assert conv.weight.grad is not None
    assert "ws_eps" in repr(conv)
    with pytest.raises(ValueError, match="2 dims"):
        F.weight_standardization(torch.randn(5))
    with pytest.raises(ValueError, match="ws_eps"):
        N.WSConv2d(3, 5, 3, ws_eps=0)


def test_small_resnet_zero_init():
    net = models.small_resnet(models.batch_norm(), width=8, blocks=2, zero_init=True)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    block = net[4]
    assert isinstance(block, models.BasicBlock)
    x = torch.relu(torch.randn(2, 8, 14, 14))
    torch.testing.assert_close(block(x), x)  # a zero-gamma block starts as the identity on ReLU outputs
    with pytest.raises(ValueError, match="zero_init"):
        models.small_resnet(None, zero_init=True)
