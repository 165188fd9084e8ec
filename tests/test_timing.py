"""normbook.timing: the one stopwatch (torch.utils.benchmark.Timer underneath). Structure only: what is called,
how often, what comes back, what is restored; never how fast (speed belongs in benchmarks/)."""
import pytest
import torch

from normbook.timing import TimingResult, compare_times, time_it


def test_time_it_with_a_fixed_number_of_calls():
    calls = []
    result = time_it(lambda: calls.append(1), repeats=3, number=5)
    assert isinstance(result, TimingResult)
    assert result.repeats == 3 and result.number == 5 and len(result.times) == 3
    assert len(calls) >= 3 * 5  # Timer adds its own warm-up calls before each measurement
    assert result.min <= result.median <= result.max and result.min > 0
    assert "median of 3 measurements of 5 calls" in str(result)


def test_time_it_chooses_the_number_of_calls():
    result = time_it(lambda: sum(range(100)), repeats=2, min_time=0.01)
    assert result.number >= 1 and result.repeats >= 1 and all(t > 0 for t in result.times)


@pytest.mark.parametrize("kwargs", [{"repeats": 0}, {"number": 0}, {"num_threads": 0}, {"repeats": 1.5}])
def test_time_it_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError):
        time_it(lambda: None, **kwargs)


def test_time_it_rejects_a_non_callable():
    with pytest.raises(TypeError, match="function of no arguments"):
        time_it(42)


def test_threads_are_set_for_the_measurement_and_restored():
    before = torch.get_num_threads()
    seen = set()
    time_it(lambda: seen.add(torch.get_num_threads()), repeats=1, number=1, num_threads=1)
    assert seen == {1} and torch.get_num_threads() == before
    seen.clear()
    time_it(lambda: seen.add(torch.get_num_threads()), repeats=1, number=1, num_threads=None)
    assert seen == {before}


def test_compare_times_interleaves_rounds():
    order = []
    result = compare_times({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, number=2)
    assert set(result) == {"a", "b"}
    assert all(r.repeats == 3 and r.number == 2 for r in result.values())
    # every round times a, then b: the sequence of calls alternates between runs of a's and runs of b's
    runs = [k for i, k in enumerate(order) if i == 0 or order[i - 1] != k]
    assert runs == ["a", "b"] * 3
    with pytest.raises(ValueError):
        compare_times({})


def test_timing_prints_nothing_in_a_fresh_process():
    """torch's C++ extension builder logs "No CUDA runtime is found" when torch.utils.benchmark is first imported
    on a CUDA build without a GPU (as on the book's CPU machines); timing filters that notice, and only while
    importing."""
    import subprocess
    import sys
    code = ("import logging, normbook.timing as t; t.time_it(lambda: 1, repeats=1, number=1); "
            "print(len(logging.getLogger('torch.utils.cpp_extension').filters))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "No CUDA runtime" not in out.stderr
    assert out.stdout.strip() == "0"   # the filter is gone after the import
