"""normbook.book.runs, parallel, ch06 and plot.training on tiny Fashion-MNIST subsets (seconds on a CPU)."""

import copy
import math

import matplotlib
import pandas as pd
import pytest
import torch

import normbook.nn as nbnn
from normbook import data
from normbook.batchnorm import recompute_batchnorm_stats
from normbook.book import ch06, models, plot
from normbook.book import runs as ex
from normbook.book.parallel import parallel_map
from normbook.book.train import evaluate
from normbook.config import cpu_threads


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train faster on one thread (and the suite may share its cores)."""
    with cpu_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny():
    return ex.load(train_size=512, val_size=256, test_size=256, device="cpu")


@pytest.fixture
def tiny_small(tiny):
    """The first 128 training examples only."""
    small = ex.load(train_size=512, val_size=256, test_size=256, device="cpu")
    small.X, small.y = small.X[:128], small.y[:128]
    return small


def test_data_subset_is_fixed_and_loaders_shuffle_by_seed(tiny):
    assert tiny.train_size == 512 and tiny.val_size == 256 and tiny.test_size == 256
    a, _ = tiny.loaders(64, seed=0)
    b, _ = tiny.loaders(64, seed=0)
    c, _ = tiny.loaders(64, seed=1)
    xa, xb, xc = next(iter(a))[0], next(iter(b))[0], next(iter(c))[0]
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    assert xa.shape == (64, 1, 28, 28)


def test_run_seeds_frame_and_summary(tiny):
    frames = [ex.run_seeds(lambda bn=bn: ex.lenet_model(bn), tiny, seeds=[0, 1], epochs=2, lr=1.0, label=name, batch_size=32,
                           extra=lambda m, tr, te: {"n_params": sum(p.numel() for p in m.parameters())})
              for bn, name in ((False, "plain"), (True, "BN"))]
    frame = pd.concat(frames, ignore_index=True)
    assert list(frame.columns[:3]) == ["label", "seed", "epoch"] and len(frame) == 2 * 2 * 2
    assert {"train_loss", "train_acc", "val_acc", "examples_per_sec", "n_params"} <= set(frame.columns)
    final = ex.final_rows(frame)
    assert len(final) == 4 and (final["epoch"] == 2).all()
    table = ex.summarize(final, by=["label"], metrics=["val_acc", "train_loss"])
    assert list(table["label"]) == ["plain", "BN"] and (table["runs"] == 2).all()
    bn = final[final.label == "BN"]["val_acc"]
    assert table.set_index("label").loc["BN", "val_acc_mean"] == pytest.approx(bn.mean())
    assert table.set_index("label").loc["BN", "val_acc_std"] == pytest.approx(bn.std(ddof=1))
    # BN LeNet learns on 512 examples in 32 steps at lr 1.0 (chance is 0.1)
    assert table.set_index("label").loc["BN", "val_acc_mean"] > 0.3
    spread = ex.epoch_spread(frame, last=2)
    assert len(spread) == 4 and spread["val_acc_epoch_std"].notna().all()
    manual = pd.DataFrame({"seed": 0, "epoch": [1, 2, 3, 4], "acc": [0.5, 0.3, 0.6, 0.55]})
    row = ex.epoch_spread(manual, "acc", last=4).iloc[0]
    assert row["largest_drop"] == pytest.approx(0.2) and row["total_drop"] == pytest.approx(0.25)
    fig = plot.learning_curves(frame)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 3


def test_runs_repeat_exactly(tiny):
    runs = [ex.run_seeds(lambda: ex.lenet_model(True), tiny, seeds=[5], epochs=1, lr=1.0) for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].drop(columns="examples_per_sec"), runs[1].drop(columns="examples_per_sec"))


def test_lr_and_init_sweeps(tiny):
    makers = {"plain": lambda: ex.lenet_model(False), "BN": lambda: ex.lenet_model(True)}
    sweep = ex.lr_sweep(makers, tiny, [0.1, 1.0], seeds=[0, 1], epochs=1)
    assert len(sweep) == 8 and set(sweep["lr"]) == {0.1, 1.0}
    assert {"model", "lr", "seed", "val_acc", "best_val_acc", "diverged"} <= set(sweep.columns)
    assert not any("test" in c for c in sweep.columns)
    outcomes = ex.trainable_settings(sweep)
    assert len(outcomes) == 4 and set(outcomes["outcome"]) <= {"trains", "does not train", "unclear"}
    assert (outcomes["runs"] == 2).all()
    assert len(plot.accuracy_vs_lr(sweep).axes) == 1
    assert len(plot.sweep_panels(sweep, "lr", {"no BN": ["plain"], "BN": ["BN"]}).axes) == 2
    init = ex.init_sweep({"BN": (makers["BN"], 1.0)}, tiny, [1e-3, 1.0], seeds=[0], epochs=1)
    assert list(init["scale"]) == [1e-3, 1.0] and init["val_acc"].between(0, 1).all()
    assert len(plot.accuracy_vs_init_scale(init).axes) == 1


def test_sweeps_in_two_processes_equal_one(tiny):
    makers = {"BN": lambda: ex.lenet_model(True)}
    one = ex.lr_sweep(makers, tiny, [0.5, 1.0], seeds=[0, 1], epochs=1, processes=1)
    two = ex.lr_sweep(makers, tiny, [0.5, 1.0], seeds=[0, 1], epochs=1, processes=2)
    pd.testing.assert_frame_equal(one, two)


@pytest.fixture
def asked(monkeypatch):
    """The split of every loader a run asks ``Data`` for, in order."""
    splits = []
    original = ex.Data.loaders

    def spy(self, batch_size, seed=0, split="val", drop_last=False):
        splits.append(split)
        return original(self, batch_size, seed, split, drop_last)

    monkeypatch.setattr(ex.Data, "loaders", spy)
    return splits


def test_sweeps_never_read_the_test_split(tiny, asked):
    """Tuning sees the validation split only: every loader a sweep asks for is a validation loader, and
    destroying the test split changes nothing."""
    makers = {"BN": lambda: ex.lenet_model(True)}
    before = ex.lr_sweep(makers, tiny, [1.0], seeds=[0], epochs=1)
    ex.init_sweep({"BN": (makers["BN"], 1.0)}, tiny, [1.0], seeds=[0], epochs=1)
    assert asked and set(asked) == {"val"}
    saved = tiny.X_test, tiny.y_test
    try:
        tiny.X_test, tiny.y_test = torch.full_like(tiny.X_test, float("nan")), torch.zeros_like(tiny.y_test)
        after = ex.lr_sweep(makers, tiny, [1.0], seeds=[0], epochs=1)
    finally:
        tiny.X_test, tiny.y_test = saved
    assert after["val_acc"].tolist() == before["val_acc"].tolist()


def test_splits_are_disjoint_and_fixed():
    from normbook import data
    (Xa, _), (Va, _) = data.train_val_split()
    (Xb, _), (Vb, _) = data.train_val_split()
    assert len(Xa) == 50_000 and len(Va) == data.VALIDATION_SIZE == 10_000
    assert torch.equal(Va, Vb) and torch.equal(Xa[:100], Xb[:100])
    # the two index sets partition the training file
    order = torch.randperm(60_000, generator=torch.Generator().manual_seed(data.SPLIT_SEED))
    X_all, _ = data.load_fashion_mnist("train")
    assert torch.equal(X_all[order[:10_000]], Va) and torch.equal(X_all[order[10_000:]], Xa)
    splits = data.load_splits(64, train_size=128, val_size=32, test_size=16)
    assert (splits.train.num_examples, splits.val.num_examples, splits.test.num_examples) == (128, 32, 16)
    with pytest.raises(ValueError, match="validation_size"):
        data.train_val_split(0)


def test_a_run_reports_the_test_split_when_asked(tiny):
    frame = ex.run_seeds(lambda: ex.lenet_model(True), tiny, seeds=[0], epochs=1, lr=1.0, split="test")
    assert "test_acc" in frame.columns and "val_acc" not in frame.columns
    with pytest.raises(ValueError, match="evaluated on one of"):
        tiny.loaders(32, split="train")


def test_parallel_map_order_closures_and_errors():
    offset = 10
    assert parallel_map(lambda j: j * j + offset, [3, 1, 2], processes=2) == [19, 11, 14]
    assert parallel_map(lambda j: j + 1, [1, 2], processes=1) == [2, 3]
    states = parallel_map(lambda j: torch.nn.Linear(3, 2).state_dict() | {"j": torch.full((2,), j)},
                          [0, 1, 2], processes=2)  # tensors come back by value, after the workers exited
    assert [s["j"].tolist() for s in states] == [[0, 0], [1, 1], [2, 2]] and states[0]["weight"].shape == (2, 3)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        parallel_map(lambda j: 1 / j, [1, 0, 2], processes=2)
    with pytest.raises(ValueError, match="processes"):
        parallel_map(abs, [1], processes=0)


def test_compare_layers_same_start_same_curve(tiny):
    result = ex.compare_layers(lambda: ex.lenet_model(True, nbnn), lambda: ex.lenet_model(True, torch.nn), tiny,
                               seed=0, epochs=1, lr=1.0)
    assert result["initial_param_diff"] == 0.0
    assert len(result["step_loss_diff"]) == len(result["a"].batch_loss) == 512 // 256
    assert result["max_loss_diff"] < 1e-4
    assert len(plot.loss_comparison(result).axes) == 2


def test_compare_layers_in_two_processes_with_the_book_layers_compiled(tiny):
    """E5 as chapter 6 runs it: the book's LeNet-BN (closed-form backward, trained through torch.compile) in one
    process, torch.nn's (eager) in another; the same start, the same batches, the same curve up to rounding.
    Training happens in the forked children only, so this process may still fork afterwards."""
    from normbook.book.train import compile_available
    if not compile_available():
        pytest.skip("torch.compile is not available on this machine")

    def book():
        return nbnn.set_backward(ex.lenet_model(True, nbnn), "closed_form")

    result = ex.compare_layers(book, lambda: ex.lenet_model(True, torch.nn), tiny, seed=0, epochs=2, lr=1.0,
                               compile=(True, False), processes=2)
    assert result["initial_param_diff"] == 0.0
    assert len(result["a"].batch_loss) == len(result["b"].batch_loss) == 2 * (512 // 256)
    assert result["max_loss_diff"] < 1e-4
    assert result["a"].eval_acc == pytest.approx(result["b"].eval_acc, abs=2 / len(tiny.y_val))
    # after the compiled run in a child, this process can still fork and train
    again = parallel_map(lambda i: ex.run_seeds(book, tiny, seeds=[i], epochs=1, lr=1.0), [0, 1], 2)
    assert len(again) == 2


def test_recomputed_stats_hook_leaves_the_model_alone(tiny):
    model = ex.lenet_model(True, torch.nn)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook = ex.recomputed_stats_accuracy(tiny, size=256, batch_size=128)
    out = hook(model, 1)
    assert set(out) == {"val_acc_recomputed"} and 0 <= out["val_acc_recomputed"] <= 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    frame = ex.run_seeds(lambda: ex.lenet_model(True), tiny, seeds=[0], epochs=2, lr=1.0, on_epoch_end=hook)
    assert frame["val_acc_recomputed"].notna().all() and len(frame) == 2
    fig = plot.per_seed_curves(frame, ["val_acc", "val_acc_recomputed"], ["running", "recomputed"])
    assert len(fig.axes[0].lines) == 2
    two = pd.concat([frame, frame.assign(seed=1)], ignore_index=True)
    fig = plot.per_seed_panels(two, ["val_acc", "val_acc_recomputed"], ["running", "recomputed"])
    assert len(fig.axes) == 2 and all(len(ax.lines) == 2 for ax in fig.axes)


def test_e4_sweep_rows_values_per_statistic_and_parallel_equals_serial():
    norms = {"BN": models.batch_norm(), "GN": models.group_norm(8)}
    kw = dict(epochs=1, train_size=256, val_size=128, test_size=128)
    par = ch06.e4_sweep(norms, [4, 16], [0, 1], processes=2, **kw)
    ser = ch06.e4_sweep(norms, [4, 16], [0, 1], processes=1, **kw)
    assert len(par) == 8 and list(par.model[:4]) == ["BN"] * 4
    assert list(par[par.model == "BN"].values_per_stat) == [4, 4, 16, 16]
    assert (par[par.model == "GN"].values_per_stat == 32).all()
    assert par.lr.tolist()[:4] == pytest.approx([0.05 * 4 / 32] * 2 + [0.05 * 16 / 32] * 2)
    cols = ["val_error", "val_error_batch_stats", "train_loss"]
    pd.testing.assert_frame_equal(par[cols], ser[cols])
    assert ch06.values_per_statistic(torch.nn.GroupNorm(4, 64), 2, spatial=49) == 16 * 49
    assert ch06.values_per_statistic(nbnn.BatchNorm2d(4), 2, spatial=49) == 2 * 49
    assert ch06.e4_model(None)[1].bias is not None and ch06.e4_model(models.batch_norm())[1].bias is None
    with pytest.raises(ValueError, match="no rule"):
        ch06.values_per_statistic(torch.nn.Linear(2, 2), 2)


# ---------------------------------------------------------------- chapter 6's measurements (normbook.book.ch06)
def test_sweeps_are_given_the_validation_split_everywhere(tiny, asked):
    """Every sweep function (lr_sweep, init_sweep with its own initializer, ch06.e4_sweep) asks for validation
    loaders only; e4_sweep by default evaluates on validation and names its columns after it."""
    ex.init_sweep({"BN": (lambda: ex.lenet_model(True), 1.0)}, tiny, [0.1], seeds=[0], epochs=1,
                  init=ch06.scaled_init_last_xavier)
    frame = ch06.e4_sweep({"BN": models.batch_norm()}, [8], [0], epochs=1, train_size=64, val_size=32,
                          test_size=16, processes=1)
    assert asked and set(asked) == {"val"}
    assert "val_error" in frame.columns and not any(c.startswith("test") for c in frame.columns)


def test_sweep_rows_carry_what_an_epoch_hook_measured(tiny):
    hook = ch06.sweep_diagnostics(tiny.X_val[:64])
    sweep = ex.lr_sweep({"plain": lambda: ex.lenet_model(False), "BN": lambda: ex.lenet_model(True)}, tiny,
                        [1.0], seeds=[0], epochs=1, on_epoch_end=hook)
    plain, bn = sweep.set_index("model").loc["plain"], sweep.set_index("model").loc["BN"]
    assert 0 <= plain.saturated <= 1 and 0 <= bn.saturated <= 1
    assert math.isnan(plain.weight_sq_norm) and bn.weight_sq_norm > 0


def test_sweep_diagnostics_counts_saturated_sigmoids_and_bn_fed_weights():
    net = models.lenet(models.batch_norm())
    X = torch.rand(16, 1, 28, 28)
    out = ch06.sweep_diagnostics(X)(net, 0)
    fed = ch06.weights_before_norm(net)
    assert [type(m).__name__ for m in fed] == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert out["weight_sq_norm"] == pytest.approx(sum(float(m.weight.detach().pow(2).sum()) for m in fed))
    with torch.no_grad():  # huge weights before the sigmoids: every sigmoid saturates
        plain = models.lenet(padding=0)
        for m in plain.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.fill_(100.0)
    assert ch06.sweep_diagnostics(X)(plain, 0)["saturated"] == pytest.approx(1.0, abs=0.02)
    assert ch06.weights_before_norm(models.lenet()) == []


def test_scaled_init_last_xavier_scales_all_but_the_last_layer():
    a, b = models.lenet(models.batch_norm()), models.lenet(models.batch_norm())
    torch.manual_seed(0)
    ch06.scaled_init_last_xavier(1.0)(a)
    torch.manual_seed(0)
    ch06.scaled_init_last_xavier(10.0)(b)
    la = [m for m in a.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    lb = [m for m in b.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    for x, y in zip(la[:-1], lb[:-1]):  # the same draws, times the scale
        torch.testing.assert_close(y.weight, 10.0 * x.weight)
    bound = (6 / (84 + 10)) ** 0.5  # Xavier-uniform for Linear(84, 10)
    assert lb[-1].weight.abs().max() <= bound and (lb[-1].bias == 0).all()
    with pytest.raises(ValueError, match="scale"):
        ch06.scaled_init_last_xavier(0.0)


def test_bn_output_and_the_weights_gradient_under_scaling():
    """What E3 states: scaling the BN-fed weights by s leaves the loss unchanged and divides their gradient by s."""
    X, y = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    grads, losses = [], []
    for s in (1.0, 10.0):
        net = models.lenet(models.batch_norm())
        torch.manual_seed(0)
        ch06.scaled_init_last_xavier(s)(net)
        loss = torch.nn.functional.cross_entropy(net(X), y)
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([m.weight.grad.flatten() for m in ch06.weights_before_norm(net)]))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    torch.testing.assert_close(grads[1] * 10.0, grads[0], rtol=1e-3, atol=1e-7)


def test_ema_effective_batches():
    assert ch06.ema_effective_batches(0.1) == pytest.approx(19.0)
    assert ch06.ema_effective_batches(1.0) == pytest.approx(1.0)
    m = 0.3  # against the weights m (1 - m)^k summed directly
    weights = torch.tensor([m * (1 - m) ** k for k in range(400)], dtype=torch.float64)
    assert ch06.ema_effective_batches(m) == pytest.approx(float(1 / weights.pow(2).sum()))
    with pytest.raises(ValueError):
        ch06.ema_effective_batches(0.0)


def test_bn_momentum_does_not_change_training():
    """Exercise 2's premise, checked on torch's BN: the momentum of the running averages enters eval mode only."""
    X, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    losses = {}
    for momentum in (0.01, 0.5):
        torch.manual_seed(0)
        net = models.lenet(models.batch_norm(momentum=momentum))
        opt = torch.optim.SGD(net.parameters(), lr=1.0)
        run = []
        for i in range(4):
            loss = torch.nn.functional.cross_entropy(net(X[16 * i:16 * i + 16]), y[16 * i:16 * i + 16])
            opt.zero_grad()
            loss.backward()
            opt.step()
            run.append(loss.item())
        losses[momentum] = run
    assert losses[0.01] == losses[0.5]


def test_recomputed_accuracies_hook(tiny):
    model = ex.lenet_model(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hook = ch06.recomputed_accuracies(tiny, {"small": 64, "large": 512}, split="test")
    out = hook(model, 1)
    assert set(out) == {"test_acc_small", "test_acc_large"} and all(0 <= v <= 1 for v in out.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the large sample is the whole training split: the same statistics as recompute_batchnorm_stats
    twin = copy.deepcopy(model)
    recompute_batchnorm_stats(twin, data.TensorLoader(tiny.X, tiny.y, 256, drop_last=True))
    assert out["test_acc_large"] == pytest.approx(evaluate(twin, tiny.eval_loader("test")))
    # training is the same with and without the hook (its draws use their own generator)
    plain = ex.run_seeds(lambda: ex.lenet_model(True), tiny, seeds=[0], epochs=2, lr=1.0)
    hooked = ex.run_seeds(lambda: ex.lenet_model(True), tiny, seeds=[0], epochs=2, lr=1.0, on_epoch_end=hook)
    assert plain.train_loss.tolist() == hooked.train_loss.tolist()
    with pytest.raises(ValueError, match="sample size"):
        ch06.recomputed_accuracies(tiny, {"too many": 10_000})


def test_effective_sample_size_counts_independent_values():
    torch.manual_seed(0)
    iid = torch.randn(4000, 2, 6, 6)
    assert ch06.effective_sample_size(iid, 4) == pytest.approx(4 * 36, rel=0.1)
    assert ch06.effective_sample_size(iid, 4, stride=2) == pytest.approx(4 * 9, rel=0.1)
    # every position of an example equal: a channel mean is worth one value per example
    same = torch.randn(4000, 2, 1, 1).expand(4000, 2, 6, 6)
    assert ch06.effective_sample_size(same, 4) == pytest.approx(4, rel=0.1)
    with pytest.raises(ValueError):
        ch06.effective_sample_size(torch.randn(10, 3), 2)


def test_ghost_batch_norm_1d_normalizes_groups_of_examples():
    layer = ch06.GhostBatchNorm1d(5, 2)
    x = torch.randn(8, 5)
    expected = torch.cat([torch.nn.functional.batch_norm(c, None, None, training=True) for c in x.split(2)])
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
    assert layer.num_batches_tracked.item() == 4  # one running-average update per ghost batch
    layer.eval()
    torch.testing.assert_close(layer(x), torch.nn.functional.batch_norm(
        x, layer.running_mean, layer.running_var, layer.weight, layer.bias, False), rtol=1e-5, atol=1e-5)
    assert ch06.values_per_statistic(layer, 32) == 2 and ch06.values_per_statistic(layer, 1) == 1
    model = ch06.e4_model(ch06.ghost_batch_norm(2))
    assert sum(isinstance(m, ch06.GhostBatchNorm1d) for m in model.modules()) == 2


def test_e4_sweep_epochs_per_batch_size_and_new_columns():
    frame = ch06.e4_sweep({"BN": models.batch_norm(), "GN": models.group_norm(8)}, [4, 16], [0],
                          epochs={4: 1, 16: 2}, train_size=128, val_size=64, test_size=16, processes=1)
    assert frame.set_index(["model", "batch_size"]).epochs.to_dict() == {
        ("BN", 4): 1, ("BN", 16): 2, ("GN", 4): 1, ("GN", 16): 2}
    assert [len(c) for c in frame.val_error_by_epoch] == frame.epochs.tolist()
    assert frame.val_error.tolist() == [c[-1] for c in frame.val_error_by_epoch]
    bn, gn = frame[frame.model == "BN"], frame[frame.model == "GN"]
    assert bn.val_error_recomputed.between(0, 1).all() and gn.val_error_recomputed.isna().all()
    with pytest.raises(ValueError, match="no entry"):
        ch06.e4_sweep({"BN": models.batch_norm()}, [4, 8], [0], epochs={4: 1}, train_size=64, processes=1)


def test_cosine_schedule_in_train(tiny):
    from normbook.book.train import cosine_schedule, train
    assert cosine_schedule(0.0) == 1.0 and cosine_schedule(0.5) == pytest.approx(0.5)
    assert cosine_schedule(1.0) == pytest.approx(0.0, abs=1e-12)
    seen = []

    def record(progress):
        seen.append(progress)
        return 1.0

    loaders = lambda: tiny.loaders(128, seed=0)  # noqa: E731
    torch.manual_seed(0)
    a = ex.lenet_model(True)
    b, c = copy.deepcopy(a), copy.deepcopy(a)
    ha = train(a, *loaders(), epochs=2, lr=0.5, seed=0, progress=False)
    hb = train(b, *loaders(), epochs=2, lr=0.5, seed=0, progress=False, lr_schedule=record)
    assert ha.batch_loss == hb.batch_loss  # a constant factor of 1 changes nothing
    steps = 2 * (512 // 128)
    assert seen == pytest.approx([i / steps for i in range(steps)])
    hc = train(c, *loaders(), epochs=2, lr=0.5, seed=0, progress=False, lr_schedule=cosine_schedule)
    assert hc.batch_loss[0] == ha.batch_loss[0] and hc.batch_loss[1:] != ha.batch_loss[1:]
