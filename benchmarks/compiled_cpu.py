"""Compiled readable code against ATen on the CPU, one thread: the CPU half of chapter 10's "textbook code at
ATen's speed".

For each layer at the shapes of the book's benchmarks this times, side by side in one run,

* ATen: ``torch.nn.functional.X`` (the baseline);
* before: ``torch.compile(normbook.functional.X, fullgraph=True)``, the readable code of chapters 2 and 5;
* after: ``torch.compile(normbook.book.ch10.X, fullgraph=True)``, the same layer written for the compiler (statistics
  recomputed in the backward pass of the row-local norms, closed-form backward passes, one Welford reduction for
  BatchNorm: see that module's docstring);

forward + backward in training mode (and, with ``--forward``, the forward pass alone), and prints each compiled
path's time over ATen's as a ratio with its 95 % interval over the rounds (``normbook.book.stats.compare_ratio``,
paired by round: ``normbook.timing.compare_times`` runs the paths in turns, round after round, so a change of
machine load hits them alike). A last row times a compiled function that does almost nothing (``x * w + b``) at
BatchNorm1d's shape against the same function run eagerly: the fixed cost of a compiled call, which decides the
ratio of a layer whose tensor is small.

The machine's load average is printed before and after: on a shared machine the intervals cover the noise between
rounds, not a load that changes the ratio itself. Compilation happens with one thread, as the timing does (Inductor
emits single-threaded loops then).

Usage:  python benchmarks/compiled_cpu.py [--rounds 21] [--min-time 0.05] [--layers BatchNorm2d,LayerNorm] [--forward]
                                          [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as TF

import normbook.functional as F
from normbook.book import ch10, stats
from normbook.timing import compare_times


@dataclass
class Case:
    name: str
    shape: tuple
    params: int                      # the length of weight and bias
    call: Callable                   # (module of functions, x, w, b) -> y


def _bn(f, x, w, b):
    return f.batch_norm(x, None, None, w, b, True, 0.1, 1e-5)


CASES = [
    Case("BatchNorm2d", (32, 64, 28, 28), 64, _bn),
    Case("BatchNorm1d", (256, 120), 120, _bn),
    Case("LayerNorm", (32, 128, 256), 256, lambda f, x, w, b: f.layer_norm(x, (256,), w, b, 1e-5)),
    Case("GroupNorm(8)", (32, 64, 28, 28), 64, lambda f, x, w, b: f.group_norm(x, 8, w, b, 1e-5)),
    Case("RMSNorm", (32, 128, 256), 256, lambda f, x, w, b: f.rms_norm(x, (256,), w, 1e-6)),
    Case("InstanceNorm2d", (32, 64, 28, 28), 64,
         lambda f, x, w, b: (f.group_norm(x, 64, w, b, 1e-5) if f is ch10 else
                             f.instance_norm(x, None, None, w, b, True, 0.1, 1e-5))),
]


def _paths(case: Case) -> dict:
    return {"ATen": lambda x, w, b: case.call(TF, x, w, b),
            "before": torch.compile(lambda x, w, b: case.call(F, x, w, b), fullgraph=True),
            "after": torch.compile(lambda x, w, b: case.call(ch10, x, w, b), fullgraph=True)}


def _closures(fn: Callable, x: torch.Tensor, c: int, backward: bool) -> Callable[[], object]:
    xr = x.clone().requires_grad_(True)
    w = (torch.rand(c) + 0.5).requires_grad_(True)
    b = torch.randn(c).requires_grad_(True)
    dy = torch.randn_like(x)

    def forward_backward():
        xr.grad = w.grad = b.grad = None
        fn(xr, w, b).backward(dy)

    def forward():
        return fn(xr, w, b)
    return forward_backward if backward else forward


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def measure(case: Case, rounds: int, min_time: float, backward: bool) -> dict:
    torch.manual_seed(0)
    x = torch.randn(case.shape)
    torch._dynamo.reset()
    fns = {k: _closures(fn, x, case.params, backward) for k, fn in _paths(case).items()}
    start = time.perf_counter()
    for fn in fns.values():                      # compile (forward and backward graphs) and warm up
        fn(), fn()
    compile_s = time.perf_counter() - start
    times = compare_times(fns, repeats=rounds, min_time=min_time)
    out = {"layer": case.name, "shape": list(case.shape), "aten_us": times["ATen"].median * 1e6,
           "compile_s": compile_s}
    for k in ("before", "after"):
        c = stats.compare_ratio(times[k].times, times["ATen"].times)
        out[k] = {"ratio": c.difference, "low": c.low, "high": c.high, "median_us": times[k].median * 1e6}
    return out


def overhead(rounds: int, min_time: float) -> dict:
    """A compiled call that does almost nothing, against the same function run eagerly (BatchNorm1d's shape)."""
    def affine(x, w, b):
        return x * w + b
    torch._dynamo.reset()
    fns = {"eager": _closures(affine, torch.randn(256, 120), 120, True),
           "compiled": _closures(torch.compile(affine, fullgraph=True), torch.randn(256, 120), 120, True)}
    for fn in fns.values():
        fn(), fn()
    times = compare_times(fns, repeats=rounds, min_time=min_time)
    return {name: t.median * 1e6 for name, t in times.items()}


def _fmt(r: dict) -> str:
    return f"{r['ratio']:.2f} ({r['low']:.2f}-{r['high']:.2f})"


def main(argv: Optional[list] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per measurement")
    parser.add_argument("--min-time", type=float, default=0.05, help="seconds per path per round")
    parser.add_argument("--layers", default=None, help="comma-separated layer names (default: all)")
    parser.add_argument("--forward", action="store_true", help="also time the forward pass alone")
    parser.add_argument("--json", default=None, help="write the results to this file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)        # before compiling: Inductor then emits single-threaded loops
    cases = [c for c in CASES if args.layers is None or c.name in args.layers.split(",")]
    results = {"torch": torch.__version__, "threads": 1, "load_before": _load(), "rows": []}
    print(f"CPU, 1 thread, torch {torch.__version__}; load average before: {results['load_before']}")
    print("Time over ATen's (95 % interval over the rounds); ATen's median in microseconds.\n")
    print("| layer | shape | pass | ATen µs | before: compiled normbook.functional | after: compiled "
          "normbook.book.ch10 |")
    print("|---|---|---|---:|---:|---:|")
    for case in cases:
        for backward in ([True, False] if args.forward else [True]):
            row = measure(case, args.rounds, args.min_time, backward)
            row["pass"] = "forward + backward" if backward else "forward"
            results["rows"].append(row)
            print(f"| {case.name} | {'x'.join(map(str, case.shape))} | {row['pass']} | {row['aten_us']:.0f} | "
                  f"{_fmt(row['before'])} | {_fmt(row['after'])} |", flush=True)
    results["overhead_us"] = overhead(args.rounds, args.min_time)
    results["load_after"] = _load()
    o = results["overhead_us"]
    print(f"\nA compiled x * w + b at 256x120, forward + backward: {o['compiled']:.0f} µs; eager {o['eager']:.0f} µs "
          "(the fixed cost of a compiled call).")
    print(f"Load average after: {results['load_after']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
