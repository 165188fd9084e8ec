"""A cheating answer must fail its checker (issue 28): torch's own layer where the exercise asks for the computation,
autograd where it asks for the backward pass by hand, a fold that rewrites the module the checker then uses as its
reference.

``test_checker_rejects_the_cheat`` is a strict xfail for each checker that accepts its cheat today; chapter 2's
checkers were fixed in this round (ch02.py's own ``no_batch_norm`` / ``no_autograd``) and pass. The follow-up pass
wires ``normbook.book.exercises.guard`` / ``private_copy`` into the others; a test then XPASSes, which fails, and
the checker's id goes into FIXED. Each ``test_guard_rejects_*`` shows today that the
machinery catches the same cheat, so the follow-up is a one-line change per checker (the grader,
tools/normbook_grading.py, already applies it where an answer cell declares ``forbid``).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normbook.book.exercises import AUTOGRAD, TORCH_NORM, ch02, ch03, ch04, ch05, ch07, ch08, ch10, guard

XFAIL = pytest.mark.xfail(strict=True, reason="the checker accepts the cheat (issue 28); follow-up: guard it")
#: cheats their checker already rejects
FIXED = {"ch02-forward-F.batch_norm", "ch02-backward-autograd", "ch03-module-nn.BatchNorm",
         "ch04-running-update-F.batch_norm", "ch04-population-nn.BatchNorm", "ch04-fold-resets-the-reference",
         "ch05-group-norm-F.group_norm", "ch05-rms-norm-F.rms_norm",
         "ch07-frozen-F.batch_norm",
         "ch10-rms-norm-backward-autograd", "ch10-group-norm-backward-autograd"}


# --------------------------------------------------------------------------- the cheats

def bn_forward_by_torch(x, gamma, beta, eps):  # channels last: torch's layer on the channels-first view
    return F.batch_norm(x.movedim(-1, 1), None, None, gamma, beta, training=True, eps=eps).movedim(1, -1)


def bn_backward_by_autograd(dy, x, gamma, eps):
    dims, shape = [0] + list(range(2, x.dim())), [1, -1] + [1] * (x.dim() - 2)
    x, gamma = x.clone().requires_grad_(), gamma.clone().requires_grad_()
    beta = torch.zeros_like(gamma, requires_grad=True)
    x_hat = (x - x.mean(dims, keepdim=True)) / torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    y = x_hat * gamma.reshape(shape) + beta.reshape(shape)
    return torch.autograd.grad(y, (x, gamma, beta), dy)


def running_update_by_torch(running_mean, running_var, x, momentum):
    F.batch_norm(x, running_mean, running_var, training=True, momentum=momentum)
    return running_mean, running_var


def population_stats_by_torch(batches):
    bn = nn.BatchNorm1d(batches[0].shape[1], momentum=None).double()
    for b in batches:
        bn(b.reshape(b.shape[0], b.shape[1], -1) if b.dim() > 2 else b)
    return bn.running_mean, bn.running_var


def fold_by_resetting(weight, bias, bn):
    """Makes the checker's BatchNorm the identity (in eval mode: gamma 1, beta 0, mean 0, var 1 - eps) and returns
    the layer unchanged: the pair the checker then runs as its reference is the layer alone."""
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1 - bn.eps)
        bn.weight.fill_(1)
        bn.bias.zero_()
    return weight, torch.zeros(weight.shape[0], dtype=weight.dtype) if bias is None else bias


def group_norm_by_torch(x, num_groups, weight, bias, eps):
    return F.group_norm(x, num_groups, weight, bias, eps)


def rms_norm_by_torch(x, normalized_shape, weight, eps):
    return F.rms_norm(x, normalized_shape, weight, eps)


def frozen_bn_by_torch(x, weight, bias, running_mean, running_var, eps):
    return F.batch_norm(x, running_mean, running_var, weight, bias, training=False, eps=eps)


class BatchNormByTorch(nn.BatchNorm1d):
    """ch03's module exercise answered with torch's module (BatchNorm1d accepts 2-d and 3-d inputs; the checker
    also feeds 4-d ones, which torch's BatchNorm2d takes)."""

    def _check_input_dim(self, input):
        pass


def sync_backward_by_hand(dys, x_hats, weight, invstd):
    dims = [0] + list(range(2, dys[0].dim()))
    shape = [1, -1] + [1] * (dys[0].dim() - 2)
    sum_dy = sum(dy.sum(dims) for dy in dys)
    sum_dy_xhat = sum((dy * xh).sum(dims) for dy, xh in zip(dys, x_hats))
    n = sum(dy.numel() // dy.shape[1] for dy in dys)
    dxs = [(weight * invstd).reshape(shape) * (dy - sum_dy.reshape(shape) / n
                                               - xh * sum_dy_xhat.reshape(shape) / n) for dy, xh in zip(dys, x_hats)]
    return dxs, sum_dy_xhat, sum_dy


def rms_norm_backward_by_autograd(x, dy, weight, eps):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    y = F.rms_norm(x, (x.shape[-1],), weight, eps)
    return torch.autograd.grad(y, (x, weight), dy)


def group_norm_backward_by_autograd(x, dy, weight, num_groups, eps):
    x, weight = x.clone().requires_grad_(), weight.clone().requires_grad_()
    bias = torch.zeros_like(weight, requires_grad=True)
    y = F.group_norm(x, num_groups, weight, bias, eps)
    return torch.autograd.grad(y, (x, weight, bias), dy)


NORM = (TORCH_NORM, "without torch's normalization layers")
GRAD = (AUTOGRAD, "without autograd")
CHEATS = [  # (id, checker, cheat, what the guard forbids or None)
    ("ch02-forward-F.batch_norm", ch02.check_batch_norm_forward_channels_last, bn_forward_by_torch, NORM),
    ("ch02-backward-autograd", ch02.check_batch_norm_backward, bn_backward_by_autograd, GRAD),
    ("ch03-module-nn.BatchNorm", ch03.check_batch_norm_module, BatchNormByTorch, NORM),
    ("ch04-running-update-F.batch_norm", ch04.check_running_update, running_update_by_torch, NORM),
    ("ch04-population-nn.BatchNorm", ch04.check_population_stats, population_stats_by_torch, NORM),
    ("ch04-fold-resets-the-reference", ch04.check_fold, fold_by_resetting, None),
    ("ch05-group-norm-F.group_norm", ch05.check_group_norm, group_norm_by_torch, NORM),
    ("ch05-rms-norm-F.rms_norm", ch05.check_rms_norm, rms_norm_by_torch, NORM),
    ("ch07-frozen-F.batch_norm", ch07.check_frozen_bn_forward, frozen_bn_by_torch, NORM),
    ("ch10-rms-norm-backward-autograd", ch10.check_rms_norm_backward_rows, rms_norm_backward_by_autograd, GRAD),
    ("ch10-group-norm-backward-autograd", ch10.check_group_norm_backward, group_norm_backward_by_autograd, GRAD),
]


@pytest.mark.parametrize("checker, cheat", [pytest.param(c, f, id=i, marks=[] if i in FIXED else XFAIL)
                                            for i, c, f, _ in CHEATS])
def test_checker_rejects_the_cheat(checker, cheat):
    assert not checker(cheat, verbose=False)


@pytest.mark.parametrize("checker, cheat", [pytest.param(c, f, id=i) for i, c, f, _ in CHEATS if i not in FIXED])
def test_the_cheat_passes_today(checker, cheat):
    """Not a goal: proves each cheat above is a working answer (so its xfail is about the checker, not a broken
    cheat). When a checker is fixed this test fails for it: drop the pair from here and the xfail above."""
    assert checker(cheat, verbose=False)


@pytest.mark.parametrize("checker, cheat, forbid", [pytest.param(c, f, g, id=i) for i, c, f, g in CHEATS if g])
def test_guard_rejects_the_cheat(checker, cheat, forbid):
    names, why = forbid[0], forbid[1]
    if isinstance(cheat, type):  # a module class: guard its forward
        class Guarded(cheat):
            forward = guard(cheat.forward, *names, why=why)
        cheat = Guarded
    result = checker(guard(cheat, *names, why=why), verbose=False)
    assert not result and "ForbiddenCall" in result.failures[0][1] and why in result.failures[0][1]


def test_the_honest_backward_passes_under_the_autograd_guard():
    assert ch08.check_sync_backward(guard(sync_backward_by_hand, *AUTOGRAD), verbose=False)
