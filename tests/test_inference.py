"""Tests for normbook.inference: momentum conventions, population statistics, train/eval helpers, timing."""
import pytest
import torch
from torch import nn

import normbook
import normbook.nn as nbnn
from normbook import inference as inf


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


def test_is_batchnorm():
    for m in (nn.BatchNorm1d(3), nn.BatchNorm2d(3), nbnn.BatchNorm1d(3), nbnn.BatchNorm2d(3), nbnn.BatchNorm3d(3)):
        assert inf.is_batchnorm(m)
    for m in (nn.GroupNorm(1, 3), nn.InstanceNorm2d(3), nbnn.InstanceNorm2d(3, track_running_stats=True),
              nbnn.LayerNorm(3), nn.Linear(3, 3)):
        assert not inf.is_batchnorm(m)


def _model(layers=nbnn):
    normbook.seed_everything(0)
    return nn.Sequential(nn.Linear(4, 6, bias=False), layers.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 5, bias=False), layers.BatchNorm1d(5), nn.Linear(5, 3))


@pytest.mark.parametrize("layers", [nn, nbnn])
def test_recompute_batchnorm_stats(layers):
    model = _model(layers)
    g = torch.Generator().manual_seed(1)
    data = [(1 + torch.randn(16, 4, generator=g), None) for _ in range(5)]
    for X, _ in data:  # some running history to be replaced
        model(3 * X)
    model.eval()
    bn1 = model[1]
    bn1.momentum = 0.3
    inf.recompute_batchnorm_stats(model, data)
    # first BN: running mean = average of the batch means of the first linear layer's outputs
    with torch.no_grad():
        means = torch.stack([model[0](X).mean(0) for X, _ in data]).mean(0)
        variances = torch.stack([model[0](X).var(0) for X, _ in data]).mean(0)
    torch.testing.assert_close(bn1.running_mean, means)
    torch.testing.assert_close(bn1.running_var, variances)
    assert int(bn1.num_batches_tracked) == len(data)
    assert bn1.momentum == 0.3 and model[4].momentum == 0.1
    assert not model.training and not any(m.training for m in model.modules())
    # num_batches limits the pass; a train-mode model stays in train mode
    model.train()
    inf.recompute_batchnorm_stats(model, data, num_batches=2)
    assert int(bn1.num_batches_tracked) == 2 and model.training


def test_recompute_skips_untracked_and_plain_tensors():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False))
    assert inf.recompute_batchnorm_stats(model, [torch.randn(8, 4)]) is model
    model = nn.Sequential(nn.Linear(4, 6), nbnn.BatchNorm1d(6))
    inf.recompute_batchnorm_stats(model, [torch.randn(8, 4)])  # batches without labels
    assert int(model[1].num_batches_tracked) == 1


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


class _Clock:
    """A fake ``time.perf_counter``: each timed function advances it by its own fixed cost, so the timing helpers
    are checked on what they compute (per-call medians, the number of calls), never on the machine's speed."""

    def __init__(self):
        self.now = 0.0
        self.calls = []

    def perf_counter(self):
        return self.now

    def work(self, name, cost):
        def fn():
            self.calls.append(name)
            self.now += cost
        return fn


def test_median_time_and_compare(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(inf, "time", clock)
    t = inf.median_time(clock.work("f", 0.004), repeats=3, number=5, warmup=2)
    assert t == pytest.approx(0.004) and len(clock.calls) == 2 + 3 * 5
    # number=None: calls double until one run lasts min_time (0.001 s per call: 1, 2, 4, ..., 32 calls)
    clock.calls.clear()
    t = inf.median_time(clock.work("g", 0.001), repeats=3, warmup=0, min_time=0.02)
    assert t == pytest.approx(0.001) and len(clock.calls) == sum(2 ** k for k in range(6)) + 3 * 32
    with pytest.raises(ValueError):
        inf.median_time(lambda: None, repeats=0)
    # interleaved call by call (A, B, A, B, ...), each function's own per-call time
    clock.calls.clear()
    times = inf.compare_times({"a": clock.work("a", 0.001), "b": clock.work("b", 0.003)}, repeats=3, number=4)
    assert times == pytest.approx({"a": 0.001, "b": 0.003})
    assert clock.calls == ["a", "b"] + ["a", "b"] * 3 * 4


def test_time_forward_restores_mode():
    model = _model()
    model.train()
    times = inf.time_forward({"m": model}, torch.randn(16, 4), repeats=2, number=2)
    assert times["m"] > 0 and model.training


def test_time_forward_threads_restored():
    threads = torch.get_num_threads()
    model = _model()
    times = inf.time_forward({"a": model, "b": model}, torch.randn(16, 4), repeats=2, number=2, num_threads=1)
    assert set(times) == {"a", "b"} and torch.get_num_threads() == threads
