"""normbook.distributed.SyncBatchNorm on 3 gloo processes equals BatchNorm on the concatenated batch.

One launch per module (spawning processes and importing torch costs seconds): the worker runs every case and
returns its shard's results; the tests compare them with torch.nn.BatchNorm on one process.
"""
import numpy as np
import pytest
import torch

from normbook import distributed as D
from normbook.book import ch08 as W
import _distributed_workers

WORLD = 3
CASES = {
    "even_f64": {"sizes": [4, 4, 4], "channels": 3, "spatial": [2, 3]},
    "uneven_f64": {"sizes": [5, 2, 7], "channels": 4, "spatial": [3]},
    "size1_f64": {"sizes": [1, 1, 1], "channels": 5},
    "empty_shard_f64": {"sizes": [3, 0, 2], "channels": 2, "spatial": [2, 2]},
    "momentum_none_f64": {"sizes": [2, 3, 4], "channels": 3, "momentum": None, "steps": 3},
    "uneven_f32": {"sizes": [6, 1, 3], "channels": 4, "spatial": [2, 2], "dtype": "float32"},
    "3d_f32": {"sizes": [2, 3, 1], "channels": 2, "spatial": [2, 2, 2], "dtype": "float32"},
    "all_empty": {"sizes": [0, 0, 0], "channels": 3},
    "one_value": {"sizes": [1, 0, 0], "channels": 3},
    "mismatched_channels": {"sizes": [2, 2, 2], "channels": [3, 4, 3]},
    "group_of_one_f64": {"sizes": [3, 4, 2], "channels": 2, "spatial": [2], "group_size": 1},
}
TOL = {"float64": dict(rtol=1e-12, atol=1e-12), "float32": dict(rtol=1e-5, atol=1e-5)}


@pytest.fixture(scope="module")
def results():
    out = D.launch(W.exactness_worker, WORLD, list(CASES.values()), timeout=240)
    return {name: [out[r][i] for r in range(WORLD)] for i, name in enumerate(CASES)}


def reference(case):
    dtype = getattr(torch, case.get("dtype", "float64"))
    x, dy, w, b = W.make_batch(case["sizes"], case["channels"], tuple(case.get("spatial", ())), dtype)
    bn = torch.nn.BatchNorm1d(case["channels"], momentum=case.get("momentum", 0.1), dtype=dtype)
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    ref = {"ys": [], "dxs": [], "dws": [], "dbs": []}
    for _ in range(case.get("steps", 2)):
        xx = x.clone().requires_grad_(True)
        bn.weight.grad = bn.bias.grad = None
        y = bn(xx.reshape(x.shape[0], x.shape[1], -1) if x.dim() > 3 else xx)
        y.reshape(x.shape).backward(dy)
        ref["ys"].append(y.detach().reshape(x.shape))
        ref["dxs"].append(xx.grad)
        ref["dws"].append(bn.weight.grad.clone())
        ref["dbs"].append(bn.bias.grad.clone())
    bn.eval()
    ref["eval_y"] = bn(x.reshape(x.shape[0], x.shape[1], -1) if x.dim() > 3 else x).detach().reshape(x.shape)
    ref["running_mean"], ref["running_var"] = bn.running_mean, bn.running_var
    return ref


EXACT = [k for k, c in CASES.items()
         if k not in ("all_empty", "one_value", "mismatched_channels") and "group_size" not in c]


@pytest.mark.parametrize("name", EXACT)
def test_equals_bn_on_concatenated_batch(results, name):
    case, per_rank = CASES[name], results[name]
    assert all("error" not in r for r in per_rank), per_rank
    ref = reference(case)
    tol = TOL[case.get("dtype", "float64")]
    for key in ("ys", "dxs"):  # shards concatenated in rank order
        for step, want in enumerate(ref[key]):
            got = np.concatenate([r[key][step] for r in per_rank])
            np.testing.assert_allclose(got, want.numpy(), **tol, err_msg=f"{key} step {step}")
    for key in ("dws", "dbs"):  # local gradients; DDP sums them across processes
        for step, want in enumerate(ref[key]):
            got = sum(r[key][step] for r in per_rank)
            np.testing.assert_allclose(got, want.numpy(), **tol, err_msg=f"{key} step {step}")
    for key in ("running_mean", "running_var"):
        for r in per_rank:
            np.testing.assert_allclose(r[key], ref[key].numpy(), **tol, err_msg=key)
    np.testing.assert_allclose(np.concatenate([r["eval_y"] for r in per_rank]), ref["eval_y"].numpy(), **tol)
    assert all(r["num_batches_tracked"] == case.get("steps", 2) for r in per_rank)


@pytest.mark.parametrize("name,match", [("all_empty", "zero elements"), ("one_value", "more than 1 value"),
                                        ("mismatched_channels", "number of channels")])
def test_errors_on_every_rank_not_a_hang(results, name, match):
    for r in results[name]:
        assert r.get("error") == "ValueError", r
        assert match in r["message"]


def test_no_process_group_names_init_process_group():
    m = D.SyncBatchNorm(3)
    with pytest.raises(RuntimeError, match="init_process_group"):
        m(torch.randn(4, 3))
    m.eval()  # evaluation is local: no process group needed
    torch.testing.assert_close(m(torch.ones(2, 3)), torch.nn.BatchNorm1d(3).eval()(torch.ones(2, 3)))


def test_input_checks_as_torch():
    with pytest.raises(ValueError, match="expected at least 2D input"):
        D.SyncBatchNorm(3)(torch.randn(3))
    with pytest.raises(ValueError, match="number of input channels should be non-zero"):
        D.SyncBatchNorm(0)(torch.randn(2, 0))


def test_constructor_buffers_state_dict_like_torch():
    ours, theirs = D.SyncBatchNorm(5, momentum=None), torch.nn.SyncBatchNorm(5, momentum=None)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for k, v in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[k], v)
    assert ours.process_group is None and repr(ours).split("(", 1)[1] == repr(theirs).split("(", 1)[1]
    ours.load_state_dict(theirs.state_dict())


def test_convert_sync_batchnorm_keeps_parameters_and_buffers():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4),
                              torch.nn.Sequential(torch.nn.BatchNorm1d(4)))
    net[1].running_mean.fill_(2.0)
    w = net[1].weight
    conv = D.convert_sync_batchnorm(net)
    assert isinstance(conv[1], D.SyncBatchNorm) and isinstance(conv[2][0], D.SyncBatchNorm)
    assert conv[1].weight is w and float(conv[1].running_mean[0]) == 2.0
    assert isinstance(D.SyncBatchNorm.convert_sync_batchnorm(torch.nn.BatchNorm1d(3)), D.SyncBatchNorm)


def test_combine_moments_is_chan():
    g = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, 3, generator=g, dtype=torch.float64) + 5 for n in (4, 0, 1, 7)]
    counts = torch.tensor([float(len(p)) for p in parts], dtype=torch.float64)
    means = torch.stack([p.mean(0) if len(p) else torch.zeros(3, dtype=torch.float64) for p in parts])
    m2s = torch.stack([((p - p.mean(0)) ** 2).sum(0) if len(p) else torch.zeros(3, dtype=torch.float64)
                       for p in parts])
    n, mean, m2 = D.combine_moments(counts, means, m2s)
    full = torch.cat(parts)
    assert int(n) == 12
    torch.testing.assert_close(mean, full.mean(0), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(m2, ((full - full.mean(0)) ** 2).sum(0), rtol=1e-12, atol=1e-12)


def test_launch_reports_worker_errors():
    with pytest.raises(RuntimeError, match="worker rank"):
        D.launch(W.shard, 1, timeout=60)   # wrong arguments: the worker raises TypeError


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.nn.SyncBatchNorm is GPU-only)")
def test_matches_torch_syncbn_on_cuda_two_processes():
    """Two processes, so that torch's SyncBatchNorm takes its synchronizing path (at world size 1 it falls back to
    plain BN): NCCL with one GPU each when there are two, else both on one GPU over gloo (which carries CUDA
    tensors; NCCL refuses two ranks on one device). Uneven shards; outputs, gradients and buffers agree, and both
    modules issue two collectives per training step."""
    backend = "nccl" if torch.cuda.device_count() >= 2 else "gloo"
    out = D.launch(_distributed_workers.torch_cuda_worker, 2, [3, 5], 4, backend=backend, timeout=300)
    for rank in out:
        assert all(v < 1e-4 for v in rank["diffs"].values()), rank["diffs"]
        assert rank["torch_calls"] == 2 and rank["normbook_calls"] == 2, rank


@pytest.mark.parametrize("name", EXACT)
def test_two_collectives_per_step_and_one_channel_check(results, name):
    """The statistics gather (2C + 1 float64 numbers: count, means, M2) and the gradient all-reduce (2C numbers of
    the statistics' dtype) are the only collectives of a training step; the channel check comes once, in the
    first step."""
    case, per_rank = CASES[name], results[name]
    c = case["channels"]
    itemsize = 4 if case.get("dtype") == "float32" else 8
    for r in per_rank:
        assert r["calls"] == [2] * case.get("steps", 2)
        assert r["checks"] == [1] + [0] * (case.get("steps", 2) - 1)
        assert r["bytes"] == [8 * (2 * c + 1) + itemsize * 2 * c] * case.get("steps", 2)


def test_process_group_of_one_is_per_process_bn(results):
    """SyncBatchNorm over a process group of one process (ch08.sync_group with groups of 1) normalizes each shard
    with that shard's own statistics: BN on the shard."""
    case = CASES["group_of_one_f64"]
    x, dy, w, b = W.make_batch(case["sizes"], case["channels"], tuple(case["spatial"]), torch.float64)
    for rank, r in enumerate(results["group_of_one_f64"]):
        assert "error" not in r, r
        bn = torch.nn.BatchNorm1d(case["channels"], dtype=torch.float64)
        with torch.no_grad():
            bn.weight.copy_(w)
            bn.bias.copy_(b)
        xs = W.shard(x, case["sizes"], rank).clone().requires_grad_(True)
        y = bn(xs)
        y.backward(W.shard(dy, case["sizes"], rank))
        np.testing.assert_allclose(r["ys"][0], y.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r["dxs"][0], xs.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_launch_reports_a_process_that_died_without_reporting():
    with pytest.raises(RuntimeError, match="exited with code 3"):
        D.launch(_distributed_workers.exit_worker, 2, timeout=60)

