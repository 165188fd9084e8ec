r"""Chapter 10: readable normalizations written so that ``torch.compile`` fuses them, and the byte accounting.

``normbook.functional`` is written to be read and differentiated to any order; compiled, it runs at 0.9 to 3.5
times ATen's time on a CPU (forward and backward, one thread; ``benchmarks/compiled_cpu.py``). Reading Inductor's
generated C++ (``TORCH_LOGS=output_code``) shows where the extra time goes, and the functions here change the
code, not the compiler, to remove it:

* **The statistics a forward pass saves are written to memory, and so are kept out of its loop.** When autograd
  saves the per-row mean and variance of a LayerNorm for the backward pass, Inductor's C++ backend computes each
  as a buffer of its own, in a loop nest of its own over all rows: three passes over ``x`` where one would do.
  (Its Triton backend, on a GPU, fuses them: rows of up to 1,024 values become one persistent-reduction kernel.)
  The row-local norms here (LayerNorm, RMSNorm, GroupNorm) save only their input and **recompute their statistics
  in the backward pass**, where the recomputation reads a row the backward loop reads anyway; the forward pass then
  compiles to one loop over the rows that reads ``x`` once and writes ``y`` once.
* **The backward pass is the closed form** of chapter 2 (and of ``normbook.autograd``): two sums per row (per
  channel for BatchNorm), then ``dx`` elementwise, instead of the derivative of every operation of the forward.
* **GroupNorm's tensors all have one shape**, (N * G, C/G, S), one row per (example, group), the per-channel
  parameters expanded to it: Inductor then runs the statistics, the normalization and (backward) the sums of a
  group in one loop over the rows, as it does for LayerNorm.
* **BatchNorm's statistics come from one Welford reduction** (``torch.var_mean``, which Inductor lowers to a
  single-pass Welford loop when the reduction is long) instead of a mean followed by a second pass for the
  variance; the mean and rstd (one value per channel) are saved, since recomputing them would cost a pass.

What cannot be reformulated away on a CPU: ``d\gamma`` and ``d\beta`` of a row-local norm are sums over rows,
a reduction along the other axis, which Inductor runs as a loop nest of its own that reads ``x`` and ``dy`` a
second time (ATen's kernel accumulates them inside its row loop); and for tiny tensors the fixed cost of a
compiled call (guards, the autograd wrapper) exceeds the work.

Each function has ``normbook.functional``'s signature and results; each is an ``autograd.Function``
differentiable once (backward with ``create_graph=True`` raises); float16/bfloat16 inputs are computed in
float32. :func:`min_traffic` gives the bytes per element a layer must stream when its statistics fit on chip (a
row-local norm) and when they need a pass over the whole batch first (BatchNorm in training).
"""
from __future__ import annotations

import math
import re
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from .. import functional as _F
from ..autograd import _check_first_order

__all__ = ["layer_norm", "rms_norm", "group_norm", "batch_norm", "LayerNormFunction", "RMSNormFunction",
           "GroupNormFunction", "BatchNormFunction", "min_traffic", "TRAFFIC", "generated_code",
           "loop_skeleton"]


def _param(p: Optional[Tensor], dtype: torch.dtype) -> Optional[Tensor]:
    return None if p is None else p.to(dtype)


def _grad_of(p: Optional[Tensor], g: Optional[Tensor]) -> Optional[Tensor]:
    return None if p is None or g is None else g.reshape(p.shape).to(p.dtype)


class LayerNormFunction(torch.autograd.Function):
    """LayerNorm over the trailing ``len(normalized_shape)`` dims. Saves the input (not its statistics); the
    backward recomputes mean and rstd from it."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, bias, eps):
        x = input.to(_F._opmath(input.dtype))
        dims = tuple(range(-len(normalized_shape), 0))
        mean = x.mean(dims, keepdim=True)
        centered = x - mean
        rstd = torch.rsqrt((centered * centered).mean(dims, keepdim=True) + eps)
        y = centered * rstd
        if weight is not None:
            y = y * _param(weight, x.dtype)
        if bias is not None:
            y = y + _param(bias, x.dtype)
        ctx.save_for_backward(input, weight, bias)
        ctx.dims, ctx.eps = dims, eps
        return y.to(input.dtype)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.book.ch10.LayerNormFunction", "normbook.functional.layer_norm")
        input, weight, bias = ctx.saved_tensors
        dims = ctx.dims
        x = input.to(_F._opmath(input.dtype))
        mean = x.mean(dims, keepdim=True)               # recomputed: a row the loop reads anyway
        centered = x - mean
        rstd = torch.rsqrt((centered * centered).mean(dims, keepdim=True) + ctx.eps)
        x_hat = centered * rstd
        dy = dy.to(x.dtype)
        g = dy * _param(weight, x.dtype) if weight is not None else dy
        dx = rstd * (g - g.mean(dims, keepdim=True) - x_hat * (g * x_hat).mean(dims, keepdim=True))
        rows = tuple(range(x.dim() - len(dims)))
        dw = (dy * x_hat).sum(rows) if weight is not None and ctx.needs_input_grad[2] else None
        db = dy.sum(rows) if bias is not None and ctx.needs_input_grad[3] else None
        return dx.to(input.dtype), None, _grad_of(weight, dw), _grad_of(bias, db), None


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm over the trailing dims; saves the input, recomputes rstd in the backward."""

    @staticmethod
    def forward(ctx, input, normalized_shape, weight, eps):
        x = input.to(_F._opmath(input.dtype))
        dims = tuple(range(-len(normalized_shape), 0))
        y = x * torch.rsqrt((x * x).mean(dims, keepdim=True) + eps)
        if weight is not None:
            y = y * _param(weight, x.dtype)
        ctx.save_for_backward(input, weight)
        ctx.dims, ctx.eps = dims, eps
        return y.to(input.dtype)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.book.ch10.RMSNormFunction", "normbook.functional.rms_norm")
        input, weight = ctx.saved_tensors
        dims = ctx.dims
        x = input.to(_F._opmath(input.dtype))
        rstd = torch.rsqrt((x * x).mean(dims, keepdim=True) + ctx.eps)
        x_hat = x * rstd
        dy = dy.to(x.dtype)
        g = dy * _param(weight, x.dtype) if weight is not None else dy
        dx = rstd * (g - x_hat * (g * x_hat).mean(dims, keepdim=True))
        rows = tuple(range(x.dim() - len(dims)))
        dw = (dy * x_hat).sum(rows) if weight is not None and ctx.needs_input_grad[2] else None
        return dx.to(input.dtype), None, _grad_of(weight, dw), None


class GroupNormFunction(torch.autograd.Function):
    """GroupNorm on the input viewed as (N * G, C/G, S), S = prod(spatial dims): one row per (example, group),
    statistics over the row's C/G * S values. Every tensor of the computation has that shape, the per-channel
    parameters included (expanded to (N * G, C/G, 1)), so that Inductor runs everything of a group in one loop over
    the rows. Saves the input and recomputes the statistics in the backward pass, whose per-channel sums of dy and
    dy * x_hat (over S) give both the group sums of the closed form and dweight, dbias (summed over N)."""

    @staticmethod
    def forward(ctx, input, num_groups, weight, bias, eps):
        n, c = input.shape[:2]
        x = input.to(_F._opmath(input.dtype)).reshape(n * num_groups, c // num_groups, -1)
        var, mean = torch.var_mean(x, (1, 2), correction=0, keepdim=True)
        y = (x - mean) * torch.rsqrt(var + eps)
        if weight is not None:
            y = y * _per_row(weight, n, num_groups, x.dtype)
        if bias is not None:
            y = y + _per_row(bias, n, num_groups, x.dtype)
        ctx.save_for_backward(input, weight, bias)
        ctx.num_groups, ctx.eps = num_groups, eps
        return y.reshape(input.shape).to(input.dtype)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.book.ch10.GroupNormFunction", "normbook.functional.group_norm")
        input, weight, bias = ctx.saved_tensors
        n, c = input.shape[:2]
        groups = ctx.num_groups
        x = input.to(_F._opmath(input.dtype)).reshape(n * groups, c // groups, -1)
        var, mean = torch.var_mean(x, (1, 2), correction=0, keepdim=True)
        rstd = torch.rsqrt(var + ctx.eps)
        x_hat = (x - mean) * rstd
        dy = dy.to(x.dtype).reshape(x.shape)
        w = _per_row(weight, n, groups, x.dtype) if weight is not None else torch.ones_like(mean)
        sum_dy = dy.sum(2, keepdim=True)                       # per (example, channel)
        sum_dy_xhat = (dy * x_hat).sum(2, keepdim=True)
        m = x.shape[1] * x.shape[2]                            # values per group
        mean_g = (w * sum_dy).sum(1, keepdim=True) / m         # mean over the group of g = w * dy
        mean_g_xhat = (w * sum_dy_xhat).sum(1, keepdim=True) / m
        dx = rstd * (w * dy - mean_g - x_hat * mean_g_xhat)
        dw = sum_dy_xhat.reshape(n, c).sum(0) if weight is not None and ctx.needs_input_grad[2] else None
        db = sum_dy.reshape(n, c).sum(0) if bias is not None and ctx.needs_input_grad[3] else None
        return dx.reshape(input.shape).to(input.dtype), None, _grad_of(weight, dw), _grad_of(bias, db), None


def _per_row(p: Tensor, n: int, groups: int, dtype: torch.dtype) -> Tensor:
    """A per-channel vector (C,) as (N * G, C/G, 1): its values for the channels of each row's group."""
    c = p.numel()
    return p.to(dtype).reshape(1, groups, c // groups).expand(n, groups, c // groups).reshape(n * groups, -1, 1)


class BatchNormFunction(torch.autograd.Function):
    """BatchNorm in training mode: statistics per channel over N and the spatial dims from one Welford
    reduction (``torch.var_mean``); the running statistics updated with ``normbook.functional``'s update; saves
    the input, the mean and rstd (one value per channel)."""

    @staticmethod
    def forward(ctx, input, running_mean, running_var, weight, bias, momentum, eps):
        x = input.to(_F._opmath(input.dtype))
        dims = (0,) + tuple(range(2, x.dim()))
        shape = _F._channel_shape(x)
        var, mean = torch.var_mean(x, dims, correction=0, keepdim=True)
        rstd = torch.rsqrt(var + eps)
        _F._update_running_stats(running_mean, running_var, mean.flatten(), var.flatten(),
                                 x.numel() // max(x.shape[1], 1), momentum)
        y = (x - mean) * rstd
        if weight is not None:
            y = y * _param(weight, x.dtype).reshape(shape)
        if bias is not None:
            y = y + _param(bias, x.dtype).reshape(shape)
        ctx.save_for_backward(input, weight, bias, mean, rstd)
        return y.to(input.dtype)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.book.ch10.BatchNormFunction", "normbook.functional.batch_norm")
        input, weight, bias, mean, rstd = ctx.saved_tensors
        x = input.to(_F._opmath(input.dtype))
        dims = (0,) + tuple(range(2, x.dim()))
        shape = _F._channel_shape(x)
        m = x.numel() // max(x.shape[1], 1)                    # values per channel
        x_hat = (x - mean) * rstd
        dy = dy.to(x.dtype)
        dbeta = dy.sum(dims, keepdim=True)
        dgamma = (dy * x_hat).sum(dims, keepdim=True)
        gamma = _param(weight, x.dtype).reshape(shape) if weight is not None else 1.0
        dx = gamma * rstd / m * (m * dy - dbeta - x_hat * dgamma)
        dw = dgamma if weight is not None and ctx.needs_input_grad[3] else None
        db = dbeta if bias is not None and ctx.needs_input_grad[4] else None
        return dx.to(input.dtype), None, None, _grad_of(weight, dw), _grad_of(bias, db), None, None


def layer_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """``normbook.functional.layer_norm``, written for ``torch.compile`` (see the module docstring)."""
    _F._check_floating(input, "layer_norm")
    shape = _F._as_shape(normalized_shape)
    _F._check_normalized_shape(input, shape, weight=weight, bias=bias)
    _F._check_param_dtypes(input, "layer_norm", weight=weight, bias=bias)
    return LayerNormFunction.apply(input, shape, weight, bias, eps)


def rms_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
             eps: Optional[float] = None) -> Tensor:
    """``normbook.functional.rms_norm``, written for ``torch.compile``; eps None means the machine epsilon of
    the arithmetic dtype."""
    _F._check_floating(input, "rms_norm")
    shape = _F._as_shape(normalized_shape)
    _F._check_normalized_shape(input, shape, weight=weight)
    if eps is None:
        eps = torch.finfo(_F._opmath(input.dtype)).eps
    return RMSNormFunction.apply(input, shape, weight, eps)


def group_norm(input: Tensor, num_groups: int, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
               eps: float = 1e-5) -> Tensor:
    """``normbook.functional.group_norm``, written for ``torch.compile``."""
    _F._check_floating(input, "group_norm")
    if not _group_norm_valid(input, num_groups, weight, bias):
        return _F.group_norm(input, num_groups, weight, bias, eps)    # raises torch's error
    return GroupNormFunction.apply(input, num_groups, weight, bias, eps)


def _group_norm_valid(input: Tensor, num_groups: int, weight: Optional[Tensor], bias: Optional[Tensor]) -> bool:
    """Whether the arguments pass ``normbook.functional.group_norm``'s checks (else it is called to raise)."""
    if input.dim() < 2 or num_groups <= 0 or input.shape[1] % num_groups or input.shape[1] == 0:
        return False
    if any(p is not None and (p.dim() != 1 or p.numel() != input.shape[1]) for p in (weight, bias)):
        return False
    spatial = math.prod(input.shape[2:])
    return spatial > 0 and input.shape[0] * (input.shape[1] // num_groups) * spatial > 1


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``normbook.functional.batch_norm``, written for ``torch.compile`` in training mode (in evaluation mode,
    an elementwise map, it is ``normbook.functional.batch_norm`` itself)."""
    _F._check_momentum(momentum, "batch_norm")
    if not training:
        return _F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    _F._check_batch_norm_args(input, running_mean, running_var, weight, bias, training, eps)
    return BatchNormFunction.apply(input, running_mean, running_var, weight, bias, momentum, eps)


#: Bytes per element a layer must stream at least, in units of the element size, (forward, backward).
#: Row-local: the statistics of a row (a token, a group) are computed from values held on chip, so the forward
#: reads x and writes y once, the backward reads x and dy and writes dx once. Batch-wide (BatchNorm in training,
#: or any norm whose group does not fit on chip): y cannot be written until a reduction over the whole batch has
#: finished, so the forward reads x twice (statistics, then normalize) and the backward reads x and dy twice
#: (the two sums, then dx).
TRAFFIC = {"row-local": (2, 3), "batch-wide": (3, 5)}


def min_traffic(kind: str, element_size: int, backward: bool = True) -> int:
    """Bytes per element streamed at least by a layer of ``kind`` ("row-local" or "batch-wide"), forward
    alone or forward + backward."""
    if kind not in TRAFFIC:
        raise ValueError(f"kind must be one of {sorted(TRAFFIC)}, got {kind!r}")
    forward, backward_passes = TRAFFIC[kind]
    return (forward + (backward_passes if backward else 0)) * element_size


# ---------------------------------------------------------------------------------------------------------------
# Reading what Inductor generated
# ---------------------------------------------------------------------------------------------------------------
def generated_code(fn: Callable[[], object]) -> List[str]:
    """The Python modules Inductor generates while ``fn()`` runs (``torch._inductor.utils.run_and_get_code``):
    one per compiled graph, e.g. a forward and a backward module when fn calls a compiled function and then
    ``.backward()``. They hold the generated kernels (C++ on a CPU) as source strings and the code that calls
    them; ``TORCH_LOGS=output_code`` prints the same modules."""
    from torch._inductor.utils import run_and_get_code

    return run_and_get_code(fn)[1]


_KERNEL = re.compile(r"^(\w+) = async_compile\.cpp_pybinding\(\[.*?\], r'{3}(.*?)'{3}\)", re.S | re.M)
_PARAM = re.compile(r"(?:const )?\w+\*\s+(\w+)")
_SIZE = re.compile(r"static_cast<int64_t>\(([^()]*)\)")
_LOOP = re.compile(r"for\(int64_t (\w+)=(.*?); \w+<(.*?); \w+\+=(.*?)\)$")


def _simplify(expr: str) -> str:
    expr = _SIZE.sub(r"\1", expr)
    return re.sub(r"(\d+)L\b", r"\1", expr).replace(" ", "")


def loop_skeleton(module: str, names: Optional[Dict[str, str]] = None) -> str:
    """The loop structure of the C++ kernels in one of Inductor's generated modules: each loop (``for x0 in
    0..4096``, with its step when vectorized), each read of a buffer (``load x[x1+256*x0]``), each write
    (``store y[...]``) and each reduction's accumulation (``accumulate``), indented as nested, everything else
    left out. Pointers are named after the tensors the wrapper passes (``primals_1`` is the compiled function's
    first input, ``tangents_1`` the incoming gradient); ``names`` renames them (e.g. ``{"primals_1": "x"}``).
    Each loop nest at the top level is one pass over its range."""
    names = names or {}
    out = []
    for kernel, source in _KERNEL.findall(module):
        call = re.search(rf"^\s*{kernel}\((.*?)\)\s*$", module, re.M)
        args = [a.strip() for a in call.group(1).split(",")] if call else []
        head, _, body = source.partition("{")
        pointers = {p: names.get(a, a) for p, a in zip(_PARAM.findall(head), args)}
        for alias, target in re.findall(r"auto (\w+) = (\w+);", body):
            pointers[alias] = pointers.get(target, target)
        out.append(f"kernel {kernel}:")
        loops, seen = [], set()                  # the indentation of the loops enclosing the current line
        for line in body.splitlines():
            indent = len(line) - len(line.lstrip())
            text = line.strip()
            if not text or text in "{}":
                continue
            while loops and loops[-1] >= indent:
                loops.pop()
            pad = "    " * (len(loops) + 1)
            loop = _LOOP.match(text)
            if loop:
                var, start, stop, step = (_simplify(g) for g in loop.groups())
                stride = "" if step == "1" else f" step {step}"
                out.append(pad + f"for {var} in {start}..{stop}{stride}:")
                loops.append(indent)
                seen = set()
                continue
            if not loops:
                continue
            loads = (re.findall(r"loadu\((\w+) \+ (static_cast<int64_t>\(.*?\))(?:, |\))", text)
                     + re.findall(r"= (\w+ptr\w*)\[(static_cast<int64_t>\(.*?\))\];", text))
            for ptr, expr in loads:
                item = f"load {pointers.get(ptr, ptr)}[{_simplify(expr)}]"
                if (item, len(loops)) not in seen:
                    seen.add((item, len(loops)))
                    out.append(pad + item)
            stores = (re.findall(r"\.store\((\w+) \+ (static_cast<int64_t>\(.*?\))", text)
                      + re.findall(r"^(\w+ptr\w*)\[(static_cast<int64_t>\(.*?\))\] =", text))
            for ptr, expr in stores:
                out.append(pad + f"store {pointers.get(ptr, ptr)}[{_simplify(expr)}]")
            if (re.match(r"tmp_acc\w* = (welford_combine|tmp_acc\w* [+*])", text) and "reduce_all" not in text
                    and out[-1] != pad + "accumulate"):
                out.append(pad + "accumulate")
    return "\n".join(out)
