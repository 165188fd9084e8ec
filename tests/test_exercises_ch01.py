"""Chapter 1's checkers: a right implementation passes, wrong ones fail."""
import torch
from torch import nn

from normbook.book.exercises import ch01

TYPES = (nn.ReLU, nn.Sigmoid, nn.Tanh)


def _stds(model, x, types=TYPES, double=True, inputs=True):
    stds, handles = [], []
    for m in model.modules():
        if isinstance(m, types):
            handles.append(m.register_forward_hook(
                lambda mod, i, o: stds.append(((i[0] if inputs else o).double() if double
                                               else (i[0] if inputs else o)).std().item())))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return stds


def stds_right(model, x):
    return _stds(model, x)


def stds_float32(model, x):  # input.std() in the input's own precision
    return _stds(model, x, double=False)


def stds_of_outputs(model, x):  # the page's measurement: what leaves the nonlinearity
    return _stds(model, x, inputs=False)


@torch.no_grad()
def stds_hooks_left(model, x):  # forgets to remove its hooks
    stds = []
    for m in model.modules():
        if isinstance(m, TYPES):
            m.register_forward_pre_hook(lambda mod, i: stds.append(i[0].double().std().item()))
    model(x)
    return stds


def stds_on_linear(model, x):  # records the linear layers' inputs
    return _stds(model, x, types=nn.Linear)


def test_preactivation_stds_checker(capsys):
    assert ch01.check_preactivation_stds(stds_right)
    assert "PASS" in capsys.readouterr().out
    result = ch01.check_preactivation_stds(stds_hooks_left)
    assert not result and "hook" in result.failures[0][1]
    assert "FAIL" in capsys.readouterr().out
    assert not ch01.check_preactivation_stds(stds_on_linear, verbose=False)
    assert not ch01.check_preactivation_stds(stds_of_outputs, verbose=False)


def test_preactivation_stds_checker_catches_a_float32_std():
    """Only the case built to overflow tells a float32 std from a float64 one: there the float32 sum of a layer's
    values overflows (std() computes the mean from it) while every value is finite."""
    result = ch01.check_preactivation_stds(stds_float32, verbose=False)
    assert not result and len(result.failures) == 1
    label, message = result.failures[0]
    assert "float32 max" in label and "is inf" in message and "precision" in message


def update_right(model, step):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    before = [m.weight.detach().clone() for m in linears]
    step()
    return [((m.weight.detach() - b).std() / b.std()).item() for m, b in zip(linears, before)]


def update_from_gradient(model, step):  # grad/data: right for SGD up to lr, wrong for Adam, and lr is unknown
    out = [(m.weight.grad.std() / m.weight.std()).item() for m in model.modules() if isinstance(m, nn.Linear)]
    step()
    return out


def update_twice(model, step):  # two steps
    step()
    return update_right(model, step)


def test_update_to_data_checker(capsys):
    assert ch01.check_update_to_data(update_right)
    assert "PASS" in capsys.readouterr().out
    assert not ch01.check_update_to_data(update_from_gradient)
    assert "FAIL" in capsys.readouterr().out
    result = ch01.check_update_to_data(update_twice, verbose=False)
    assert not result and "2 times" in result.failures[0][1]
