"""The shared checker machinery: a right answer passes, a wrong one fails with a message that says where."""
import torch

from normbook.exercises import compare, run_check


def test_compare_accepts_equal_and_reports_shape_and_value_mismatch():
    x = torch.arange(6.0).reshape(2, 3)
    assert compare(x, x.clone()) is None
    assert "shape (3, 2)" in compare(x.T, x)
    message = compare(x + torch.tensor([[0, 0, 0], [0, 0.5, 0]]), x)
    assert "differs" in message and "flat index 4" in message
    assert "None" in compare(None, x)
    assert "NaN" in compare(x / 0 * 0, x)


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
