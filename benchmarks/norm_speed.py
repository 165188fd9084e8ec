"""How fast are the book's layers? normbook's three paths against torch.nn, measured side by side in one run.

For each layer, at shapes the book uses, this prints the time of

* torch.nn (ATen's fused kernels): the baseline, in microseconds;
* normbook, autograd path: ``normbook.nn`` as it is (plain tensor code, autograd backward);
* normbook, closed-form path: ``backward="closed_form"`` (BatchNorm and LayerNorm only);
* ``torch.compile(normbook.functional.X, fullgraph=True)``: the same plain tensor code, fused by Inductor
  (``fullgraph=True`` makes any graph break an error);
* ``normbook.kernels`` (GPU only): the Triton kernels of chapter 10 (LayerNorm, RMSNorm, and BatchNorm timed on
  a channels-last copy of the input, the layout its kernels are written for);

as ratios normbook time / torch time (lower is faster; 1.0 = as fast as ATen), for the forward pass alone
(training mode, under ``no_grad``) and for forward + backward. All paths of one layer are timed in turns, round
after round, so a change in machine load affects them alike: on a CPU with ``normbook.timing.compare_times`` (one
thread unless ``--threads``), on a GPU with ``normbook.timing.cuda_times`` (CUDA events, the L2 cache flushed
before every call; ``--cuda-graphs`` replays the calls from a CUDA graph instead, without the CPU's launch
overhead). It also prints the memory each path keeps for the backward pass: the bytes of the distinct tensors
saved in the autograd graph (``saved_tensors_hooks``).

Bandwidth: a normalization layer does a few flops per byte, so its speed limit is memory bandwidth. The second
table gives each path's achieved GB/s = streaming floor / time, where the floor is what any implementation must
stream (``normbook.book.ch10.min_traffic``): for a row-local norm (LayerNorm, RMSNorm, GroupNorm, InstanceNorm)
2 tensors forward (read x, write y) and 5 forward + backward (read x and dy again, write dx); for BatchNorm in
training, whose statistics need a pass over the whole batch before any output, 3 and 8. Next to it, the practical
peak measured in the same run: a device-to-device copy (``dst.copy_(src)``) of a tensor of the same size, which
moves 2 x numel x element size bytes; the fraction of it each path reaches is the GPU goal's measure (Triton
LayerNorm/RMSNorm at least ATen's speed and 80 % of the copy).

Usage:  python benchmarks/norm_speed.py [--device cpu|cuda|all] [--rounds 7] [--min-run-time 0.2] [--no-compile]
                                      [--threads N] [--cuda-graphs]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import torch

import normbook.functional as F
import normbook.nn as nbnn
from normbook.book.ch10 import min_traffic
from normbook.timing import compare_times, cuda_times


@dataclass
class Case:
    name: str
    shape: tuple
    torch_module: Callable[[], torch.nn.Module]
    normbook_module: Callable[..., torch.nn.Module]
    functional: Callable          # (x, module) -> y, normbook.functional with the module's tensors
    closed_form: bool = False
    kernel: Optional[Callable] = None   # (x, module) -> y with normbook.kernels (Triton, GPU only)
    channels_last: bool = False         # the kernel path is timed on a channels-last copy of x


CASES = [
    Case("BatchNorm2d", (32, 64, 28, 28), lambda: torch.nn.BatchNorm2d(64), lambda **kw: nbnn.BatchNorm2d(64, **kw),
         lambda x, m: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, True, 0.1, m.eps), True,
         lambda x, m: _k().batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, True, 0.1, m.eps),
         True),
    Case("BatchNorm1d", (256, 120), lambda: torch.nn.BatchNorm1d(120), lambda **kw: nbnn.BatchNorm1d(120, **kw),
         lambda x, m: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, True, 0.1, m.eps), True,
         lambda x, m: _k().batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, True, 0.1, m.eps)),
    Case("LayerNorm", (32, 128, 256), lambda: torch.nn.LayerNorm(256), lambda **kw: nbnn.LayerNorm(256, **kw),
         lambda x, m: F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps), True,
         lambda x, m: _k().layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)),
    Case("GroupNorm(8)", (32, 64, 28, 28), lambda: torch.nn.GroupNorm(8, 64), lambda: nbnn.GroupNorm(8, 64),
         lambda x, m: F.group_norm(x, m.num_groups, m.weight, m.bias, m.eps)),
    Case("InstanceNorm2d", (32, 64, 28, 28), lambda: torch.nn.InstanceNorm2d(64, affine=True),
         lambda: nbnn.InstanceNorm2d(64, affine=True),
         lambda x, m: F.instance_norm(x, None, None, m.weight, m.bias, True, 0.1, m.eps)),
    Case("RMSNorm", (32, 128, 256), lambda: torch.nn.RMSNorm(256), lambda: nbnn.RMSNorm(256),
         lambda x, m: F.rms_norm(x, m.normalized_shape, m.weight, m.eps), False,
         lambda x, m: _k().rms_norm(x, m.normalized_shape, m.weight, m.eps)),
    Case("LayerNorm 4096", (4096, 4096), lambda: torch.nn.LayerNorm(4096), lambda **kw: nbnn.LayerNorm(4096, **kw),
         lambda x, m: F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps), True,
         lambda x, m: _k().layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)),
    Case("RMSNorm 4096", (4096, 4096), lambda: torch.nn.RMSNorm(4096), lambda: nbnn.RMSNorm(4096),
         lambda x, m: F.rms_norm(x, m.normalized_shape, m.weight, m.eps), False,
         lambda x, m: _k().rms_norm(x, m.normalized_shape, m.weight, m.eps)),
]
GPU_ONLY = {"LayerNorm 4096", "RMSNorm 4096"}   # rows of 4,096: the large-row shape of the GPU goals


def _k():
    from normbook import kernels   # imports triton: only when the kernel path runs
    return kernels


def minimal_bytes(x: torch.Tensor, batch_wide: bool) -> tuple:
    """Bytes any implementation must stream: (forward, forward + backward), row-local or batch-wide."""
    kind = "batch-wide" if batch_wide else "row-local"
    return (min_traffic(kind, x.element_size(), backward=False) * x.numel(),
            min_traffic(kind, x.element_size()) * x.numel())


def interleaved_medians(fns: dict, device: str, min_run_time: float, rounds: int = 7,
                        cuda_graphs: bool = False) -> dict:
    """Median seconds per call of each function, timed in turns round after round (``normbook.timing``): on a
    GPU on its own clock with the L2 cache flushed (or replayed from a CUDA graph), on a CPU with
    torch.utils.benchmark's Timer, threads as set."""
    if device == "cuda":
        result = cuda_times(fns, repeats=rounds, min_time=min_run_time / rounds, cuda_graph=cuda_graphs)
    else:
        result = compare_times(fns, repeats=rounds, min_time=min_run_time / rounds, num_threads=None)
    return {key: r.median for key, r in result.items()}


def copy_seconds(x: torch.Tensor, device: str, min_run_time: float, rounds: int) -> float:
    """Median seconds of a device-to-device copy of a tensor of x's size (2 x nbytes moved)."""
    src, dst = x.clone(), torch.empty_like(x)
    return interleaved_medians({"copy": lambda: dst.copy_(src)}, device, min_run_time, rounds)["copy"]


def saved_bytes(fn: Callable[[], torch.Tensor]) -> Optional[int]:
    """Bytes of the distinct tensors the autograd graph of fn() keeps for backward."""
    seen = {}

    def pack(t):
        seen[(t.data_ptr(), t.untyped_storage().nbytes() if t.data_ptr() else 0, t.device)] = t.nbytes
        return t
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
    except Exception:  # noqa: BLE001  (a path that cannot run under the hooks)
        return None
    return sum(seen.values())


def bind(fn: Callable, module: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> fn(x, module) for this module. A lambda written in run_device's loop would look the name up when it is
    timed, after the loop has rebound it to another path's module (the compiled path then ran with the Triton
    path's module: bugbear's B023)."""
    return lambda t: fn(t, module)


def paths_for(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, params):
    """(forward-only closure, forward+backward closure, saved bytes) for forward(x)."""
    x_req = x.detach().clone().requires_grad_(True)
    grad = torch.randn_like(x)

    def fwd():
        with torch.no_grad():
            return forward(x)

    def fwd_bwd():
        for p in params:
            p.grad = None
        x_req.grad = None
        forward(x_req).backward(grad)

    fwd_bwd()  # warm-up (and compilation for the compiled path)
    fwd()
    return fwd, fwd_bwd, saved_bytes(lambda: forward(x_req))


def run_device(device: str, min_run_time: float, compile_: bool, rounds: int = 7,
               cuda_graphs: bool = False) -> list:
    rows = []
    for case in CASES:
        if case.name in GPU_ONLY and device != "cuda":
            continue
        torch.manual_seed(0)
        x = torch.randn(case.shape, device=device)
        modules = {"torch": case.torch_module(), "autograd": case.normbook_module()}
        if case.closed_form:
            modules["closed"] = case.normbook_module(backward="closed_form")
        paths, compile_s = {}, None
        for key, module in modules.items():
            module.to(device).train()
            paths[key] = paths_for(module, x, list(module.parameters()))
        if compile_:
            torch._dynamo.reset()
            compiled_module = case.normbook_module().to(device).train()
            compiled = torch.compile(case.functional, fullgraph=True)  # a graph break would raise here
            start = time.perf_counter()
            paths["compiled"] = paths_for(bind(compiled, compiled_module), x, list(compiled_module.parameters()))
            compile_s = time.perf_counter() - start
        if case.kernel is not None and device == "cuda":
            kernel_module = case.normbook_module().to(device).train()
            xk = x.to(memory_format=torch.channels_last) if case.channels_last else x
            paths["triton"] = paths_for(bind(case.kernel, kernel_module), xk, list(kernel_module.parameters()))
        fwd = interleaved_medians({k: v[0] for k, v in paths.items()}, device, min_run_time, rounds, cuda_graphs)
        fwd_bwd = interleaved_medians({k: v[1] for k, v in paths.items()}, device, min_run_time, rounds,
                                      cuda_graphs)
        result = {"layer": case.name, "shape": "x".join(map(str, case.shape)), "compile_s": compile_s,
                  "bytes": minimal_bytes(x, case.name.startswith("BatchNorm")),
                  "copy": copy_seconds(x, device, min_run_time, rounds)}
        for key, (_, _, saved) in paths.items():
            result[key] = (fwd[key], fwd_bwd[key], saved)
        rows.append(result)
        print(f"  measured {case.name} on {device}", file=sys.stderr, flush=True)
    return rows


def fmt_ratio(row, path, i):
    return f"{row[path][i] / row['torch'][i]:.2f}" if path in row else "-"


def fmt_mb(row, path):
    if path not in row or row[path][2] is None:
        return "-"
    return f"{row[path][2] / 2**20:.1f}"


def print_table(device: str, rows: list) -> None:
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n### {device} ({name}), torch {torch.__version__}, float32, training mode\n")
    print("Time: normbook / torch.nn (lower is faster). torch.nn columns in microseconds.\n")
    print("| layer | shape | torch fwd µs | torch f+b µs | autograd fwd | autograd f+b | closed-form fwd "
          "| closed-form f+b | compiled fwd | compiled f+b | triton fwd | triton f+b |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['layer']} | {r['shape']} | {r['torch'][0] * 1e6:.0f} | {r['torch'][1] * 1e6:.0f} | "
              f"{fmt_ratio(r, 'autograd', 0)} | {fmt_ratio(r, 'autograd', 1)} | {fmt_ratio(r, 'closed', 0)} | "
              f"{fmt_ratio(r, 'closed', 1)} | {fmt_ratio(r, 'compiled', 0)} | {fmt_ratio(r, 'compiled', 1)} | "
              f"{fmt_ratio(r, 'triton', 0)} | {fmt_ratio(r, 'triton', 1)} |")
    print("\nAchieved bandwidth, GB/s = streaming floor / time (row-local: 2 x the input's bytes forward, 5 x forward "
          "+ backward;\nBatchNorm: 3 x and 8 x), next to a device-to-device copy of the same size measured in the same "
          "run:\n")
    paths = ["torch", "autograd", "compiled", "triton"]
    print("| layer | MB | copy GB/s | " + " | ".join(f"{p} fwd | {p} f+b" for p in paths) + " |")
    print("|---|---:|---:|" + "---:|" * (2 * len(paths)))
    for r in rows:
        cells = []
        for p in paths:
            for i in (0, 1):
                cells.append(f"{r['bytes'][i] / r[p][i] / 1e9:.1f}" if p in r else "-")
        print(f"| {r['layer']} | {r['bytes'][0] / 2e6:.1f} | {r['bytes'][0] / r['copy'] / 1e9:.1f} | "
              + " | ".join(cells) + " |")
    print("\nSaved for backward (MiB of distinct tensors; the input itself is counted when saved):\n")
    print("| layer | input MiB | torch | autograd | closed-form | compiled |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        numel = 1
        for s in r["shape"].split("x"):
            numel *= int(s)
        print(f"| {r['layer']} | {numel * 4 / 2**20:.1f} | {fmt_mb(r, 'torch')} | {fmt_mb(r, 'autograd')} | "
              f"{fmt_mb(r, 'closed')} | {fmt_mb(r, 'compiled')} |")
    if any(r["compile_s"] for r in rows):
        print("\nCompilation (first calls, incl. warm-up): "
              + ", ".join(f"{r['layer']} {r['compile_s']:.0f} s" for r in rows if r["compile_s"]))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds of timing per measurement")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="GPU: replay the calls from a CUDA graph (no launch overhead) instead of flushing L2")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if args.device == "cuda":
            sys.exit("CUDA is not available")
        devices.remove("cuda")
    for device in devices:
        print_table(device, run_device(device, args.min_run_time, not args.no_compile, args.rounds,
                                       args.cuda_graphs))


if __name__ == "__main__":
    main()
