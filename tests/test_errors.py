"""Every failure the layers report: the exception type and a message that names what was expected and what was
given. Where torch's message is already clear, normbook's is the very same string (checked against the installed
torch, not pasted)."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as TF

import normbook.autograd as A
import normbook.functional as F
import normbook.nn as nbnn
from _layer_helpers import OLDER_TORCH


def _raise(fn, required=True):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    if required:
        pytest.fail("no exception raised")
    return None


# (id, normbook call, torch call, exception type, message)  -- the message is matched exactly and must equal
# torch's message when a torch call is given.
SAME_AS_TORCH = [
    ("BatchNorm1d-dims", lambda m: m.BatchNorm1d(3)(torch.randn(2, 3, 4, 5)), ValueError,
     "expected 2D or 3D input (got 4D input)"),
    ("BatchNorm2d-dims", lambda m: m.BatchNorm2d(3)(torch.randn(2, 3, 4)), ValueError,
     "expected 4D input (got 3D input)"),
    ("BatchNorm2d-dims-eval", lambda m: m.BatchNorm2d(3).eval()(torch.randn(2, 3)), ValueError,
     "expected 4D input (got 2D input)"),
    ("BatchNorm3d-dims", lambda m: m.BatchNorm3d(3)(torch.randn(2, 3, 4, 4)), ValueError,
     "expected 5D input (got 4D input)"),
    ("InstanceNorm1d-dims", lambda m: m.InstanceNorm1d(3)(torch.randn(3)), ValueError,
     "expected 2D or 3D input (got 1D input)"),
    ("InstanceNorm2d-dims", lambda m: m.InstanceNorm2d(3)(torch.randn(3, 3)), ValueError,
     "expected 3D or 4D input (got 2D input)"),
    ("InstanceNorm3d-dims", lambda m: m.InstanceNorm3d(3)(torch.randn(1, 2, 3, 4, 5, 6)), ValueError,
     "expected 4D or 5D input (got 6D input)"),
    ("BatchNorm-channels", lambda m: m.BatchNorm2d(3)(torch.randn(2, 4, 3, 3)), RuntimeError,
     "running_mean should contain 4 elements not 3"),
    ("BatchNorm-channels-eval", lambda m: m.BatchNorm1d(3).eval()(torch.randn(2, 5)), RuntimeError,
     "running_mean should contain 5 elements not 3"),
    ("BatchNorm-channels-untracked", lambda m: m.BatchNorm1d(3, track_running_stats=False)(torch.randn(2, 5)),
     RuntimeError, "weight should contain 5 elements not 3"),
    ("InstanceNorm-channels", lambda m: m.InstanceNorm2d(3, affine=True)(torch.randn(2, 4, 3, 3)), ValueError,
     "expected input's size at dim=1 to match num_features (3), but got: 4."),
    ("InstanceNorm-channels-unbatched", lambda m: m.InstanceNorm1d(3, affine=True)(torch.randn(4, 6)), ValueError,
     "expected input's size at dim=0 to match num_features (3), but got: 4."),
    ("BatchNorm-one-value", lambda m: m.BatchNorm1d(10)(torch.randn(1, 10)), ValueError,
     "Expected more than 1 value per channel when training, got input size torch.Size([1, 10])"),
    ("BatchNorm-one-value-3D", lambda m: m.BatchNorm1d(4)(torch.randn(1, 4, 1)), ValueError,
     "Expected more than 1 value per channel when training, got input size torch.Size([1, 4, 1])"),
    ("BatchNorm-one-value-untracked-eval",
     lambda m: m.BatchNorm2d(2, track_running_stats=False).eval()(torch.randn(1, 2, 1, 1)), ValueError,
     "Expected more than 1 value per channel when training, got input size torch.Size([1, 2, 1, 1])"),
    ("InstanceNorm-one-spatial", lambda m: m.InstanceNorm2d(3)(torch.randn(2, 3, 1, 1)), ValueError,
     "Expected more than 1 spatial element when training, got input size torch.Size([2, 3, 1, 1])"),
    ("GroupNorm-divisible", lambda m: m.GroupNorm(2, 7), ValueError,
     "num_channels (7) must be divisible by num_groups (2)"),
    ("GroupNorm-input-channels", lambda m: m.GroupNorm(2, 4)(torch.randn(2, 7, 4)), RuntimeError,
     "Expected number of channels in input to be divisible by num_groups, but got input of shape [2, 7, 4] and "
     "num_groups=2"),
    ("GroupNorm-channels", lambda m: m.GroupNorm(2, 4)(torch.randn(2, 6, 4)), RuntimeError,
     "Expected weight to be a vector of size equal to the number of channels in input, but got weight of shape [4] "
     "and input of shape [2, 6, 4]"),
    ("GroupNorm-dims", lambda m: m.GroupNorm(2, 4)(torch.randn(4)), RuntimeError,
     "Expected at least 2 dimensions for input tensor but received 1"),
    ("LayerNorm-shape", lambda m: m.LayerNorm(60)(torch.randn(2, 5)), RuntimeError,
     "Given normalized_shape=[60], expected input with shape [*, 60], but got input of size[2, 5]"),
    ("LayerNorm-shape-2d", lambda m: m.LayerNorm([3, 4])(torch.randn(2, 4, 3)), RuntimeError,
     "Given normalized_shape=[3, 4], expected input with shape [*, 3, 4], but got input of size[2, 4, 3]"),
]


@pytest.mark.parametrize("case", SAME_AS_TORCH, ids=[c[0] for c in SAME_AS_TORCH])
def test_same_message_as_torch(case):
    _, call, exc, message = case
    ours, theirs = _raise(lambda: call(nbnn)), _raise(lambda: call(torch.nn))
    assert type(ours) is exc
    assert str(ours) == message
    assert isinstance(theirs, exc) and str(theirs) == message  # torch says the same (installed version)


FUNCTIONAL_SAME_AS_TORCH = [
    ("layer_norm-weight", lambda f: f.layer_norm(torch.randn(2, 5), [5], torch.randn(4)), RuntimeError,
     "Expected weight to be of same shape as normalized_shape, but got weight of shape [4] and normalized_shape = [5]"),
    ("layer_norm-bias", lambda f: f.layer_norm(torch.randn(2, 5), [5], None, torch.randn(4)), RuntimeError,
     "Expected bias to be of same shape as normalized_shape, but got bias of shape [4] and normalized_shape = [5]"),
    ("rms_norm-weight", lambda f: f.rms_norm(torch.randn(2, 5), [5], torch.randn(4)), RuntimeError,
     "Expected weight to be of same shape as normalized_shape, but got weight of shape [4] and normalized_shape = [5]"),
    ("batch_norm-running_var", lambda f: f.batch_norm(torch.randn(4, 3), torch.zeros(3), torch.ones(4),
                                                      training=True), RuntimeError,
     "running_var should contain 3 elements not 4"),
    ("batch_norm-bias", lambda f: f.batch_norm(torch.randn(4, 3), None, None, None, torch.ones(2), training=True),
     RuntimeError, "bias should contain 3 elements not 2"),
    ("batch_norm-eps", lambda f: f.batch_norm(torch.randn(4, 3), None, None, training=True, eps=0.0), ValueError,
     "batch_norm eps must be positive during training, but got 0.0"),
    ("batch_norm-eps-eval", lambda f: f.batch_norm(torch.randn(4, 3), torch.zeros(3), torch.ones(3), eps=-1.0),
     ValueError, "batch_norm eps must be non-negative, but got -1.0"),
    ("instance_norm-no-stats", lambda f: f.instance_norm(torch.randn(2, 3, 4), use_input_stats=False), RuntimeError,
     "Expected running_mean and running_var to be defined when use_input_stats is false"),
]


@pytest.mark.parametrize("case", FUNCTIONAL_SAME_AS_TORCH, ids=[c[0] for c in FUNCTIONAL_SAME_AS_TORCH])
def test_functional_same_message_as_torch(case):
    _, call, exc, message = case
    ours, theirs = _raise(lambda: call(F)), _raise(lambda: call(TF), required=not OLDER_TORCH)
    assert type(ours) is exc and str(ours) == message
    if OLDER_TORCH and (theirs is None or str(theirs) != message):
        pytest.skip(f"torch {torch.__version__} predates this check or words it differently")
    assert isinstance(theirs, exc) and str(theirs) == message


def test_closed_form_functions_check_like_functional():
    with pytest.raises(RuntimeError, match=re.escape("running_mean should contain 4 elements not 3")):
        A.batch_norm(torch.randn(2, 4), torch.zeros(3), torch.ones(3), training=True)
    with pytest.raises(ValueError, match=re.escape("got input size torch.Size([1, 3])")):
        A.batch_norm(torch.randn(1, 3), None, None, training=True)
    with pytest.raises(RuntimeError, match=re.escape("Given normalized_shape=[6], expected input with shape [*, 6]")):
        A.layer_norm(torch.randn(2, 5), [6])
    with pytest.raises(TypeError, match="got an input of dtype torch.int64"):
        A.layer_norm(torch.ones(2, 5, dtype=torch.long), [5])


# --- messages clearer than torch's -------------------------------------------------------------------------------
NON_FLOATING = [
    ("BatchNorm1d", lambda m: m.BatchNorm1d(3), (4, 3)),
    ("BatchNorm2d", lambda m: m.BatchNorm2d(3), (4, 3, 2, 2)),
    ("InstanceNorm1d", lambda m: m.InstanceNorm1d(3), (4, 3, 5)),
    ("LayerNorm", lambda m: m.LayerNorm(3), (4, 3)),
    ("GroupNorm", lambda m: m.GroupNorm(1, 3), (4, 3, 2)),
    ("RMSNorm", lambda m: m.RMSNorm(3), (4, 3)),
]


@pytest.mark.filterwarnings("ignore:Mismatch dtype")
@pytest.mark.parametrize("dtype", [torch.long, torch.int32, torch.uint8, torch.bool])
@pytest.mark.parametrize("name,make,shape", NON_FLOATING, ids=[c[0] for c in NON_FLOATING])
def test_non_floating_input(name, make, shape, dtype):
    """torch says e.g. '"batch_norm" not implemented for 'Long''; normbook names the dtype and the fix."""
    x = torch.ones(shape, dtype=dtype)
    with pytest.raises(TypeError) as info:
        make(nbnn)(x)
    msg = str(info.value)
    assert f"got an input of dtype {dtype}" in msg
    assert "expected a floating-point input" in msg and ".float()" in msg
    with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
        make(torch.nn)(x)  # torch refuses too


def test_group_norm_single_value_per_group():
    """torch: '... got input size [1, 2]' (the internal reshaped size); normbook names the input and num_groups."""
    with pytest.raises(ValueError) as info:
        nbnn.GroupNorm(2, 2)(torch.randn(1, 2))
    assert str(info.value) == "Expected more than 1 value per group, got input size torch.Size([1, 2]) with num_groups=2"
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.GroupNorm(2, 2)(torch.randn(1, 2))


def test_rms_norm_shape_message():
    """torch prints '[*5]' for RMSNorm; normbook uses LayerNorm's '[*, 5]'."""
    with pytest.raises(RuntimeError) as info:
        nbnn.RMSNorm(5)(torch.randn(2, 4))
    assert str(info.value) == ("Given normalized_shape=[5], expected input with shape [*, 5], but got input of "
                               "size[2, 4]")
    with pytest.raises(RuntimeError, match=re.escape("Given normalized_shape=[5], expected input with shape [*")):
        torch.nn.RMSNorm(5)(torch.randn(2, 4))


def test_functional_batch_norm_needs_2d():
    with pytest.raises(ValueError, match=re.escape("batch_norm expected an input of at least 2 dims (N, C, *) "
                                                   "(got 1D input)")):
        F.batch_norm(torch.randn(4), None, None, training=True)


def test_eval_without_running_stats():
    with pytest.raises(RuntimeError, match="running_mean and running_var must be defined in evaluation mode"):
        F.batch_norm(torch.randn(4, 3), None, None, training=False)
    with pytest.raises(RuntimeError, match="running_mean must be defined in evaluation mode"):
        TF.batch_norm(torch.randn(4, 3), None, None, training=False)


@pytest.mark.parametrize("input_dtype,module_dtype", [(torch.float32, torch.bfloat16),
                                                      (torch.float64, torch.float32),
                                                      (torch.float32, torch.float64)])
def test_mixed_dtypes(input_dtype, module_dtype):
    """Only float16/bfloat16 inputs may meet float32 parameters; torch's CPU message is 'mixed dtype (CPU): ...'."""
    x = torch.randn(4, 3, dtype=input_dtype)
    for make in (lambda m: m.BatchNorm1d(3, dtype=module_dtype), lambda m: m.LayerNorm(3, dtype=module_dtype),
                 lambda m: m.GroupNorm(1, 3, dtype=module_dtype)):
        with pytest.raises(RuntimeError) as info:
            make(nbnn)(x)
        assert (f"mixed dtype: expected weight to have the input's dtype {input_dtype}, but got weight of dtype "
                f"{module_dtype}") in str(info.value)
        with pytest.raises(RuntimeError, match="mixed dtype|expected scalar type|same dtype"):
            make(torch.nn)(x)


def test_low_precision_input_with_wrong_parameter_dtype():
    x = torch.randn(4, 3, dtype=torch.float16)
    with pytest.raises(RuntimeError, match=re.escape("expected weight to have the input's dtype torch.float16 or "
                                                     "torch.float32, but got weight of dtype torch.float64")):
        nbnn.LayerNorm(3, dtype=torch.float64)(x)


def test_instance_norm_functional_needs_spatial_dims():
    with pytest.raises(ValueError, match=re.escape("instance_norm expected an input of at least 3 dims (N, C, *S) "
                                                   "(got 2D input)")):
        F.instance_norm(torch.randn(4, 3))
