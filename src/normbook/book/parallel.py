"""Independent training runs in forked worker processes, one torch thread each.

A LeNet-sized training step is too small to keep two threads busy (they spend longer waiting for each other than
computing), but two such runs side by side keep two cores busy. :func:`parallel_map` runs ``fn(job)`` for every
job in ``jobs`` in ``processes`` forked workers. The jobs and the function are passed explicitly: the workers
inherit them through ``fork`` (so ``fn`` may be a closure over data loaded before the call, and nothing is
pickled but the results), and nothing is kept in module-level state between calls.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import traceback
from typing import Callable, List, Sequence, TypeVar

import torch

from ..config import cpu_threads

__all__ = ["parallel_map", "fork_available"]

J = TypeVar("J")
R = TypeVar("R")


def fork_available() -> bool:
    """Whether worker processes can be forked here (Linux, macOS; not Windows)."""
    return "fork" in mp.get_all_start_methods()


def _worker(fn, jobs, tasks, results) -> None:
    torch.set_num_threads(1)
    while True:
        i = tasks.get()
        if i is None:
            return
        try:
            # pickled here, by value: a tensor put on the queue as it is would travel as a shared-memory file
            # descriptor, which fails once this worker has exited
            results.put((i, True, pickle.dumps(fn(jobs[i]))))
        except BaseException:  # noqa: BLE001 - sent back and raised in the parent with its traceback
            results.put((i, False, traceback.format_exc()))


def parallel_map(fn: Callable[[J], R], jobs: Sequence[J], processes: int = 2) -> List[R]:
    """``[fn(job) for job in jobs]``, computed in ``processes`` forked workers with one torch thread each; the
    results come back in the order of ``jobs`` (put the longest jobs first so the workers finish together).

    ``processes=1``, a single job or a platform without ``fork`` run the jobs here, on one thread. A job that
    raises makes the call raise ``RuntimeError`` with the worker's traceback. The results must be picklable
    (numbers, dicts, tensors, a model's ``state_dict()``); they are copied back by value. A process that has run a compiled backward pass cannot fork safely: compile inside
    ``fn`` (in the worker), not before calling.
    """
    jobs = list(jobs)
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive integer, got {processes!r}")
    if processes == 1 or len(jobs) <= 1 or not fork_available():
        with cpu_threads(1):
            return [fn(job) for job in jobs]
    ctx = mp.get_context("fork")
    tasks, results = ctx.Queue(), ctx.Queue()
    n_workers = min(processes, len(jobs))
    for i in range(len(jobs)):
        tasks.put(i)
    for _ in range(n_workers):
        tasks.put(None)
    workers = [ctx.Process(target=_worker, args=(fn, jobs, tasks, results), daemon=True) for _ in range(n_workers)]
    for w in workers:
        w.start()
    out: dict = {}
    try:
        while len(out) < len(jobs):
            try:
                i, ok, value = results.get(timeout=1.0)
            except queue.Empty:
                if not any(w.is_alive() for w in workers) and results.empty():
                    missing = sorted(set(range(len(jobs))) - set(out))
                    raise RuntimeError(f"the worker processes ended without returning jobs {missing[:5]} "
                                       "(killed, out of memory, or crashed in native code)") from None
                continue
            if not ok:
                raise RuntimeError(f"job {i} failed in a worker process:\n{value}")
            out[i] = pickle.loads(value)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join()
    return [out[i] for i in range(len(jobs))]
