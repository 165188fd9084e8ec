"""Triton kernels for LayerNorm, RMSNorm (also fused with the residual add) and channels-last BatchNorm (training),
forward and backward.

Each layer is an ``autograd.Function`` wrapped in a function with ``normbook.functional``'s signature::

    from normbook import kernels
    y = kernels.layer_norm(x, (D,), weight, bias, eps)          # x on a CUDA device
    y = kernels.rms_norm(x, (D,), weight, eps)
    y, h = kernels.add_layer_norm(x, residual, (D,), weight, bias, eps)   # h = x + residual, y = LN(h)
    y, h = kernels.add_rms_norm(x, residual, (D,), weight, eps)
    y = kernels.batch_norm(x, running_mean, running_var, weight, bias, True, 0.1, eps)

The kernels run on CUDA tensors, or on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before
Triton is first imported: correct, slow, meant for tests and for reading; it truncates float32 values stored to
bfloat16 where compiled kernels round to nearest). Arithmetic is float32 whatever the storage dtype (float32,
float16 or bfloat16), as in ``normbook.functional``.

Why these designs (a normalization layer does a handful of flops per byte, so only the bytes matter):

* **One program per row, the whole row in registers** (LayerNorm, RMSNorm). A row of up to ``MAX_BLOCK_BYTES``
  (64 KiB) fits in one block of ``BLOCK_D = next_power_of_2(D)`` lanes, so x is read from memory **once** and the
  statistics are computed **two-pass in registers**: the mean first, then the mean square of ``x - mean``. Two
  passes over registers cost no memory traffic, and they are more accurate than the one-pass ``E[x^2] - E[x]^2``
  (which cancels when the mean is large against the spread). Triton's layer-norm tutorial loops over the row in
  blocks even when it fits, reading x three times.
* **Rows longer than one block** are streamed through a tile of ``LOOP_TILE_BYTES`` (the looped kernels). The
  statistics come from one read: every lane keeps Welford's running (count, mean, M2) of the elements it sees and
  the lanes are merged with Chan, Golub & LeVeque's formula (as Apex's LayerNorm does per thread); a second read
  normalizes. The backward computes the two row sums in one kernel and dx with the partial dw/db in a second,
  over a grid of (program, column tile).
* **The residual add fused with the norm** (``add_layer_norm``, ``add_rms_norm``): the forward reads x and the
  residual once and writes their sum h (the new residual stream) and y, normalizing h while it is in registers;
  the backward reads h, dy and the gradient of h that arrived along the stream, and writes one dx, the gradient of
  both summands. Unfused, the add and the norm stream 11 tensors forward and backward; fused, 8.
* **The weight/bias gradient in two stages.** ``dw = sum over rows of dy * x_hat`` is a column sum over all rows.
  Each backward program handles rows ``pid, pid + G, pid + 2G, ...`` and keeps its own partial sum of dw and db in
  registers; it writes one row of a small ``(G, D)`` buffer, and a second small kernel sums the G rows. So x and
  dy are read once, where ATen's CUDA LayerNorm backward (one kernel for dx, one for dw and db) reads them twice.
  The alternative, ``tl.atomic_add`` of every row's contribution into dw (or the tutorial's lock-protected
  shared buffer rows), makes programs contend for the same addresses and makes the result depend on the order
  in which the additions land (not bitwise reproducible); the two-stage sum is deterministic and its extra traffic
  is G * D floats, small next to the M * D of x.
* **BatchNorm on channels-last inputs is a column reduction over the whole batch.** Viewed as an (M, C) matrix
  with M = N * H * W rows, each channel is a column. A first kernel splits the rows into P chunks and each program
  reduces a tile of BLOCK_C channels over its chunk, tile by tile; tiles are merged with Chan, Golub & LeVeque's
  parallel update of (count, mean, M2) because a chunk is streamed and cannot be held in registers. A second small
  kernel merges the P partial results per channel in the same way; a third normalizes. The backward pass reduces
  ``sum(dy)`` and ``sum(dy * x_hat)`` per channel the same way and then applies the closed-form dx elementwise:
  3 passes over memory forward and 5 backward, the floor of a batch-wide norm.

The backward kernels compute the gradient from the mean and rstd saved by the forward kernels, outside autograd's
graph: each Function is differentiable once, and backward with ``create_graph=True`` raises a RuntimeError (a
graph built through them would give wrong second derivatives). ``normbook.functional`` has exact higher
derivatives.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

import triton
import triton.language as tl

from . import functional as _F
from .autograd import _check_first_order

__all__ = ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm", "batch_norm", "LayerNormFunction",
           "RMSNormFunction", "AddNormFunction", "BatchNormFunction", "interpreting", "supported",
           "row_launch_config", "looped_launch_config", "MAX_BLOCK_BYTES", "LOOP_TILE_BYTES"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1`` at import time)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def supported(x: Tensor) -> bool:
    """Whether the kernels can run on ``x``: a CUDA tensor, or a CPU tensor under the interpreter."""
    return x.dtype in _DTYPES and (x.is_cuda or (interpreting() and x.device.type == "cpu"))


def _check(x: Tensor, op: str) -> None:
    if x.dtype not in _DTYPES:
        raise TypeError(f"normbook.kernels.{op}: dtype {x.dtype} not supported (float32, float16, bfloat16)")
    if not supported(x):
        raise RuntimeError(f"normbook.kernels.{op} needs a CUDA tensor, or a CPU tensor with TRITON_INTERPRET=1 "
                           f"set before triton is imported (got a {x.device.type} tensor)")


#: The largest row (padded to a power of two) that one program holds in registers: 64 KiB, 16,384 float32 or
#: 32,768 bfloat16 values. Longer rows go through the looped kernels, in tiles of LOOP_TILE_BYTES.
MAX_BLOCK_BYTES = 65536
LOOP_TILE_BYTES = 16384


def _warps(block_bytes: int) -> int:
    return min(max(block_bytes // 1024, 1), 16)


def row_launch_config(d: int, element_size: int) -> tuple:
    """(BLOCK_D, num_warps) for a row kernel over rows of d elements of ``element_size`` bytes.

    The whole row is one block, padded to a power of two (``tl.arange`` needs one); a warp of 32 threads
    handles 32 x (16 bytes / element_size) elements per vectorised load, so the warps grow with the row,
    from 1 up to 16 (8 up to 8 KiB rows, as in Triton's tutorial, 16 beyond). A row of more than
    ``MAX_BLOCK_BYTES`` raises ValueError: it needs :func:`looped_launch_config`."""
    block = triton.next_power_of_2(max(d, 1))
    if block * element_size > MAX_BLOCK_BYTES:
        raise ValueError(f"rows of {d} elements ({d * element_size} bytes) do not fit in one block "
                         f"({MAX_BLOCK_BYTES // 1024} KiB); the looped kernels stream them in tiles")
    return block, _warps(block * element_size)


def looped_launch_config(d: int, element_size: int) -> tuple:
    """(BLOCK_D, num_warps) for the looped kernels: a tile of ``LOOP_TILE_BYTES`` (4,096 float32 values), the
    row streamed through it tile by tile."""
    block = min(triton.next_power_of_2(max(d, 1)), max(LOOP_TILE_BYTES // element_size, 1))
    return block, _warps(block * element_size)


def _num_programs(x: Tensor) -> int:
    """G, the number of backward programs that each keep a partial weight gradient: 2 per SM on a GPU (enough
    to fill it while each program still loops over many rows), 8 under the interpreter."""
    if x.is_cuda:
        return 2 * torch.cuda.get_device_properties(x.device).multi_processor_count
    return 8


# ---------------------------------------------------------------------------------------------------------------
# LayerNorm and RMSNorm: one program per row
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _layer_norm_fwd(X, Y, W, B, Mean, Rstd, stride, D, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)          # one program normalizes one row
    cols = tl.arange(0, BLOCK_D)                 # BLOCK_D >= D lanes: the whole row at once
    mask = cols < D                              # the padding lanes load 0 and store nothing
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / D                 # pass 1 (registers): the mean
    xc = tl.where(mask, x - mean, 0.0)           # padding must not add (0 - mean)^2
    var = tl.sum(xc * xc, axis=0) / D            # pass 2 (registers): biased variance
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    y = xc * rstd * w + b
    tl.store(Y + row * stride + cols, y, mask=mask)   # cast to y's dtype on store
    tl.store(Mean + row, mean)                   # 8 bytes per row kept for backward
    tl.store(Rstd + row, rstd)


@triton.jit
def _layer_norm_bwd(X, DY, DX, W, Mean, Rstd, DWp, DBp, DRES, stride, M, D,
                    BLOCK_D: tl.constexpr, CENTER: tl.constexpr, HAS_DRES: tl.constexpr):
    # dx = rstd * (w*dy - mean(w*dy) - x_hat * mean(w*dy * x_hat))   (LayerNorm, CENTER=True)
    # dx = rstd * (w*dy - x_hat * mean(w*dy * x_hat))                 (RMSNorm, CENTER=False, mean = 0)
    # HAS_DRES (fused residual add): x is the sum h = x + residual, and h also leaves the layer as the new
    # residual stream; its gradient DRES joins dx in the same pass (dx is then the gradient of both summands).
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)   # this program's partial weight gradient
    db = tl.zeros([BLOCK_D], dtype=tl.float32)
    for row in range(pid, M, tl.num_programs(0)):  # rows pid, pid + G, ...
        offs = tl.cast(row, tl.int64) * stride + cols
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(Rstd + row)
        if CENTER:
            x = x - tl.load(Mean + row)
        x_hat = tl.where(mask, x * rstd, 0.0)
        wdy = w * dy                             # 0 on the padding lanes
        c1 = tl.sum(x_hat * wdy, axis=0) / D
        if CENTER:
            c2 = tl.sum(wdy, axis=0) / D
            dx = (wdy - c2 - x_hat * c1) * rstd
        else:
            dx = (wdy - x_hat * c1) * rstd
        if HAS_DRES:
            dx += tl.load(DRES + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + offs, dx, mask=mask)
        dw += dy * x_hat
        db += dy
    tl.store(DWp + pid * D + cols, dw, mask=mask)   # one row of the (G, D) partial buffer
    if CENTER:
        tl.store(DBp + pid * D + cols, db, mask=mask)


@triton.jit
def _rms_norm_fwd(X, Y, W, Rstd, stride, D, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / D + eps)   # one pass: no mean to subtract
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride + cols, x * rstd * w, mask=mask)
    tl.store(Rstd + row, rstd)


@triton.jit
def _add_norm_fwd(X, R, H, Y, W, B, Mean, Rstd, stride, D, eps, BLOCK_D: tl.constexpr, CENTER: tl.constexpr):
    # the residual add fused with the norm: h = x + residual is stored (the new residual stream) and normalized
    # while it is still in registers, so h is never read back from memory
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    offs = row * stride + cols
    h = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32) + tl.load(R + offs, mask=mask, other=0.0)
    h = h.to(H.dtype.element_ty)                 # round as the unfused `x + residual` would ...
    tl.store(H + offs, h, mask=mask)
    h = h.to(tl.float32)                         # ... and normalize the rounded sum
    if CENTER:
        mean = tl.sum(h, axis=0) / D
        h = tl.where(mask, h - mean, 0.0)
        tl.store(Mean + row, mean)
    rstd = 1.0 / tl.sqrt(tl.sum(h * h, axis=0) / D + eps)
    y = h * rstd * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    if CENTER:
        y += tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offs, y, mask=mask)
    tl.store(Rstd + row, rstd)


@triton.jit
def _column_sum(P, OUT, R, D, BLOCK_R: tl.constexpr, BLOCK_D: tl.constexpr):
    # OUT[d] = sum over r of P[r, d]: the second, small stage of a two-stage column sum
    cols = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    cmask = cols < D
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for r0 in range(0, R, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R)
        m = (rows[:, None] < R) & cmask[None, :]
        tile = tl.load(P + rows[:, None].to(tl.int64) * D + cols[None, :], mask=m, other=0.0)
        acc += tl.sum(tile, axis=0)
    tl.store(OUT + cols, acc, mask=cmask)


# ---------------------------------------------------------------------------------------------------------------
# Rows longer than one block: the row is streamed through registers in tiles
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _norm_fwd_looped(X, R, H, Y, W, B, Mean, Rstd, stride, D, eps, BLOCK_D: tl.constexpr, CENTER: tl.constexpr,
                     HAS_RES: tl.constexpr):
    # Pass 1 reads the row once for its statistics: every lane j keeps Welford's running (count, mean, M2) of
    # the elements j, j + BLOCK_D, j + 2 BLOCK_D, ...; the lanes are merged at the end with Chan et al.'s
    # formula. Pass 2 reads the row again and writes y. (With HAS_RES, pass 1 also forms and stores the sum
    # h = x + residual, and pass 2 reads h.)
    row = tl.program_id(0).to(tl.int64)
    base = row * stride
    lane = tl.arange(0, BLOCK_D)
    n = tl.zeros([BLOCK_D], dtype=tl.float32)
    mean = tl.zeros([BLOCK_D], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, D, BLOCK_D):
        cols = start + lane
        mask = cols < D
        x = tl.load(X + base + cols, mask=mask, other=0.0).to(tl.float32)
        if HAS_RES:
            x = (x + tl.load(R + base + cols, mask=mask, other=0.0)).to(H.dtype.element_ty)
            tl.store(H + base + cols, x, mask=mask)
            x = x.to(tl.float32)
        if CENTER:                                   # Welford's update, lane by lane
            n += mask.to(tl.float32)
            delta = tl.where(mask, x - mean, 0.0)
            mean += delta / tl.maximum(n, 1.0)
            m2 += delta * tl.where(mask, x - mean, 0.0)
        else:                                        # RMSNorm: a plain sum of squares
            m2 += x * x
    if CENTER:
        row_mean = tl.sum(n * mean, axis=0) / D      # Chan et al.: merge the lanes' (count, mean, M2)
        dev = mean - row_mean
        var = (tl.sum(m2, axis=0) + tl.sum(n * dev * dev, axis=0)) / D
        tl.store(Mean + row, row_mean)
    else:
        row_mean = 0.0
        var = tl.sum(m2, axis=0) / D
    rstd = 1.0 / tl.sqrt(var + eps)
    tl.store(Rstd + row, rstd)
    for start in range(0, D, BLOCK_D):
        cols = start + lane
        mask = cols < D
        if HAS_RES:
            x = tl.load(H + base + cols, mask=mask, other=0.0).to(tl.float32)
        else:
            x = tl.load(X + base + cols, mask=mask, other=0.0).to(tl.float32)
        y = (x - row_mean) * rstd * tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
        if CENTER:
            y += tl.load(B + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(Y + base + cols, y, mask=mask)


@triton.jit
def _norm_bwd_row_sums_looped(X, DY, W, Mean, Rstd, C1, C2, stride, D, BLOCK_D: tl.constexpr,
                              CENTER: tl.constexpr):
    # the two row sums of the backward formula, mean(w*dy * x_hat) and mean(w*dy), tile by tile
    row = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK_D)
    rstd = tl.load(Rstd + row)
    if CENTER:
        mean = tl.load(Mean + row)
    else:
        mean = 0.0
    acc1 = tl.zeros([BLOCK_D], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_D], dtype=tl.float32)
    for start in range(0, D, BLOCK_D):
        cols = start + lane
        mask = cols < D
        x = tl.load(X + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row * stride + cols, mask=mask, other=0.0).to(tl.float32)
        wdy = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32) * dy
        x_hat = tl.where(mask, (x - mean) * rstd, 0.0)
        acc1 += wdy * x_hat
        acc2 += wdy
    tl.store(C1 + row, tl.sum(acc1, axis=0) / D)
    tl.store(C2 + row, tl.sum(acc2, axis=0) / D)


@triton.jit
def _norm_bwd_dx_looped(X, DY, DX, W, Mean, Rstd, C1, C2, DWp, DBp, DRES, stride, M, D, BLOCK_D: tl.constexpr,
                        CENTER: tl.constexpr, HAS_DRES: tl.constexpr):
    # program (p, t): column tile t of rows p, p + G, ...: dx from the row sums, and this program's partial
    # dw and db of the tile in registers (one row of the (G, D) buffers, summed by _column_sum)
    pid = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = cols < D
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)
    db = tl.zeros([BLOCK_D], dtype=tl.float32)
    for row in range(pid, M, tl.num_programs(0)):
        offs = tl.cast(row, tl.int64) * stride + cols
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        if CENTER:
            x = x - tl.load(Mean + row)
        x_hat = tl.where(mask, x * tl.load(Rstd + row), 0.0)
        dx = w * dy - x_hat * tl.load(C1 + row)
        if CENTER:
            dx -= tl.load(C2 + row)
        dx = dx * tl.load(Rstd + row)
        if HAS_DRES:
            dx += tl.load(DRES + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + offs, dx, mask=mask)
        dw += dy * x_hat
        db += dy
    tl.store(DWp + pid * D + cols, dw, mask=mask)
    if CENTER:
        tl.store(DBp + pid * D + cols, db, mask=mask)


def _sum_partials(partials: Tensor, dtype: torch.dtype) -> Tensor:
    r, d = partials.shape
    out = torch.empty(d, device=partials.device, dtype=dtype)
    block_d = min(triton.next_power_of_2(d), 256)
    _column_sum[(triton.cdiv(d, block_d),)](partials, out, r, d, BLOCK_R=32, BLOCK_D=block_d)
    return out


def _vector(p: Optional[Tensor], n: int, x: Tensor, fill: float) -> Tensor:
    """A weight or bias as the contiguous vector of n elements the kernels index (``W + cols``): a (C, 1) or
    strided parameter is copied; None becomes a vector of ``fill`` in x's dtype."""
    if p is None:
        return torch.full((n,), fill, device=x.device, dtype=x.dtype)
    return p.reshape(n).contiguous()


def _shape_dtype(p: Optional[Tensor]):
    return None if p is None else (p.shape, p.dtype)


def _rows(x: Tensor, normalized_shape) -> tuple:
    """x as a contiguous (M, D) matrix, D = prod(normalized_shape); checks the shape as torch does."""
    shape = _F._as_shape(normalized_shape)
    _F._check_normalized_shape(x, shape)
    d = math.prod(shape)
    return x.reshape(-1, d).contiguous(), d, shape


def _fits_one_block(d: int, element_size: int) -> bool:
    return triton.next_power_of_2(max(d, 1)) * element_size <= MAX_BLOCK_BYTES


def _row_forward(x2: Tensor, r2: Optional[Tensor], w: Tensor, b: Tensor, eps: float, center: bool) -> tuple:
    """The forward kernels of the row norms on an (M, D) matrix x2 (plus r2, the residual, when fused):
    (y, h, mean, rstd), h being x2 + r2 (x2 itself without a residual). One block per row when the row fits
    (MAX_BLOCK_BYTES), else the looped kernel."""
    m, d = x2.shape
    y = torch.empty_like(x2)
    h = torch.empty_like(x2) if r2 is not None else x2
    mean = torch.empty(m, device=x2.device, dtype=torch.float32)
    rstd = torch.empty(m, device=x2.device, dtype=torch.float32)
    if m == 0:
        return y, h, mean, rstd
    if _fits_one_block(d, x2.element_size()):
        block, warps = row_launch_config(d, x2.element_size())
        if r2 is not None:
            _add_norm_fwd[(m,)](x2, r2, h, y, w, b, mean, rstd, d, d, eps, BLOCK_D=block, CENTER=center,
                                num_warps=warps)
        elif center:
            _layer_norm_fwd[(m,)](x2, y, w, b, mean, rstd, d, d, eps, BLOCK_D=block, num_warps=warps)
        else:
            _rms_norm_fwd[(m,)](x2, y, w, rstd, d, d, eps, BLOCK_D=block, num_warps=warps)
    else:
        block, warps = looped_launch_config(d, x2.element_size())
        _norm_fwd_looped[(m,)](x2, x2 if r2 is None else r2, h, y, w, b, mean, rstd, d, d, eps, BLOCK_D=block,
                               CENTER=center, HAS_RES=r2 is not None, num_warps=warps)
    return y, h, mean, rstd


def _row_backward(h2: Tensor, dy2: Tensor, dres2: Optional[Tensor], w: Tensor, mean: Tensor, rstd: Tensor,
                  center: bool) -> tuple:
    """dx (plus dres2, the gradient of the residual output, when given), and the (G, D) partial sums of dw and
    db (db only when ``center``)."""
    m, d = h2.shape
    dx = torch.empty_like(h2)
    g = _num_programs(h2)
    dw_part = torch.zeros(g, d, device=h2.device, dtype=torch.float32)
    db_part = torch.zeros(g, d, device=h2.device, dtype=torch.float32) if center else dw_part
    dres = dres2 if dres2 is not None else dx        # an unused pointer when HAS_DRES is False
    if m == 0:
        return dx, dw_part, db_part
    if _fits_one_block(d, h2.element_size()):
        block, warps = row_launch_config(d, h2.element_size())
        _layer_norm_bwd[(g,)](h2, dy2, dx, w, mean, rstd, dw_part, db_part, dres, d, m, d, BLOCK_D=block,
                              CENTER=center, HAS_DRES=dres2 is not None, num_warps=warps)
    else:
        block, warps = looped_launch_config(d, h2.element_size())
        c1 = torch.empty(m, device=h2.device, dtype=torch.float32)
        c2 = torch.empty(m, device=h2.device, dtype=torch.float32)
        _norm_bwd_row_sums_looped[(m,)](h2, dy2, w, mean, rstd, c1, c2, d, d, BLOCK_D=block, CENTER=center,
                                        num_warps=warps)
        _norm_bwd_dx_looped[(g, triton.cdiv(d, block))](h2, dy2, dx, w, mean, rstd, c1, c2, dw_part, db_part,
                                                        dres, d, m, d, BLOCK_D=block, CENTER=center,
                                                        HAS_DRES=dres2 is not None, num_warps=warps)
    return dx, dw_part, db_part


class LayerNormFunction(torch.autograd.Function):
    """LayerNorm over the last D elements of each row; saves x, mean and rstd (not x_hat) for backward.
    Differentiable once (backward with ``create_graph=True`` raises)."""

    @staticmethod
    def forward(ctx, x, normalized_shape, weight, bias, eps):
        x2, d, shape = _rows(x, normalized_shape)
        w = _vector(weight, d, x, 1.0)
        b = _vector(bias, d, x, 0.0)
        y, _, mean, rstd = _row_forward(x2, None, w, b, eps, center=True)
        ctx.save_for_backward(x2, w, mean, rstd)
        ctx.meta = (d, shape, weight is not None, bias.dtype if bias is not None else None, x.shape)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.kernels.LayerNormFunction", "normbook.functional.layer_norm")
        x2, w, mean, rstd = ctx.saved_tensors
        d, shape, has_w, bias_dtype, xshape = ctx.meta
        dx, dw_part, db_part = _row_backward(x2, dy.reshape(-1, d).contiguous(), None, w, mean, rstd, True)
        dw = _sum_partials(dw_part, w.dtype).reshape(shape) if has_w else None
        db = _sum_partials(db_part, bias_dtype).reshape(shape) if bias_dtype is not None else None
        return dx.reshape(xshape), None, dw, db, None


class RMSNormFunction(torch.autograd.Function):
    """RMSNorm over the last D elements of each row; saves x and rstd for backward. Differentiable once (backward
    with ``create_graph=True`` raises)."""

    @staticmethod
    def forward(ctx, x, normalized_shape, weight, eps):
        x2, d, shape = _rows(x, normalized_shape)
        w = _vector(weight, d, x, 1.0)
        y, _, mean, rstd = _row_forward(x2, None, w, w, eps, center=False)
        ctx.save_for_backward(x2, w, rstd)
        ctx.meta = (d, shape, weight is not None, x.shape)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.kernels.RMSNormFunction", "normbook.functional.rms_norm")
        x2, w, rstd = ctx.saved_tensors
        d, shape, has_w, xshape = ctx.meta
        dx, dw_part, _ = _row_backward(x2, dy.reshape(-1, d).contiguous(), None, w, rstd, rstd, False)
        dw = _sum_partials(dw_part, w.dtype).reshape(shape) if has_w else None
        return dx.reshape(xshape), None, dw, None


class AddNormFunction(torch.autograd.Function):
    """The residual add fused with LayerNorm (``center=True``) or RMSNorm (``center=False``): returns
    ``(norm(x + residual), x + residual)``. Saves the sum h, mean and rstd. Its backward adds the gradient of the
    second output (the residual stream) into dx in the same pass; dx is the gradient of both summands.
    Differentiable once (backward with ``create_graph=True`` raises)."""

    @staticmethod
    def forward(ctx, x, residual, normalized_shape, weight, bias, eps, center):
        x2, d, shape = _rows(x, normalized_shape)
        r2 = residual.reshape(-1, d).contiguous()
        w = _vector(weight, d, x, 1.0)
        b = _vector(bias, d, x, 0.0) if center else w
        y, h, mean, rstd = _row_forward(x2, r2, w, b, eps, center)
        ctx.save_for_backward(h, w, mean, rstd)
        ctx.meta = (d, shape, weight is not None, bias.dtype if bias is not None else None, x.shape, center)
        ctx.set_materialize_grads(False)             # an unused output brings None, not a tensor of zeros
        return y.reshape(x.shape), h.reshape(x.shape)

    @staticmethod
    def backward(ctx, dy, dres):
        _check_first_order("normbook.kernels.AddNormFunction",
                           "normbook.functional.layer_norm or rms_norm of input + residual")
        h2, w, mean, rstd = ctx.saved_tensors
        d, shape, has_w, bias_dtype, xshape, center = ctx.meta
        dres2 = dres.reshape(-1, d).contiguous() if dres is not None else None
        if dy is None:                                # only the residual stream was used
            dx = dres2 if dres2 is not None else torch.zeros_like(h2)
            zeros = torch.zeros(shape, device=h2.device, dtype=w.dtype)
            return (dx.reshape(xshape), dx.reshape(xshape), None, zeros if has_w else None,
                    zeros.to(bias_dtype) if bias_dtype is not None and center else None, None, None)
        dx, dw_part, db_part = _row_backward(h2, dy.reshape(-1, d).contiguous(), dres2, w, mean, rstd, center)
        dw = _sum_partials(dw_part, w.dtype).reshape(shape) if has_w else None
        db = (_sum_partials(db_part, bias_dtype).reshape(shape) if center and bias_dtype is not None else None)
        dx = dx.reshape(xshape)
        return dx, dx, None, dw, db, None, None


def layer_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None, eps: float = 1e-5) -> Tensor:
    """``normbook.functional.layer_norm`` as Triton kernels (forward and backward; differentiable once). Rows
    longer than one block (``MAX_BLOCK_BYTES``) go through the looped kernels."""
    _check(input, "layer_norm")
    shape = _F._as_shape(normalized_shape)
    _F._check_normalized_shape(input, shape, weight=weight, bias=bias)
    _F._check_param_dtypes(input, "layer_norm", weight=weight, bias=bias)
    return LayerNormFunction.apply(input, normalized_shape, weight, bias, eps)


def rms_norm(input: Tensor, normalized_shape: Union[int, Sequence[int]], weight: Optional[Tensor] = None,
             eps: Optional[float] = None) -> Tensor:
    """``normbook.functional.rms_norm`` as Triton kernels (differentiable once); eps None means float32's machine
    epsilon. Rows longer than one block go through the looped kernels."""
    _check(input, "rms_norm")
    _F._check_normalized_shape(input, _F._as_shape(normalized_shape), weight=weight)
    if eps is None:
        eps = torch.finfo(torch.float32).eps
    return RMSNormFunction.apply(input, normalized_shape, weight, eps)


def _check_residual(input: Tensor, residual: Tensor, op: str) -> None:
    if not isinstance(residual, Tensor) or residual.shape != input.shape or residual.dtype != input.dtype:
        got = (f"{tuple(residual.shape)} {residual.dtype}" if isinstance(residual, Tensor)
               else type(residual).__name__)
        raise RuntimeError(f"normbook.kernels.{op}: residual must have the input's shape and dtype "
                           f"({tuple(input.shape)} {input.dtype}), got {got}")
    if residual.device != input.device:
        raise RuntimeError(f"normbook.kernels.{op}: residual is on {residual.device}, input on {input.device}")


def add_layer_norm(input: Tensor, residual: Tensor, normalized_shape: Union[int, Sequence[int]],
                   weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
                   eps: float = 1e-5) -> tuple:
    """The residual add fused with LayerNorm: returns ``(layer_norm(input + residual, ...), input + residual)``,
    the normalized sum and the sum itself (the new residual stream), as one pass over memory forward and one
    backward. Same arguments and checks as :func:`layer_norm`, plus ``residual`` of the input's shape and dtype.
    The unfused equivalent::

        h = input + residual
        return normbook.functional.layer_norm(h, normalized_shape, weight, bias, eps), h
    """
    _check(input, "add_layer_norm")
    _check_residual(input, residual, "add_layer_norm")
    shape = _F._as_shape(normalized_shape)
    _F._check_normalized_shape(input, shape, weight=weight, bias=bias)
    _F._check_param_dtypes(input, "layer_norm", weight=weight, bias=bias)
    return AddNormFunction.apply(input, residual, normalized_shape, weight, bias, eps, True)


def add_rms_norm(input: Tensor, residual: Tensor, normalized_shape: Union[int, Sequence[int]],
                 weight: Optional[Tensor] = None, eps: Optional[float] = None) -> tuple:
    """The residual add fused with RMSNorm: ``(rms_norm(input + residual, ...), input + residual)``; see
    :func:`add_layer_norm`. eps None means float32's machine epsilon."""
    _check(input, "add_rms_norm")
    _check_residual(input, residual, "add_rms_norm")
    _F._check_normalized_shape(input, _F._as_shape(normalized_shape), weight=weight)
    if eps is None:
        eps = torch.finfo(torch.float32).eps
    return AddNormFunction.apply(input, residual, normalized_shape, weight, None, eps, False)


# ---------------------------------------------------------------------------------------------------------------
# BatchNorm, channels-last: x viewed as (M, C), M = N * prod(S); statistics are column reductions
# ---------------------------------------------------------------------------------------------------------------
@triton.jit
def _bn_partial_stats(X, PMean, PM2, M, C, rows_per_chunk, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0)                          # chunk of rows
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    start = p * rows_per_chunk
    end = tl.minimum(start + rows_per_chunk, M)
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)    # sum of squared deviations so far
    for r0 in range(start, end, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        mask = (rows[:, None] < end) & cmask[None, :]
        x = tl.load(X + rows[:, None].to(tl.int64) * C + cols[None, :], mask=mask, other=0.0)
        x = x.to(tl.float32)
        n_prev = (r0 - start).to(tl.float32)
        n_tile = tl.minimum(end - r0, BLOCK_M).to(tl.float32)
        t_mean = tl.sum(x, axis=0) / n_tile       # the tile's own two-pass moments
        dev = tl.where(mask, x - t_mean[None, :], 0.0)
        t_m2 = tl.sum(dev * dev, axis=0)
        n_new = n_prev + n_tile                   # Chan et al.: merge (n_prev, mean, m2) with the tile
        delta = t_mean - mean
        mean += delta * (n_tile / n_new)
        m2 += t_m2 + delta * delta * (n_prev * n_tile / n_new)
    tl.store(PMean + p * C + cols, mean, mask=cmask)
    tl.store(PM2 + p * C + cols, m2, mask=cmask)


@triton.jit
def _bn_merge_stats(PMean, PM2, Mean, Var, P, M, C, rows_per_chunk, BLOCK_C: tl.constexpr):
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    mean = tl.zeros([BLOCK_C], dtype=tl.float32)
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for p in range(0, P):                         # merge the P chunks' (count, mean, m2), in order
        start = tl.cast(p, tl.int64) * rows_per_chunk
        n_prev = start.to(tl.float32)
        n_p = (tl.minimum(start + rows_per_chunk, M) - start).to(tl.float32)
        pm = tl.load(PMean + p * C + cols, mask=cmask, other=0.0)
        pm2 = tl.load(PM2 + p * C + cols, mask=cmask, other=0.0)
        n_new = n_prev + n_p
        delta = pm - mean
        mean += delta * (n_p / n_new)
        m2 += pm2 + delta * delta * (n_prev * n_p / n_new)
    tl.store(Mean + cols, mean, mask=cmask)
    tl.store(Var + cols, m2 / M, mask=cmask)      # biased variance


@triton.jit
def _bn_normalize(X, Y, Mean, Rstd, W, B, M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    mask = (rows[:, None] < M) & cmask[None, :]
    scale = tl.load(Rstd + cols, mask=cmask, other=0.0) * tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    shift = tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32) - tl.load(Mean + cols, mask=cmask) * scale
    offs = rows[:, None].to(tl.int64) * C + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + offs, x * scale[None, :] + shift[None, :], mask=mask)   # one FMA per element


@triton.jit
def _bn_partial_grad_sums(X, DY, Mean, Rstd, PSumDy, PSumDyXhat, M, C, rows_per_chunk,
                          BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    p = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    mean = tl.load(Mean + cols, mask=cmask, other=0.0)
    rstd = tl.load(Rstd + cols, mask=cmask, other=0.0)
    start = p * rows_per_chunk
    end = tl.minimum(start + rows_per_chunk, M)
    s_dy = tl.zeros([BLOCK_C], dtype=tl.float32)
    s_dyx = tl.zeros([BLOCK_C], dtype=tl.float32)
    for r0 in range(start, end, BLOCK_M):
        rows = r0 + tl.arange(0, BLOCK_M)
        mask = (rows[:, None] < end) & cmask[None, :]
        offs = rows[:, None].to(tl.int64) * C + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
        x_hat = (x - mean[None, :]) * rstd[None, :]
        s_dy += tl.sum(dy, axis=0)
        s_dyx += tl.sum(dy * x_hat, axis=0)      # dy is 0 where masked
    tl.store(PSumDy + p * C + cols, s_dy, mask=cmask)
    tl.store(PSumDyXhat + p * C + cols, s_dyx, mask=cmask)


@triton.jit
def _bn_backward_dx(X, DY, DX, Mean, Rstd, W, SumDy, SumDyXhat, M, C,
                    BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
    # dx = w * rstd * (dy - sum(dy)/M - x_hat * sum(dy * x_hat)/M)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    cmask = cols < C
    mask = (rows[:, None] < M) & cmask[None, :]
    mean = tl.load(Mean + cols, mask=cmask, other=0.0)
    rstd = tl.load(Rstd + cols, mask=cmask, other=0.0)
    w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
    c_dy = tl.load(SumDy + cols, mask=cmask, other=0.0) / M
    c_dyx = tl.load(SumDyXhat + cols, mask=cmask, other=0.0) / M
    offs = rows[:, None].to(tl.int64) * C + cols[None, :]
    x = tl.load(X + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    x_hat = (x - mean[None, :]) * rstd[None, :]
    dx = (w * rstd)[None, :] * (dy - c_dy[None, :] - x_hat * c_dyx[None, :])
    tl.store(DX + offs, dx, mask=mask)


def _bn_config(m: int, c: int, x: Tensor) -> tuple:
    """(BLOCK_M, BLOCK_C, P, rows_per_chunk, num_warps): tiles of about 4,096 elements, at most 64 channels wide
    (a 256-byte float32 line per row), and P chunks of rows -- enough programs to fill a GPU (4 per SM over all
    column blocks), each streaming a whole number of tiles."""
    block_c = min(triton.next_power_of_2(max(c, 1)), 64)
    block_m = max(4096 // block_c, 16)
    if not x.is_cuda:
        block_m = min(block_m, 32)               # the interpreter: small tiles, small test shapes
    col_blocks = triton.cdiv(c, block_c)
    target = (4 * torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 4)
    p = max(1, min(triton.cdiv(m, block_m), triton.cdiv(target, col_blocks)))
    rows_per_chunk = triton.cdiv(triton.cdiv(m, p), block_m) * block_m
    p = triton.cdiv(m, rows_per_chunk)
    return block_m, block_c, p, rows_per_chunk, 8 if x.is_cuda else 4


def _channels_last_2d(x: Tensor) -> Tensor:
    """(N, C, *S) -> (N * prod(S), C); a view when x is channels-last (e.g. torch.channels_last for 4-D)."""
    return x.movedim(1, -1).reshape(-1, x.shape[1]).contiguous()


def _from_2d(y2: Tensor, x: Tensor) -> Tensor:
    shape_last = (x.shape[0],) + tuple(x.shape[2:]) + (x.shape[1],)
    return y2.reshape(shape_last).movedim(-1, 1)   # channels-last strides, the input's shape


class BatchNormFunction(torch.autograd.Function):
    """BatchNorm in training mode with batch statistics; updates the running buffers in place (with
    ``normbook.functional``'s update). Differentiable once (backward with ``create_graph=True`` raises)."""

    @staticmethod
    def forward(ctx, x, running_mean, running_var, weight, bias, momentum, eps):
        c = x.shape[1]
        x2 = _channels_last_2d(x)
        m = x2.shape[0]
        w = _vector(weight, c, x, 1.0)
        b = _vector(bias, c, x, 0.0)
        block_m, block_c, p, rpc, warps = _bn_config(m, c, x2)
        col_blocks = triton.cdiv(c, block_c)
        pmean = torch.empty(p, c, device=x.device, dtype=torch.float32)
        pm2 = torch.empty(p, c, device=x.device, dtype=torch.float32)
        _bn_partial_stats[(p, col_blocks)](x2, pmean, pm2, m, c, rpc, BLOCK_M=block_m, BLOCK_C=block_c,
                                           num_warps=warps)
        mean = torch.empty(c, device=x.device, dtype=torch.float32)
        var = torch.empty(c, device=x.device, dtype=torch.float32)
        _bn_merge_stats[(col_blocks,)](pmean, pm2, mean, var, p, m, c, rpc, BLOCK_C=block_c)
        rstd = torch.rsqrt(var + eps)
        y2 = torch.empty_like(x2)
        _bn_normalize[(triton.cdiv(m, block_m), col_blocks)](x2, y2, mean, rstd, w, b, m, c, BLOCK_M=block_m,
                                                             BLOCK_C=block_c, num_warps=warps)
        _F._update_running_stats(running_mean, running_var, mean, var, m, momentum)
        ctx.save_for_backward(x2, w, mean, rstd)
        ctx.meta = (block_m, block_c, p, rpc, warps, _shape_dtype(weight), _shape_dtype(bias))
        return _from_2d(y2, x)

    @staticmethod
    def backward(ctx, dy):
        _check_first_order("normbook.kernels.BatchNormFunction", "normbook.functional.batch_norm")
        x2, w, mean, rstd = ctx.saved_tensors
        block_m, block_c, p, rpc, warps, w_meta, b_meta = ctx.meta
        m, c = x2.shape
        dy2 = _channels_last_2d(dy)
        col_blocks = triton.cdiv(c, block_c)
        p_dy = torch.empty(p, c, device=x2.device, dtype=torch.float32)
        p_dyx = torch.empty(p, c, device=x2.device, dtype=torch.float32)
        _bn_partial_grad_sums[(p, col_blocks)](x2, dy2, mean, rstd, p_dy, p_dyx, m, c, rpc, BLOCK_M=block_m,
                                               BLOCK_C=block_c, num_warps=warps)
        sum_dy = _sum_partials(p_dy, torch.float32)
        sum_dyx = _sum_partials(p_dyx, torch.float32)
        dx2 = torch.empty_like(x2)
        _bn_backward_dx[(triton.cdiv(m, block_m), col_blocks)](x2, dy2, dx2, mean, rstd, w, sum_dy, sum_dyx, m, c,
                                                               BLOCK_M=block_m, BLOCK_C=block_c, num_warps=warps)
        dx = _from_2d(dx2, dy)
        dw = sum_dyx.to(w_meta[1]).reshape(w_meta[0]) if w_meta is not None else None   # weight may be (C, 1)
        db = sum_dy.to(b_meta[1]).reshape(b_meta[0]) if b_meta is not None else None
        return dx, None, None, dw, db, None, None


def batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
               weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """``normbook.functional.batch_norm`` with Triton kernels in training mode (batch statistics), fastest on
    channels-last inputs (other layouts are copied to channels-last first); its gradient is differentiable once.
    In evaluation mode it is ``normbook.functional.batch_norm`` itself (an elementwise map that the kernels would
    not improve). Same checks and errors as ``normbook.functional.batch_norm``: ``momentum`` must be a number, as
    in torch (``momentum=None``, the cumulative average, is an option of the BatchNorm modules, which pass
    1 / num_batches_tracked)."""
    _check(input, "batch_norm")
    _F._check_momentum(momentum, "batch_norm")
    if not training:
        return _F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    _F._check_batch_norm_args(input, running_mean, running_var, weight, bias, training, eps)
    return BatchNormFunction.apply(input, running_mean, running_var, weight, bias, momentum, eps)
