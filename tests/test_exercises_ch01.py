"""Chapter 1's checkers: a right implementation passes, wrong ones fail."""
import torch
from torch import nn

from normbook.book.exercises import ch01

TYPES = (nn.ReLU, nn.Sigmoid, nn.Tanh)


@torch.no_grad()
def stds_right(model, x):
    stds, handles = [], []
    for m in model.modules():
        if isinstance(m, TYPES):
            handles.append(m.register_forward_hook(lambda mod, i, o: stds.append(o.double().std().item())))
    model(x)
    for h in handles:
        h.remove()
    return stds


@torch.no_grad()
def stds_hooks_left(model, x):  # forgets to remove its hooks
    stds = []
    for m in model.modules():
        if isinstance(m, TYPES):
            m.register_forward_hook(lambda mod, i, o: stds.append(o.double().std().item()))
    model(x)
    return stds


@torch.no_grad()
def stds_on_linear(model, x):  # records the linear layers' outputs
    stds, handles = [], []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(lambda mod, i, o: stds.append(o.double().std().item())))
    model(x)
    for h in handles:
        h.remove()
    return stds


def ratios_right(model):
    return [(m.weight.grad.std() / m.weight.std()).item() for m in model.modules() if isinstance(m, nn.Linear)]


def ratios_norms(model):  # norms instead of standard deviations
    return [(m.weight.grad.norm() / m.weight.norm() * 10).item() for m in model.modules()
            if isinstance(m, nn.Linear)]


def test_layer_stds_checker(capsys):
    assert ch01.check_layer_stds(stds_right)
    assert "PASS" in capsys.readouterr().out
    result = ch01.check_layer_stds(stds_hooks_left)
    assert not result and "hook" in result.failures[0][1]
    assert "FAIL" in capsys.readouterr().out
    assert not ch01.check_layer_stds(stds_on_linear, verbose=False)


def test_grad_to_data_checker(capsys):
    assert ch01.check_grad_to_data(ratios_right)
    assert "PASS" in capsys.readouterr().out
    assert not ch01.check_grad_to_data(ratios_norms)
    assert "FAIL" in capsys.readouterr().out
