"""normbook.config (FAST mode, device, seeding) and normbook.models (shapes, parameter counts, factories)."""
import pytest
import torch
from torch import nn

from normbook import config
from normbook.book import models


def test_fast_mode_reads_the_environment(monkeypatch):
    monkeypatch.setenv("NORMBOOK_FAST", "1")
    assert config.is_fast() and config.fast_or_full("f", "F") == "f"
    monkeypatch.setenv("NORMBOOK_FAST", "0")
    assert not config.is_fast() and config.fast_or_full("f", "F") == "F"
    monkeypatch.delenv("NORMBOOK_FAST")
    assert not config.is_fast()


def test_device(monkeypatch):
    monkeypatch.delenv("NORMBOOK_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert config.device().type == expected
    monkeypatch.setenv("NORMBOOK_DEVICE", "cpu")
    assert config.device().type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            config.device("cuda")


def test_seed_everything_makes_runs_repeat():
    config.seed_everything(7)
    a, b = torch.randn(5), torch.randn(5)
    config.seed_everything(7)
    assert torch.equal(a, torch.randn(5))  # the same stream again
    assert not torch.equal(a, b)
    gen_a = torch.randperm(10, generator=config.seed_everything(7))
    assert torch.equal(gen_a, torch.randperm(10, generator=config.seed_everything(7)))


def test_lenet_matches_d2l_shapes_and_sizes():
    x = torch.randn(4, 1, 28, 28)
    plain = models.lenet()
    assert plain(x).shape == (4, 10)
    # d2l's LeNet: 61,706 parameters (conv 156 + 2,416, linear 48,120 + 10,164 + 850)
    assert sum(p.numel() for p in plain.parameters()) == 61706
    bn = models.lenet(models.batch_norm())
    assert bn(x).shape == (4, 10)
    kinds = [type(m).__name__ for m in bn]
    assert kinds.count("BatchNorm2d") == 2 and kinds.count("BatchNorm1d") == 2
    assert bn[0].bias is None  # no bias right before a normalization


def test_norm_factories():
    assert isinstance(models.group_norm(32)(6, 2), nn.GroupNorm) and models.group_norm(32)(6, 2).num_groups == 6
    assert models.group_norm(4)(6, 2).num_groups == 3  # the largest divisor of 6 not above 4
    ln = models.layer_norm()
    assert isinstance(ln(120, 0), nn.LayerNorm) and ln(16, 2).num_groups == 1
    cnn = models.small_cnn(models.group_norm(8), width=8)
    assert cnn(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("init", ["default", "normal", "kaiming", "xavier", 0.5])
def test_deep_mlp(init):
    net = models.deep_mlp(depth=3, width=16, in_features=8, init=init)
    assert net(torch.randn(5, 8)).shape == (5, 16)
    assert len([m for m in net if isinstance(m, nn.Linear)]) == 3


def test_deep_mlp_rejects_unknown_init():
    with pytest.raises(ValueError, match="unknown init"):
        models.deep_mlp(depth=1, width=4, init="orthogonal")
