"""One stopwatch for the book and the benchmarks, built on ``torch.utils.benchmark.Timer``.

``Timer`` does what careful timing needs and we would otherwise write by hand: it runs warm-up calls, times blocks
of many calls so the clock's resolution and per-call overhead vanish, synchronizes CUDA (any accelerator) before
reading the clock, and pins torch's CPU thread count for the measurement (one thread by default: small CPU
operations timed with several threads on a busy machine measure mostly the threads waiting for each other).

- :func:`time_it` times one function: a :class:`TimingResult` with every block's seconds per call.
- :func:`compare_times` times several functions *interleaved*, round by round (A, B, C, A, B, C, ...), so that a
  machine that speeds up or slows down during the measurement affects all of them alike; ratios measured this
  way are what the chapters and ``benchmarks/`` report.
- :func:`cuda_times` does the same on a CUDA GPU the way GPU kernels must be timed (as ``triton.testing.do_bench``
  does): CUDA events recorded on the stream around each call (the host's clock would measure the launch, not the
  kernel), the L2 cache flushed before every timed call by overwriting a buffer larger than it (else a tensor
  that fits in L2, 50 MB on an H100, is read from cache and the "bandwidth" exceeds the memory's), and
  optionally the calls captured in a CUDA graph and replayed, which removes the CPU's launch overhead: at small
  sizes the difference between the two is that overhead.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
import math
from typing import Callable, Dict, List, Optional

import torch

__all__ = ["TimingResult", "time_it", "compare_times", "cuda_times", "l2_flush_bytes"]


@dataclass
class TimingResult:
    """Seconds per call: one entry of ``times`` per measurement (a block of ``number`` calls, or one round of
    :func:`compare_times`). Report the median, which a few disturbed measurements cannot drag."""
    times: List[float] = field(repr=False)
    number: int

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def repeats(self) -> int:
        return len(self.times)

    def __str__(self) -> str:
        return (f"{_fmt_seconds(self.median)} per call (median of {self.repeats} measurements of {self.number} "
                f"calls; range {_fmt_seconds(self.min)} to {_fmt_seconds(self.max)})")


def _fmt_seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def _threads(num_threads: Optional[int]) -> int:
    if num_threads is None:
        return torch.get_num_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer (or None for torch's current setting), "
                         f"got {num_threads!r}")
    return num_threads


def _check_counts(repeats: int, number: Optional[int]) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int) or number < 1):
        raise ValueError(f"number must be a positive integer (or None to choose it), got {number!r}")


class _NoCudaRuntimeNotice(logging.Filter):
    """Drops the one notice torch's C++ extension builder logs when it is imported on a CUDA build of torch
    without a GPU ("No CUDA runtime is found, using CUDA_HOME=..."): it says nothing about the timing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


def _benchmark_module():
    # imported here, with the notice above filtered while it is imported: torch.utils.benchmark imports torch's C++
    # extension builder, which logs that notice at import; neither importing normbook nor timing prints anything
    logger, notice = logging.getLogger("torch.utils.cpp_extension"), _NoCudaRuntimeNotice()
    logger.addFilter(notice)
    try:
        from torch.utils import benchmark
    finally:
        logger.removeFilter(notice)
    return benchmark


def _timer(fn: Callable[[], object], num_threads: int):
    benchmark = _benchmark_module()

    if not callable(fn):
        raise TypeError(f"expected a function of no arguments to time, got {type(fn).__name__}")
    return benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=num_threads)


def time_it(fn: Callable[[], object], *, repeats: int = 7, number: Optional[int] = None, min_time: float = 0.05,
            num_threads: Optional[int] = 1) -> TimingResult:
    """Seconds per call of ``fn()``.

    With ``number=None`` (the default) ``Timer.blocked_autorange`` chooses how many calls make one block (enough
    that the clock's overhead is negligible) and times blocks until ``repeats * min_time`` seconds have passed
    (at least one block; a function slower than that gives one). With ``number`` given, ``repeats``
    measurements of ``number`` calls each (``Timer.timeit``, which warms up before each). ``num_threads``: torch's
    CPU threads during the measurement (restored after; None keeps the current setting).
    """
    _check_counts(repeats, number)
    timer = _timer(fn, _threads(num_threads))
    if number is None:
        m = timer.blocked_autorange(min_run_time=repeats * min_time)
        return TimingResult(times=[t / m.number_per_run for t in m.raw_times], number=m.number_per_run)
    return TimingResult(times=[timer.timeit(number).mean for _ in range(repeats)], number=number)


def compare_times(fns: Dict[str, Callable[[], object]], *, repeats: int = 7, number: Optional[int] = None,
                  min_time: float = 0.02, num_threads: Optional[int] = 1) -> Dict[str, TimingResult]:
    """Time every function in ``fns`` (name -> function of no arguments) interleaved: ``repeats`` rounds, each
    timing every function once in turn (its median seconds per call over ``min_time`` seconds of blocks, or
    ``number`` calls). Returns name -> :class:`TimingResult` whose ``times`` hold one value per round, so
    ``result["a"].median / result["b"].median`` is a ratio measured side by side."""
    _check_counts(repeats, number)
    if not fns:
        raise ValueError("give at least one function to time")
    threads = _threads(num_threads)
    timers = {name: _timer(fn, threads) for name, fn in fns.items()}
    runs: Dict[str, List[float]] = {name: [] for name in fns}
    numbers: Dict[str, int] = {}
    for _ in range(repeats):
        for name, timer in timers.items():
            m = timer.timeit(number) if number is not None else timer.blocked_autorange(min_run_time=min_time)
            runs[name].append(m.median)
            numbers[name] = m.number_per_run
    return {name: TimingResult(times=runs[name], number=numbers[name]) for name in fns}


# ---------------------------------------------------------------------------------------------------------------
# GPU: CUDA events, an L2 flush between calls, CUDA graphs
# ---------------------------------------------------------------------------------------------------------------
def l2_flush_bytes(l2_cache_bytes: int) -> int:
    """The size of the buffer written before each timed call to evict the L2 cache: twice the L2 (an LRU-like
    cache keeps part of a buffer only as large as itself), at least 256 MiB (what ``triton.testing.do_bench``
    uses on every GPU)."""
    if isinstance(l2_cache_bytes, bool) or not isinstance(l2_cache_bytes, int) or l2_cache_bytes < 0:
        raise ValueError(f"l2_cache_bytes must be a non-negative integer, got {l2_cache_bytes!r}")
    return max(2 * l2_cache_bytes, 256 * 2 ** 20)


def _event_rounds(fns: Dict[str, Callable[[], object]], repeats: int, numbers: Dict[str, int],
                  flush: Optional[Callable[[], object]], new_event: Callable[[], object],
                  sync: Callable[[], object]) -> Dict[str, List[float]]:
    """The measurement loop of :func:`cuda_times`, with the device's pieces passed in (so that it runs, and is
    tested, without a GPU): ``repeats`` rounds; in each, every function in turn, ``numbers[name]`` timed calls,
    each preceded by ``flush()`` (outside the timed interval) and bracketed by two events from ``new_event()``
    (objects with ``record()`` and ``elapsed_time(end)`` in milliseconds, like ``torch.cuda.Event``). Returns
    name -> seconds per call, one value per round (the mean over that round's calls)."""
    out: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            pairs = []
            for _ in range(numbers[name]):
                if flush is not None:
                    flush()
                start, end = new_event(), new_event()
                start.record()
                fn()
                end.record()
                pairs.append((start, end))
            sync()
            out[name].append(sum(s.elapsed_time(e) for s, e in pairs) / 1e3 / len(pairs))
    return out


def _graph_of(fn: Callable[[], object], calls: int):
    """A CUDA graph that replays ``calls`` calls of fn (captured after warm-up on a side stream, as CUDA graphs
    require)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return graph


def cuda_times(fns: Dict[str, Callable[[], object]], *, repeats: int = 7, number: Optional[int] = None,
               min_time: float = 0.02, flush_l2: bool = True, cuda_graph: bool = False,
               device: Optional[torch.device] = None) -> Dict[str, TimingResult]:
    """Seconds per call of each function in ``fns`` on a CUDA device, interleaved round by round like
    :func:`compare_times` (``result["a"].median / result["b"].median`` is a ratio measured side by side).

    * Times come from CUDA events recorded on the stream before and after each call: the GPU's own clock.
    * ``flush_l2=True``: before every timed call a buffer of :func:`l2_flush_bytes` is zeroed (outside the timed
      interval), so each call reads its inputs from memory, not from the L2 cache of the previous call.
    * ``cuda_graph=True``: the ``number`` calls of a round are captured once in a CUDA graph and each round
      replays it (events around the replay); the host launches nothing per call, so the time is the GPU's alone.
      Calls inside a graph follow each other without an L2 flush (``flush_l2`` is ignored).
    * ``number=None``: enough calls per round for ``min_time`` seconds (at least 1, at most 1,000), from a short
      calibration.

    On a machine without a CUDA GPU this raises RuntimeError: use :func:`compare_times` there.
    """
    _check_counts(repeats, number)
    if not fns:
        raise ValueError("give at least one function to time")
    for fn in fns.values():
        _timer(fn, 1)                     # the same check as compare_times: functions of no arguments
    if not torch.cuda.is_available():
        raise RuntimeError("cuda_times needs a CUDA GPU (CUDA events, an L2 flush, CUDA graphs); on a CPU use "
                           "normbook.timing.compare_times")
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else torch.device(device)
    new_event = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
    sync = torch.cuda.synchronize
    cache = None
    if flush_l2 and not cuda_graph:
        l2 = torch.cuda.get_device_properties(device).L2_cache_size
        cache = torch.empty(l2_flush_bytes(l2) // 4, dtype=torch.int32, device=device)
    flush = cache.zero_ if cache is not None else None
    with torch.cuda.device(device):
        numbers = {}
        for name, fn in fns.items():          # warm up (compilation, autotuning), then calibrate
            for _ in range(3):
                fn()
            if number is not None:
                numbers[name] = number
                continue
            once = _event_rounds({name: fn}, 1, {name: 5}, flush, new_event, sync)[name][0]
            numbers[name] = min(max(1, math.ceil(min_time / max(once, 1e-7))), 1000)
        if not cuda_graph:
            runs = _event_rounds(fns, repeats, numbers, flush, new_event, sync)
        else:
            graphs = {name: _graph_of(fn, numbers[name]) for name, fn in fns.items()}
            replays = {name: g.replay for name, g in graphs.items()}
            per_replay = _event_rounds(replays, repeats, {name: 1 for name in fns}, None, new_event, sync)
            runs = {name: [t / numbers[name] for t in ts] for name, ts in per_replay.items()}
    return {name: TimingResult(times=runs[name], number=numbers[name]) for name in fns}
