"""PyTorch's own test inputs for the normalization layers, run against normbook.

``torch.testing._internal`` ships the sample inputs torch tests its layers with: ``module_db`` (ModuleInfo entries
for BatchNorm1d/2d/3d, GroupNorm, InstanceNorm1d/2d/3d, LayerNorm, RMSNorm, with sample and error inputs) and
``op_db`` (OpInfos for the functional forms, with sample and error inputs). Every sample is run through torch and
through normbook in float32, float64 and bfloat16, in training and evaluation mode (modules), two steps each:
outputs, input and parameter gradients and running buffers must agree, or both must raise the same exception
type. float32/float64 are compared with torch directly; bfloat16 with a float64 reference (torch's own bf16
kernels round more than our float32-opmath code), accepting an error up to torch's default bf16 tolerance or up
to twice torch's own bf16 error. Run this file as a script to print the count of samples passed.
"""
from __future__ import annotations


import pytest
import torch

pytest.importorskip("expecttest")

import normbook.functional as NF  # noqa: E402
import normbook.nn as NN  # noqa: E402

MODULES = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
           "InstanceNorm3d", "LayerNorm", "RMSNorm"]
OPS = ["batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm"]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
TOL = {torch.float32: dict(rtol=1.3e-6 * 10, atol=1e-5), torch.float64: dict(rtol=1e-7, atol=1e-7)}
BF16_TOL = dict(rtol=1.6e-2, atol=1e-2)
PASSED = {"module": 0, "module_error": 0, "op": 0, "op_error": 0}
_DB = {}


@pytest.fixture(scope="module", autouse=True)
def _report_count():
    yield
    print(f"\ntorch samples passed: {sum(PASSED.values())} {PASSED}")


def _db():
    if not _DB:
        from torch.testing._internal.common_methods_invocations import op_db
        from torch.testing._internal.common_modules import module_db
        # Importing torch's test harness freezes the global cudnn flags (torch.backends.disable_global_flags),
        # which makes every later normbook.seed_everything in this pytest process raise: unfreeze them.
        # (torch.backends is a module wrapper: the flag lives in the globals of its functions.)
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
        _DB["modules"] = {m.module_cls.__name__: m for m in module_db if m.module_cls.__name__ in MODULES}
        _DB["ops"] = [o for o in op_db if o.name.removeprefix("nn.functional.") in OPS]
    return _DB


def _tensors(obj):
    return [t for t in obj if isinstance(t, torch.Tensor)]


def _close(got, want, dtype, torch_low=None, what=""):
    """got vs want; for bf16 ``want`` is the float64 reference and torch_low torch's bf16 result."""
    if got is None or want is None:
        assert got is None and want is None, f"{what}: one side is None"
        return
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    if dtype != torch.bfloat16:
        torch.testing.assert_close(got, want, **TOL[dtype], equal_nan=True, msg=lambda m: f"{what}: {m}")
        return
    got, want = got.double(), want.double()
    try:
        torch.testing.assert_close(got, want, **BF16_TOL, equal_nan=True)
    except AssertionError:
        ours = (got - want).abs().nan_to_num().max()
        theirs = (torch_low.double() - want).abs().nan_to_num().max()
        assert ours <= 2 * theirs, f"{what}: bf16 error {ours:.3g} vs torch's bf16 {theirs:.3g}"


def _run(fn, make_args, steps=2):
    """Call ``fn(*args, **kwargs)`` ``steps`` times on fresh copies of the inputs, backward with a fixed
    upstream gradient; return (outputs, grads of the inputs that require grad, final args) or the exception."""
    try:
        outs, grads = [], []
        for _ in range(steps):
            args, kwargs, leaves = make_args()
            y = fn(*args, **kwargs)
            outs.append(y.detach())
            if y.requires_grad and y.numel():
                g = torch.Generator().manual_seed(1)
                dy = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.dtype)
                gs = torch.autograd.grad(y, leaves, dy, allow_unused=True)
                grads.append(list(gs))
            else:
                grads.append([None] * len(leaves))
        return outs, grads, (args, kwargs)
    except Exception as e:  # noqa: BLE001
        return e


# --------------------------------------------------------------------------------------------------------------
# module_db
# --------------------------------------------------------------------------------------------------------------
def _module_case(info, sample, dtype, training, ref_dtype=None):
    """Results of torch's module and normbook's twin on one sample (``ref_dtype`` casts everything)."""
    cast = ref_dtype or dtype
    ci, fi = sample.constructor_input, sample.forward_input
    results = []
    for cls in (info.module_cls, getattr(NN, info.module_cls.__name__)):
        torch.manual_seed(0)
        try:
            m = cls(*ci.args, **ci.kwargs).to(cast)
        except Exception as e:  # noqa: BLE001
            results.append(e)
            continue
        results.append(m)
    if any(isinstance(r, Exception) for r in results):
        return results
    theirs, ours = results
    ours.load_state_dict(theirs.state_dict())
    out = []
    for m in (theirs, ours):
        m.train(training)
        params = [p for p in m.parameters()]

        def make_args(m=m, params=params):
            args = [a.detach().to(cast).clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                    for a in fi.args]
            return args, fi.kwargs, _tensors(args) + params
        r = _run(m, make_args)
        out.append(r if isinstance(r, Exception) else (*r[:2], {k: v.clone() for k, v in m.named_buffers()}))
    return out


def _compare(theirs, ours, dtype, what, ref=None, ref_fn=None):
    """ours vs torch (float32/float64) or vs the float64 reference ``ref`` (bf16). A float32 result that
    differs from torch's is accepted when it agrees with the float64 reference ``ref_fn()`` instead (a
    single-element LayerNorm: torch's x_hat is 1e-5 where the exact value, and ours, is 0)."""
    if isinstance(theirs, Exception) or isinstance(ours, Exception):
        assert type(theirs) is type(ours), f"{what}: torch gives {theirs!r}, normbook {ours!r}"
        return
    if dtype == torch.float32 and ref_fn is not None:
        try:
            return _compare(theirs, ours, dtype, what, ref)
        except AssertionError:
            ref = ref_fn()
            if isinstance(ref, Exception):
                raise
            ref = ([t.float() for t in ref[0]],) + (
                [[None if t is None else t.float() for t in step] for step in ref[1]],) + tuple(
                {k: v.to(ours[2][k].dtype) for k, v in r.items()} for r in ref[2:])
            return _compare(theirs, ours, dtype, what + " (vs float64)", ref)
    want = ref if ref is not None else theirs
    for step, (a, b, t) in enumerate(zip(ours[0], want[0], theirs[0])):
        _close(a, b, dtype, t, f"{what} output step {step}")
    for step, (ga, gb, gt) in enumerate(zip(ours[1], want[1], theirs[1])):
        for i, (a, b, t) in enumerate(zip(ga, gb, gt)):
            _close(a, b, dtype, t, f"{what} grad {i} step {step}")
    if len(theirs) > 2 and isinstance(theirs[2], dict):
        assert ours[2].keys() == theirs[2].keys(), what
        for k in theirs[2]:
            _close(ours[2][k].to(theirs[2][k].dtype) if k == "num_batches_tracked" else ours[2][k],
                   want[2][k].to(ours[2][k].dtype) if k == "num_batches_tracked" else want[2][k],
                   dtype if ours[2][k].is_floating_point() else torch.float64, theirs[2][k], f"{what} {k}")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", MODULES)
def test_module_samples(name, dtype, training):
    info = _db()["modules"][name]
    samples = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=training)
    assert samples
    for i, s in enumerate(samples):
        what = f"{name}[{i}:{s.desc}] {dtype} {'train' if training else 'eval'}"
        theirs, ours = _module_case(info, s, dtype, training)
        ref = None
        if dtype == torch.bfloat16 and not isinstance(theirs, Exception):
            ref = _module_case(info, s, dtype, training, ref_dtype=torch.float64)[0]
            if isinstance(ref, Exception):
                ref = None
        if isinstance(theirs, torch.nn.Module):
            theirs, ours = "constructed", "constructed"

        def ref_fn(info=info, s=s):
            return _module_case(info, s, dtype, training, ref_dtype=torch.float64)[0]
        _compare(theirs, ours, dtype, what, ref, ref_fn)
        PASSED["module"] += 1


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["BatchNorm1d", "GroupNorm"])
def test_module_error_inputs(name, dtype):
    from torch.testing._internal.common_modules import ModuleErrorEnum
    info = _db()["modules"][name]
    errs = info.module_error_inputs_func(info, "cpu", dtype, True, True)
    assert errs
    for e in errs:
        mi = e.module_error_input
        cls = getattr(NN, name)
        with pytest.raises(e.error_type):
            m = cls(*mi.constructor_input.args, **mi.constructor_input.kwargs)
            if e.error_on == ModuleErrorEnum.FORWARD_ERROR:
                m.to(dtype)(*mi.forward_input.args, **mi.forward_input.kwargs)
        PASSED["module_error"] += 1


# --------------------------------------------------------------------------------------------------------------
# op_db
# --------------------------------------------------------------------------------------------------------------
def _op_run(fn, sample, cast, positional_stats=False):
    def make_args():
        def conv(a):
            if isinstance(a, torch.Tensor):
                return a.detach().to(cast).clone().requires_grad_(a.requires_grad)
            return a
        inp = conv(sample.input)
        args = [conv(a) for a in sample.args]
        kwargs = {k: conv(v) for k, v in sample.kwargs.items()}
        # the running buffers persist across the two steps (updated in place)
        for key, idx in (("running_mean", 0), ("running_var", 1)):
            if key in kwargs and kwargs[key] is not None:
                kwargs[key] = state.setdefault(key, kwargs[key])
            elif positional_stats and len(args) > idx and isinstance(args[idx], torch.Tensor):
                args[idx] = state.setdefault(key, args[idx])
        leaves = [t for t in [inp] + args + list(kwargs.values())
                  if isinstance(t, torch.Tensor) and t.requires_grad]
        return [inp] + args, kwargs, leaves
    state = {}
    r = _run(fn, make_args)
    return r if isinstance(r, Exception) else (*r[:2], {k: v.detach().clone() for k, v in state.items()})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", OPS)
def test_op_samples(op, dtype):
    infos = [o for o in _db()["ops"] if o.name == f"nn.functional.{op}"]
    assert infos
    ours_fn = getattr(NF, op)
    for info in infos:
        for i, s in enumerate(info.sample_inputs("cpu", dtype, requires_grad=True)):
            what = f"{info.name}{'.' + info.variant_test_name if info.variant_test_name else ''}[{i}] {dtype}"
            pos = op == "batch_norm"
            theirs = _op_run(info.op, s, dtype, pos)
            ours = _op_run(ours_fn, s, dtype, pos)
            ref = None
            if dtype == torch.bfloat16 and not isinstance(theirs, Exception):
                ref = _op_run(info.op, s, torch.float64, pos)
                ref = None if isinstance(ref, Exception) else ref
            _compare(theirs, ours, dtype, what, ref,
                     lambda info=info, s=s, pos=pos: _op_run(info.op, s, torch.float64, pos))
            PASSED["op"] += 1


@pytest.mark.parametrize("op", OPS)
def test_op_error_inputs(op):
    ours_fn = getattr(NF, op)
    for info in [o for o in _db()["ops"] if o.name == f"nn.functional.{op}"]:
        if info.error_inputs_func is None:
            continue
        for e in info.error_inputs("cpu"):
            s = e.sample_input
            with pytest.raises(e.error_type):
                ours_fn(s.input, *s.args, **s.kwargs)
            PASSED["op_error"] += 1


if __name__ == "__main__":
    import sys
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider", "-s", "-W", "ignore"]))
