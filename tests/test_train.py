"""normbook.train on a tiny synthetic problem: it learns, records every epoch, restores modes, rejects bad input."""
import math

import pytest
import torch
from torch import nn

from normbook.data import TensorLoader
from normbook.book.train import History, evaluate, scaled_normal_init, train, xavier_init


def blobs(n=512, num_classes=4, dim=8, seed=0):
    """Linearly separable Gaussian blobs: X (n, dim), y (n,)."""
    gen = torch.Generator().manual_seed(seed)
    centers = 3.0 * torch.randn(num_classes, dim, generator=gen)
    y = torch.randint(num_classes, (n,), generator=gen)
    X = centers[y] + torch.randn(n, dim, generator=gen)
    return X, y


def loaders(batch_size=32, seed=0):
    X, y = blobs(seed=seed)
    Xt, yt = blobs(n=256, seed=seed)  # same centers (same seed), fresh noise only in count; fine as a test set
    return (TensorLoader(X, y, batch_size, shuffle=True, seed=seed), TensorLoader(Xt, yt, 128))


def mlp(norm=True):
    layers = [nn.Linear(8, 32)] + ([nn.BatchNorm1d(32)] if norm else []) + [nn.ReLU(), nn.Linear(32, 4)]
    return nn.Sequential(*layers)


def test_it_learns_and_history_is_complete():
    train_loader, test_loader = loaders()
    history = train(mlp(), train_loader, test_loader, epochs=4, lr=0.1, device="cpu", progress=False, seed=0)
    assert isinstance(history, History) and len(history) == 4
    d = history.as_dict()
    for name in History.FIELDS:
        assert len(d[name]) == 4, name
        assert all(math.isfinite(v) for v in d[name]), name
    assert d["epoch"] == [1, 2, 3, 4]
    assert len(history.batch_loss) == 4 * len(train_loader)
    assert history.eval_acc[-1] > 0.8  # chance is 0.25
    assert history.train_loss[-1] < history.train_loss[0]
    assert all(v > 0 for v in history.examples_per_sec)
    assert history.final()["eval_acc"] == history.eval_acc[-1]
    assert not history.diverged


def test_same_seed_same_run_and_init_runs_after_seeding():
    runs = []
    for _ in range(2):
        torch.manual_seed(123 + len(runs))  # different global state before: train's seed must override it
        train_loader, test_loader = loaders()
        runs.append(train(mlp(), train_loader, test_loader, epochs=2, lr=0.1, device="cpu", progress=False,
                          init=scaled_normal_init(0.3), seed=3))  # re-draws every weight and bias
    assert runs[0].batch_loss == runs[1].batch_loss
    assert runs[0].eval_acc == runs[1].eval_acc


def test_evaluate_restores_mode_and_uses_eval_mode():
    model = mlp()
    _, test_loader = loaders()
    for mode in (True, False):
        model.train(mode)
        acc = evaluate(model, test_loader, "cpu")
        assert 0.0 <= acc <= 1.0
        assert model.training is mode and all(m.training is mode for m in model.modules())
    # eval mode: BN uses running statistics, so its buffers must not change while evaluating
    model.train()
    before = model[1].running_mean.clone()
    evaluate(model, test_loader)
    assert torch.equal(before, model[1].running_mean)


def test_evaluate_agrees_with_a_manual_count():
    model = mlp(norm=False)
    _, test_loader = loaders()
    with torch.no_grad():
        manual = (model(test_loader.X).argmax(1) == test_loader.y).float().mean().item()
    assert evaluate(model, test_loader) == pytest.approx(manual)


def test_divergence_is_recorded_not_trained_on():
    train_loader, test_loader = loaders()
    model = mlp(norm=False)
    history = train(model, train_loader, test_loader, epochs=3, lr=1e30, device="cpu", progress=False)
    assert history.diverged and len(history) == 3
    assert math.isnan(history.train_loss[-1])


def test_xavier_and_scaled_init():
    model = mlp()
    xavier_init(model)
    bound = math.sqrt(6 / (8 + 32))
    assert model[0].weight.abs().max() <= bound
    scaled_normal_init(1e-3)(model)
    assert model[0].weight.std().item() == pytest.approx(1e-3, rel=0.2)
    assert torch.all(model[0].bias == 0)
    with pytest.raises(ValueError, match="scale"):
        scaled_normal_init(-1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0, lr=0.1), "epochs"),
    (dict(epochs=1.5, lr=0.1), "epochs"),
    (dict(epochs=1, lr=0.0), "lr"),
    (dict(epochs=1, lr=float("nan")), "lr"),
    (dict(epochs=1, lr=0.1, optimizer="rmsprop"), "unknown optimizer"),
])
def test_bad_arguments(kwargs, match):
    train_loader, test_loader = loaders()
    with pytest.raises(ValueError, match=match):
        train(mlp(), train_loader, test_loader, progress=False, **kwargs)


def test_other_optimizers_and_no_test_loader():
    train_loader, _ = loaders()
    for name in ("momentum", "adam"):
        history = train(mlp(), train_loader, None, epochs=1, lr=0.01, optimizer=name, device="cpu",
                        progress=False)
        assert math.isnan(history.eval_acc[0]) and math.isfinite(history.train_loss[0])


def test_on_epoch_end_values_are_recorded():
    train_loader, test_loader = loaders()
    calls = []

    def hook(model, epoch):
        calls.append((epoch, model.training))
        return {"double_epoch": 2 * epoch}
    history = train(mlp(), train_loader, test_loader, epochs=3, lr=0.1, device="cpu", progress=False,
                    on_epoch_end=hook)
    assert calls == [(1, True), (2, True), (3, True)]
    assert history.extra == {"double_epoch": [2, 4, 6]} and history.as_dict()["extra"] == history.extra
