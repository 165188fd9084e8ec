r"""SyncBatchNorm written on ``torch.distributed``: BatchNorm whose statistics span every process's shard.

``torch.nn.SyncBatchNorm`` runs only on GPUs (on CPU tensors it raises). This version runs with the gloo backend
on CPU (several processes on one machine) and with NCCL on GPUs, and is exact: on P processes holding shards of
n_1, ..., n_P examples it gives the outputs, input gradients, summed weight/bias gradients and running statistics
of single-process BatchNorm on the concatenated batch.

Forward. Each process computes, per channel, its count n_p, mean m_p and M2_p = sum (x - m_p)^2 (the corrected
two-pass moments of ``normbook.functional``). One ``all_gather`` of the packed vector (n_p, m_p, M2_p), 2C + 1
numbers in float64 (so that the count is an exact integer however large the shard), gives every process all P
triples, which it merges in rank order with the parallel formula of Chan, Golub & LeVeque (1979):

    n = n_a + n_b,  delta = m_b - m_a,  m = m_a + delta n_b / n,  M2 = M2_a + M2_b + delta^2 n_a n_b / n.

We gather (mean, M2) rather than all-reducing (sum, sum of squares): the sums need no gather, but
sum(x^2)/n - mean^2 cancels catastrophically when the mean is large compared to the spread, the failure
``normbook.functional`` avoids on one process. The gathered message is P (2C + 1) numbers, small next to the
activations. torch.nn.SyncBatchNorm packs the same way: (mean, invstd, count) in one all_gather, its count a
number of the statistics' dtype.

Backward. With x_hat = (x - mean) / sqrt(var + eps) and dx_hat = gamma dy, the closed form

    dx = gamma / sqrt(var + eps) * (dy - sum(dy) / n - x_hat * sum(dy x_hat) / n)

needs only two per-channel sums over the *whole* batch: one ``all_reduce`` of 2C numbers. So a training step
issues two collectives per layer, one in the forward and one in the backward pass, as torch's does. The weight
and bias gradients stay local (sum(dy x_hat) and sum(dy) over the shard), as in torch: DistributedDataParallel
averages them across processes like any other parameter gradient (it all-reduces the sum and divides by P, which
is why the loss on each shard is a mean over that shard). This backward is differentiated only once: it uses
x_hat and 1/sqrt(var + eps) saved from the forward pass without a graph, so backward with ``create_graph=True``
(a gradient penalty, a Hessian-vector product) raises a RuntimeError instead of returning a wrong second
derivative.

Shapes. Processes that disagree on the number of channels would send gathers of different sizes, which the
collective cannot survive (gloo aborts the process, NCCL may hang). The module checks it once, on a layer's first
training step (and again whenever the layer's input changes its channel count): one extra ``all_gather`` of the
channel count, after which every process raises the same ValueError when they differ. The functional
``sync_batch_norm`` checks only when asked (``check_channels=True``).

``launch(worker, world_size, *args)`` runs ``worker(rank, world_size, *args)`` in ``world_size`` spawned processes
joined in a gloo (or NCCL) process group and returns their results to the caller (tensors converted to NumPy):
a notebook can call it, as long as ``worker`` is importable (defined in a module, not in the notebook).
"""
from __future__ import annotations

import os
import tempfile
import time
import traceback
from typing import Any, Callable, List, Optional

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import Module

from . import functional as _F
from .autograd import _check_first_order
from .nn import _BatchNorm

__all__ = ["SyncBatchNorm", "sync_batch_norm", "convert_sync_batchnorm", "combine_moments", "launch",
           "comm_stats", "reset_comm_stats"]

# Counters of the collectives SyncBatchNorm issued in this process (for the chapter's cost measurements).
_COMM = {"calls": 0, "bytes": 0, "seconds": 0.0, "checks": 0}


def reset_comm_stats() -> None:
    """Zero the counters of SyncBatchNorm's collectives in this process."""
    _COMM.update(calls=0, bytes=0, seconds=0.0, checks=0)


def comm_stats() -> dict:
    """{'calls', 'bytes', 'seconds', 'checks'}: the collectives SyncBatchNorm issued in this process since the
    last reset. 'calls', 'bytes' and 'seconds' count the statistics gathers and gradient all-reduces (two per
    layer and training step); bytes is what this process sends (its payload of each collective). 'checks'
    counts the one-time channel checks (one per layer, on its first training step), kept out of the others."""
    return dict(_COMM)


def _timed(fn, payload: Tensor, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    _COMM["seconds"] += time.perf_counter() - t0
    _COMM["calls"] += 1
    _COMM["bytes"] += payload.numel() * payload.element_size()
    return out


def combine_moments(counts: Tensor, means: Tensor, m2s: Tensor):
    """Merge per-shard statistics with Chan's parallel formula, in shard order.

    counts (P,), means (P, C), m2s (P, C) -> (n, mean (C,), M2 (C,)). Shards with count 0 are skipped.
    """
    n = counts.new_zeros(())
    mean = torch.zeros_like(means[0])
    m2 = torch.zeros_like(m2s[0])
    for n_b, m_b, m2_b in zip(counts, means, m2s):
        if n_b == 0:
            continue
        total = n + n_b
        delta = m_b - mean
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta * delta * (n * n_b / total)
        n = total
    return n, mean, m2


def _group_and_size(process_group):
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("SyncBatchNorm needs an initialized process group in training mode: call "
                           "torch.distributed.init_process_group(backend, ...) in every process first (or use "
                           "normbook.distributed.launch), or use normbook.nn.BatchNorm*d on one process")
    group = process_group if process_group is not None else dist.group.WORLD
    return group, dist.get_world_size(group)


def _all_gather(t: Tensor, world_size: int, group) -> Tensor:
    out = [torch.empty_like(t) for _ in range(world_size)]
    _timed(dist.all_gather, t, out, t.contiguous(), group=group)
    return torch.stack(out)


def _check_channels(c: int, device, world_size: int, group) -> None:
    """Every process of ``group`` sends its channel count; all raise the same ValueError when they differ."""
    mine = torch.tensor([float(c)], dtype=torch.float64, device=device)
    out = [torch.empty_like(mine) for _ in range(world_size)]
    dist.all_gather(out, mine, group=group)
    _COMM["checks"] += 1
    seen = [int(v.item()) for v in out]
    if any(v != c for v in seen):
        raise ValueError(f"SyncBatchNorm: processes disagree on the number of channels: {seen} (rank order)")


class _SyncBatchNormFn(torch.autograd.Function):
    """Training-mode BatchNorm with statistics over every process of ``group``; the closed-form backward needs
    one all_reduce. Differentiable once: backward with ``create_graph=True`` raises."""

    @staticmethod
    def forward(ctx, input, weight, bias, running_mean, running_var, eps, momentum, group, world_size):
        c = input.shape[1]
        x = input.to(_F._opmath(input.dtype))
        count = input.numel() // c
        # this process's (count, mean, M2) per channel, packed into one float64 vector of 2C + 1 numbers
        dims = [0] + list(range(2, input.dim()))
        local = torch.zeros(2 * c + 1, dtype=torch.float64, device=input.device)
        local[0] = count
        if count > 0:
            mean_p, var_p, _ = _F._moments(x, dims)
            local[1:c + 1] = mean_p.flatten()
            local[c + 1:] = var_p.flatten() * count
        gathered = _all_gather(local, world_size, group)               # (P, 2C + 1): the one collective
        counts = gathered[:, 0]
        total = int(counts.sum().item())
        if total == 0:
            raise ValueError("SyncBatchNorm: the input has zero elements on every process; there are no values "
                             "to compute batch statistics from")
        if total == 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got 1 value per channel "
                             f"across {world_size} processes (local input size {input.size()})")
        _, mean, m2 = combine_moments(counts, gathered[:, 1:c + 1], gathered[:, c + 1:])
        mean, var = mean.to(x.dtype), (m2 / total).to(x.dtype)
        _F._update_running_stats(running_mean, running_var, mean, var, total, momentum)
        shape = _F._channel_shape(input)
        invstd = torch.rsqrt(var + eps)
        x_hat = (x - mean.reshape(shape)) * invstd.reshape(shape)
        ctx.save_for_backward(x_hat, weight, invstd)
        ctx.meta = (group, world_size, total, bias is not None, input.dtype)
        return _F._affine(x_hat, weight, bias, shape).to(input.dtype)

    @staticmethod
    def backward(ctx, grad_out):
        _check_first_order("normbook.distributed.SyncBatchNorm", "normbook.functional.batch_norm on one process "
                           "(no distributed version has higher derivatives)")
        x_hat, weight, invstd = ctx.saved_tensors
        group, world_size, total, has_bias, dtype = ctx.meta
        shape = _F._channel_shape(x_hat)
        c = x_hat.shape[1]
        dims = [0] + list(range(2, x_hat.dim()))
        dy = grad_out.to(x_hat.dtype)
        # local sums; one all_reduce makes them the sums over the whole batch
        sums = torch.cat([dy.sum(dims), (dy * x_hat).sum(dims)]) if dy.numel() else x_hat.new_zeros(2 * c)
        local_dw, local_db = sums[c:].clone(), sums[:c].clone()
        _timed(dist.all_reduce, sums, sums, op=dist.ReduceOp.SUM, group=group)
        sum_dy, sum_dy_xhat = sums[:c].reshape(shape), sums[c:].reshape(shape)
        scale = invstd if weight is None else invstd * weight.to(invstd.dtype)
        grad_in = scale.reshape(shape) * (dy - sum_dy / total - x_hat * (sum_dy_xhat / total))
        grad_w = local_dw.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = local_db.to(weight.dtype if weight is not None else dtype) \
            if has_bias and ctx.needs_input_grad[2] else None
        return grad_in.to(dtype), grad_w, grad_b, None, None, None, None, None, None


def sync_batch_norm(input: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                    weight: Optional[Tensor] = None, bias: Optional[Tensor] = None, training: bool = False,
                    momentum: float = 0.1, eps: float = 1e-5, process_group=None, *,
                    check_channels: bool = False) -> Tensor:
    """``normbook.functional.batch_norm`` whose training statistics span all processes of ``process_group``
    (the default group when None). Evaluation (``training=False``) is local and needs no process group.
    In training mode the gradient is differentiable once (backward with ``create_graph=True`` raises).

    Training issues one ``all_gather`` in the forward and one ``all_reduce`` in the backward pass.
    ``check_channels=True`` first gathers every process's channel count (one more collective) and raises
    ValueError on every process when they differ, instead of letting mismatched gathers abort or hang."""
    _F._check_momentum(momentum, "sync_batch_norm")
    if not training:
        return _F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    _F._check_floating(input, "sync_batch_norm")
    if input.dim() < 2:
        raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")
    if eps <= 0.0:
        raise ValueError(f"batch_norm eps must be positive during training, but got {eps}")
    _F._check_per_channel(input.shape[1], running_mean=running_mean, running_var=running_var, weight=weight,
                          bias=bias)
    _F._check_param_dtypes(input, "sync_batch_norm", weight=weight, bias=bias, running_mean=running_mean,
                           running_var=running_var)
    group, world_size = _group_and_size(process_group)
    if check_channels:
        _check_channels(input.shape[1], input.device, world_size, group)
    return _SyncBatchNormFn.apply(input, weight, bias, running_mean, running_var, eps, momentum, group,
                                  world_size)


class SyncBatchNorm(_BatchNorm):
    """Twin of ``torch.nn.SyncBatchNorm`` that also runs on CPU (gloo): same constructor (``process_group``),
    parameters, buffers and state_dict. Training needs an initialized process group (one process is fine);
    evaluation uses the running statistics and needs none. Training-mode gradients are differentiable once:
    backward with ``create_graph=True`` raises.

    A training step issues two collectives: the statistics ``all_gather`` in the forward pass and the gradient
    ``all_reduce`` in the backward pass. On its first training step (and whenever its input's channel count
    changes) the layer also checks that every process has the same number of channels."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: Optional[float] = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Any = None, device=None, dtype=None, *,
                 bias: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype,
                         bias=bias)
        self.process_group = process_group
        self._checked_channels: Optional[int] = None   # channel count last agreed on by every process

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if input.size(1) == 0:
            raise ValueError("SyncBatchNorm number of input channels should be non-zero")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_buffers = not self.training or self.track_running_stats
        running_mean = self.running_mean if use_buffers else None
        running_var = self.running_var if use_buffers else None
        if not self.training:   # evaluation: local, as torch (batch statistics if there are no buffers)
            return _F.batch_norm(input, running_mean, running_var, self.weight, self.bias, bn_training, factor,
                                 self.eps)
        check = input.size(1) != self._checked_channels
        out = sync_batch_norm(input, running_mean, running_var, self.weight, self.bias, True, factor, self.eps,
                              self.process_group, check_channels=check)
        self._checked_channels = input.size(1)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group=None) -> Module:
        """Replace every BatchNorm*d (torch's or normbook's) in ``module`` by a SyncBatchNorm holding the same
        parameters, buffers and ``requires_grad`` flags, as ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``."""
        out = module
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, _BatchNorm)) and not isinstance(module, cls):
            out = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats,
                      process_group)
            if module.affine:
                with torch.no_grad():
                    out.weight = module.weight
                    out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
            if hasattr(module, "qconfig"):
                out.qconfig = module.qconfig
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        del module
        return out


def convert_sync_batchnorm(module: Module, process_group=None) -> Module:
    """``SyncBatchNorm.convert_sync_batchnorm``."""
    return SyncBatchNorm.convert_sync_batchnorm(module, process_group)


# --------------------------------------------------------------------------------------------------------------
# Launcher: run an importable worker in P processes, return the results to the caller (e.g. a notebook)
# --------------------------------------------------------------------------------------------------------------
def _to_numpy(obj):
    if isinstance(obj, Tensor):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def _entry(rank, world_size, init_file, backend, timeout_s, threads, worker, args, queue):
    try:
        torch.set_num_threads(threads)
        if backend == "nccl":   # one GPU per process, chosen before NCCL's first collective (the barrier below)
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                                timeout=__import__("datetime").timedelta(seconds=timeout_s))
        try:
            # every process finishes connecting before any can return and tear its connections down (a worker
            # with nothing to do would otherwise close them while the others are still connecting)
            dist.barrier()
            result = worker(rank, world_size, *args)
            queue.put((rank, "ok", _to_numpy(result)))
        finally:
            dist.destroy_process_group()
    except BaseException:  # noqa: BLE001 - the parent re-raises with the worker's traceback
        queue.put((rank, "error", traceback.format_exc()))


def launch(worker: Callable, world_size: int, *args, backend: Optional[str] = None, timeout: float = 120.0,
           threads: int = 1) -> List[Any]:
    """Run ``worker(rank, world_size, *args)`` in ``world_size`` fresh processes (spawn) that share a process
    group, and return the list of their results in rank order (tensors come back as NumPy arrays).

    ``worker`` must be importable by the children (a function in a module, not one defined in a notebook).
    ``backend`` defaults to gloo (NCCL when every process can have its own GPU). A worker that raises, or a
    process that dies without reporting, makes this raise RuntimeError with its traceback or exit code; processes
    still running after ``timeout`` seconds are terminated.
    """
    import torch.multiprocessing as mp
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= world_size else "gloo"
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    fd, init_file = tempfile.mkstemp(prefix="normbook_pg_")
    os.close(fd)
    os.remove(init_file)   # the file store creates it
    procs = [ctx.Process(target=_entry, args=(r, world_size, init_file, backend, timeout, threads, worker, args,
                                              queue), daemon=True) for r in range(world_size)]
    for p in procs:
        p.start()
    results, errors = {}, {}
    deadline = time.monotonic() + timeout
    import queue as _queue
    try:
        while len(results) + len(errors) < world_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                rank, status, payload = queue.get(timeout=min(remaining, 1.0))
            except _queue.Empty:
                if errors and all(not p.is_alive() for p in procs):
                    break
                # a process that died without reporting (aborted in native code, killed): the others would
                # wait for it in their next collective until the timeout
                dead = {r: p.exitcode for r, p in enumerate(procs)
                        if not p.is_alive() and p.exitcode not in (0, None) and r not in results
                        and r not in errors}
                if dead:
                    for r, code in dead.items():
                        errors[r] = (f"the process exited with code {code} without returning a result (a "
                                     f"negative code is the signal that ended it, e.g. -6 for an abort in a "
                                     f"collective)")
                    break
                continue
            (results if status == "ok" else errors)[rank] = payload
    finally:
        for p in procs:
            p.join(timeout=5 if not errors else 1)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        if os.path.exists(init_file):
            os.remove(init_file)
    if errors:
        rank = min(errors)
        raise RuntimeError(f"worker rank {rank} of {world_size} failed:\n{errors[rank]}")
    if len(results) < world_size:
        missing = sorted(set(range(world_size)) - set(results))
        raise TimeoutError(f"ranks {missing} returned nothing within {timeout} s")
    return [results[r] for r in range(world_size)]
