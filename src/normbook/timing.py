"""One stopwatch for the book and the benchmarks, built on ``torch.utils.benchmark.Timer``.

``Timer`` does what careful timing needs and we would otherwise write by hand: it runs warm-up calls, times blocks
of many calls so the clock's resolution and per-call overhead vanish, synchronizes CUDA (any accelerator) before
reading the clock, and pins torch's CPU thread count for the measurement (one thread by default: small CPU
operations timed with several threads on a busy machine measure mostly the threads waiting for each other).

- :func:`time_it` times one function: a :class:`TimingResult` with every block's seconds per call.
- :func:`compare_times` times several functions *interleaved*, round by round (A, B, C, A, B, C, ...), so that a
  machine that speeds up or slows down during the measurement affects all of them alike; ratios measured this
  way are what the chapters and ``benchmarks/`` report.
"""
from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch

__all__ = ["TimingResult", "time_it", "compare_times"]


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
