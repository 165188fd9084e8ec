"""normbook.book.inference (chapter 4): momentum conventions, predictions in either mode, forward timing."""
import pytest
import torch
from torch import nn

import normbook
import normbook.nn as nbnn
from normbook.book import inference as inf


def _batches(k=12, n=8, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [2.0 + 3.0 * torch.randn(n, d, generator=g) for _ in range(k)]


def test_three_conventions_agree():
    means = [b.mean(0) for b in _batches()]
    t = inf.running_estimates(means, inf.torch_update, init=torch.zeros(3), momentum=0.1)
    d = inf.running_estimates(means, inf.d2l_update, init=torch.zeros(3), momentum=0.9)
    k = inf.running_estimates(means, inf.keras_update, init=torch.zeros(3), momentum=0.99)
    t01 = inf.running_estimates(means, inf.torch_update, init=torch.zeros(3), momentum=0.01)
    for a, b in zip(t, d):
        torch.testing.assert_close(a, b)
    for a, b in zip(k, t01):
        torch.testing.assert_close(a, b)
    assert inf.d2l_update(1.0, 2.0) == pytest.approx(1.1)
    assert inf.keras_update(1.0, 2.0) == pytest.approx(1.01)
    assert inf.torch_update(1.0, 2.0) == pytest.approx(1.1)


def test_cumulative_is_plain_average():
    values = [3.0, 5.0, 10.0, 2.0]
    est = inf.running_estimates(values, inf.cumulative_update, init=123.0)
    assert est == pytest.approx([3.0, 4.0, 6.0, 5.0])
    with pytest.raises(ValueError):
        inf.cumulative_update(0.0, 1.0, 0)


@pytest.mark.parametrize("layers", [nn, nbnn])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_estimates_match_batchnorm(layers, momentum):
    batches = _batches()
    bn = layers.BatchNorm1d(3, momentum=momentum)
    rule = inf.cumulative_update if momentum is None else inf.torch_update
    kw = {} if momentum is None else {"momentum": momentum}
    mean_seq = inf.running_estimates([b.mean(0) for b in batches], rule, init=torch.zeros(3), **kw)
    var_seq = inf.running_estimates([b.var(0, unbiased=True) for b in batches], rule, init=torch.ones(3), **kw)
    for b, m, v in zip(batches, mean_seq, var_seq):
        bn(b)
        torch.testing.assert_close(bn.running_mean, m)
        torch.testing.assert_close(bn.running_var, v)


def _model(layers=nbnn):
    normbook.seed_everything(0)
    return nn.Sequential(nn.Linear(4, 6, bias=False), layers.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 5, bias=False), layers.BatchNorm1d(5), nn.Linear(5, 3))


def test_predict_leaves_model_untouched():
    model = _model()
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    X = torch.randn(32, 4)
    train_logits = inf.predict(model, X, batch_size=8, train_mode=True)
    eval_logits = inf.predict(model, X, batch_size=8)
    assert train_logits.shape == eval_logits.shape == (32, 3)
    assert not torch.allclose(train_logits, eval_logits)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k])
    assert not model.training
    with torch.no_grad():
        torch.testing.assert_close(eval_logits, model(X))
    y = eval_logits.argmax(1)
    assert inf.accuracy(model, X, y) == 1.0


def test_eval_batch_size_lab():
    model = _model().eval()
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    lab = inf.eval_batch_size_lab(model, X, y, [2, 8, 64, 5])
    assert lab["batch_size"] == [2, 8, 64, 5]
    assert lab["eval"][0] == lab["eval"][1] == lab["eval"][2] == pytest.approx(inf.accuracy(model, X, y))
    assert all(g > 0 for g in lab["gap"])
    assert all(0 <= a <= 1 for a in lab["train"])
    assert [len(r) for r in lab["train_right"]] == [64, 64, 64, 60]   # whole batches of 5: 60 images
    assert [r.mean().item() for r in lab["train_right"]] == pytest.approx(lab["train"])
    assert lab["eval_right"][0].mean().item() == pytest.approx(lab["eval"][0])


def test_time_forward_restores_mode_and_threads():
    threads = torch.get_num_threads()
    model = _model()
    model.train()
    times = inf.time_forward({"a": model, "b": _model().eval()}, torch.randn(16, 4), repeats=2)
    assert set(times) == {"a", "b"} and all(t.repeats == 2 and t.median > 0 for t in times.values())
    assert model.training and torch.get_num_threads() == threads
