"""normbook.book.runs, parallel, ch06 and plot.training on tiny Fashion-MNIST subsets (seconds on a CPU)."""

import matplotlib
import pandas as pd
import pytest
import torch

import normbook.nn as nbnn
from normbook.book import ch06, models, plot
from normbook.book import runs as ex
from normbook.book.parallel import parallel_map
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
    init = ex.init_sweep({"BN": (makers["BN"], 1.0)}, tiny, [1e-3, 1.0], seeds=[0], epochs=1)
    assert list(init["scale"]) == [1e-3, 1.0] and init["val_acc"].between(0, 1).all()
    assert len(plot.accuracy_vs_init_scale(init).axes) == 1


def test_sweeps_in_two_processes_equal_one(tiny):
    makers = {"BN": lambda: ex.lenet_model(True)}
    one = ex.lr_sweep(makers, tiny, [0.5, 1.0], seeds=[0, 1], epochs=1, processes=1)
    two = ex.lr_sweep(makers, tiny, [0.5, 1.0], seeds=[0, 1], epochs=1, processes=2)
    pd.testing.assert_frame_equal(one, two)


def test_sweeps_never_read_the_test_split(tiny, monkeypatch):
    """Tuning sees the validation split only: every loader a sweep asks for is a validation loader, and
    destroying the test split changes nothing."""
    asked = []
    original = ex.Data.loaders

    def spy(self, batch_size, seed=0, split="val", drop_last=False):
        asked.append(split)
        return original(self, batch_size, seed, split, drop_last)

    monkeypatch.setattr(ex.Data, "loaders", spy)
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
