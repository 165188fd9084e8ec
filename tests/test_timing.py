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


# ---------------------------------------------------------------------------------------------------------------
# The GPU path: its measurement loop runs here with a host clock and a recording flush in place of CUDA's
# ---------------------------------------------------------------------------------------------------------------
class _FakeEvent:
    """A stand-in for torch.cuda.Event: records a logical clock tick; elapsed_time in milliseconds."""
    clock = [0.0]

    def record(self):
        self.t = _FakeEvent.clock[0]

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


def test_event_rounds_flush_before_every_timed_call_and_interleave():
    from normbook.timing import _event_rounds
    log = []

    def fn(name, seconds):
        def run():
            log.append(name)
            _FakeEvent.clock[0] += seconds     # the "kernel" takes this long on the fake clock
        return run

    def flush():
        log.append("flush")
        _FakeEvent.clock[0] += 100.0           # the flush is outside the events: it must not count

    out = _event_rounds({"a": fn("a", 0.002), "b": fn("b", 0.005)}, 3, {"a": 2, "b": 1}, flush, _FakeEvent,
                        lambda: log.append("sync"))
    one_round = ["flush", "a", "flush", "a", "sync", "flush", "b", "sync"]
    assert log == one_round * 3
    assert out["a"] == pytest.approx([0.002] * 3) and out["b"] == pytest.approx([0.005] * 3)


def test_event_rounds_without_flush():
    from normbook.timing import _event_rounds
    calls = []
    out = _event_rounds({"a": lambda: calls.append(1)}, 2, {"a": 4}, None, _FakeEvent, lambda: None)
    assert len(calls) == 8 and len(out["a"]) == 2


def test_l2_flush_bytes():
    from normbook.timing import l2_flush_bytes
    assert l2_flush_bytes(50 * 2 ** 20) == 256 * 2 ** 20          # an H100's 50 MiB L2: do_bench's 256 MiB
    assert l2_flush_bytes(200 * 2 ** 20) == 400 * 2 ** 20         # larger caches: twice the L2
    with pytest.raises(ValueError):
        l2_flush_bytes(-1)


def test_cuda_times_checks_its_arguments_then_needs_a_gpu():
    from normbook.timing import cuda_times
    with pytest.raises(ValueError):
        cuda_times({})
    with pytest.raises(ValueError):
        cuda_times({"a": lambda: None}, repeats=0)
    with pytest.raises(TypeError):
        cuda_times({"a": 3})
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            cuda_times({"a": lambda: None})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_cuda_times_on_a_gpu(cuda_graph):
    from normbook.timing import cuda_times
    x = torch.randn(1 << 20, device="cuda")
    y = torch.empty_like(x)
    result = cuda_times({"copy": lambda: y.copy_(x), "add": lambda: torch.add(x, 1, out=y)}, repeats=3,
                        number=4, cuda_graph=cuda_graph)
    assert set(result) == {"copy", "add"}
    assert all(r.repeats == 3 and r.number == 4 and r.min > 0 for r in result.values())
