"""The shared checker machinery: a right answer passes, a wrong one fails with a message that says where."""
import torch

from normbook.book.exercises import compare, compare_all, moments, run_check


def test_compare_accepts_equal_and_reports_shape_and_value_mismatch():
    x = torch.arange(6.0).reshape(2, 3)
    assert compare(x, x.clone()) is None
    assert "shape (3, 2)" in compare(x.T, x)
    message = compare(x + torch.tensor([[0, 0, 0], [0, 0.5, 0]]), x)
    assert "differs" in message and "flat index 4" in message
    assert "None" in compare(None, x)
    assert "NaN" in compare(x / 0 * 0, x)


def test_compare_all_checks_the_count_then_each_value_in_order():
    a, b = torch.ones(3), torch.zeros(2)
    assert compare_all((a, b), (a, b), ("a", "b")) is None
    assert compare_all([a, b], (a, b), ("a", "b")) is None
    assert compare_all(a, (a, b), ("a", "b")) == "expected a tuple (a, b)"
    assert compare_all((a,), (a, b), ("a", "b")) == "expected a tuple (a, b)"
    assert compare_all((a, b + 1), (a, b), ("a", "b")).startswith("b differs")
    assert compare_all((a + 1, b + 1), (a, b), ("a", "b")).startswith("a differs")
    assert compare_all((a, b + 1e-7), (a, b), ("a", "b"), rtol=0, atol=1e-8).startswith("b differs")


def test_moments_are_count_mean_and_sum_of_squared_deviations():
    t = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)
    n, mean, m2 = moments(t)
    assert n == 2.0 and mean.tolist() == [2.0, 4.0] and m2.tolist() == [2.0, 8.0]
    n, mean, m2 = moments(t[:0])
    assert n == 0.0 and mean.tolist() == [0.0, 0.0] and m2.tolist() == [0.0, 0.0]


def test_run_check_counts_failures_and_survives_exceptions(capsys):
    def boom():
        raise ValueError("bad shape")

    result = run_check("demo", [("ok", lambda: None), ("wrong", lambda: "output differs"), ("raises", boom)],
                       hint="look at the axis")
    out = capsys.readouterr().out
    assert not result and result.cases == 3 and len(result.failures) == 2
    assert "FAIL" in out and "hint: look at the axis" in out
    assert result.failures[1] == ("raises", "raised ValueError: bad shape")
    assert run_check("demo", [("ok", lambda: None)], verbose=False)
