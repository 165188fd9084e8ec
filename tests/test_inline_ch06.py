"""Chapter 6's mechanism cells agree with normbook: the training step of normbook.book.train.train, what BN's
running average is worth, the effective number of values a channel mean averages, and the scaled learning rate.
(The count of values per statistic is exercise 7, graded by normbook.book.exercises.ch06.)"""
import pytest
import torch

from normbook.book import ch06, models
from normbook.book import runs as ex
from normbook.book.train import train
from _notebook import mechanism_namespace


@pytest.fixture(scope="module")
def ns():
    return mechanism_namespace("06")


def test_effective_sample_size_matches_normbook(ns):
    page = ns["effective_sample_size"]
    x = torch.randn(500, 3, 8, 8).cumsum(-1)  # correlated along rows: worth less than its count
    for B, stride in ((2, 1), (8, 1), (4, 2)):
        assert page(x, B, stride) == pytest.approx(ch06.effective_sample_size(x, B, stride=stride), rel=1e-12)
    assert page(x, 4) < 4 * 64


def test_ema_effective_batches_matches_normbook(ns):
    for m in (0.01, 0.1, 0.5, 1.0):
        assert ns["ema_effective_batches"](m) == pytest.approx(ch06.ema_effective_batches(m))


def test_scaled_lr_matches_e4_sweep(ns):
    frame = ch06.e4_sweep({"BN": models.batch_norm()}, [4, 16], [0], epochs=1, train_size=64, val_size=32,
                          test_size=32, processes=1)
    assert frame.lr.tolist() == pytest.approx([ns["scaled_lr"](0.05, 4), ns["scaled_lr"](0.05, 16)])


def test_train_step_is_normbooks_step(ns):
    data = ex.load(train_size=128, val_size=64, test_size=64, device="cpu")
    train_loader, _ = data.loaders(32, seed=0)
    torch.manual_seed(0)
    a = ch06.e4_model(models.batch_norm(), width=32)
    b = ch06.e4_model(models.batch_norm(), width=32)
    b.load_state_dict(a.state_dict())
    history = train(a, train_loader, None, epochs=1, lr=0.1, init=None, seed=0, device="cpu", progress=False)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    b.train()
    fresh, _ = data.loaders(32, seed=0)  # a loader's order depends on its seed and epoch count
    losses = [ns["train_step"](b, X, y, opt).item() for X, y in fresh]
    assert losses == pytest.approx(history.batch_loss, abs=1e-6)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
