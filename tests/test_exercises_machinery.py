"""The checker machinery that enforces what an exercise asks (normbook.book.exercises): forbidden functions raise,
the checker's private copy survives a student's function that mutates its input, and a hint that prints the
reference formula is caught."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normbook.book.exercises import (AUTOGRAD, TORCH_NORM, ForbiddenCall, changed, forbidding, formula_fragments,
                                     guard, hint_leaks, private_copy, run_check)


def _x():
    return torch.randn(8, 3, dtype=torch.float64)


@pytest.mark.parametrize("call", [
    lambda x: F.batch_norm(x, None, None, training=True),
    lambda x: torch.batch_norm(x, None, None, None, None, True, 0.1, 1e-5, False),
    lambda x: nn.BatchNorm1d(3).double()(x),
    lambda x: F.layer_norm(x, (3,)),
    lambda x: nn.LayerNorm(3).double()(x),
    lambda x: F.group_norm(x.reshape(8, 3, 1), 1),
    lambda x: F.instance_norm(x.reshape(2, 3, 4)),
    lambda x: torch.ops.aten.native_batch_norm(x, None, None, None, None, True, 0.1, 1e-5),
    lambda x: torch.ops.aten.native_layer_norm(x, [3], None, None, 1e-5),
], ids=["F.batch_norm", "torch.batch_norm", "nn.BatchNorm1d", "F.layer_norm", "nn.LayerNorm", "F.group_norm",
        "F.instance_norm", "aten.native_batch_norm", "aten.native_layer_norm"])
def test_torch_norm_is_forbidden_at_every_level(call):
    x = _x()
    with forbidding(*TORCH_NORM, why="by hand"), pytest.raises(ForbiddenCall, match="by hand"):
        call(x)
    call(x)  # restored afterwards


def test_a_name_imported_before_the_check_is_caught_below_it():
    from torch.nn.functional import batch_norm  # bound before the patch: the torch.* / ATen level catches it
    with forbidding(*TORCH_NORM), pytest.raises(ForbiddenCall):
        batch_norm(_x(), None, None, training=True)


def test_hand_written_normalization_is_allowed():
    x = _x()
    with forbidding(*TORCH_NORM, *AUTOGRAD):
        y = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    assert torch.allclose(y, F.batch_norm(x, None, None, training=True))


@pytest.mark.parametrize("call", [
    lambda x: torch.autograd.grad((x ** 2).sum(), x),
    lambda x: (x ** 2).sum().backward(),
    lambda x: torch.autograd.backward((x ** 2).sum()),
    lambda x: torch.autograd.functional.vjp(lambda t: t ** 2, x, torch.ones_like(x)),
], ids=["autograd.grad", "Tensor.backward", "autograd.backward", "functional.vjp"])
def test_autograd_is_forbidden(call):
    x = _x().requires_grad_()
    with forbidding(*AUTOGRAD), pytest.raises(ForbiddenCall):
        call(x)
    call(x)


def test_autograd_imported_under_another_name_is_caught():
    from torch.autograd import grad as g
    x = _x().requires_grad_()
    with forbidding(*AUTOGRAD), pytest.raises(ForbiddenCall):
        g((x ** 2).sum(), x)


def test_book_functions_can_be_forbidden_by_name_and_missing_names_are_skipped():
    import normbook.functional as nf
    with forbidding("normbook.functional.batch_norm", "torch.no_such_function"), pytest.raises(ForbiddenCall):
        nf.batch_norm(_x(), None, None, training=True)
    assert nf.batch_norm(_x(), None, None, training=True).shape == (8, 3)


def test_guard_makes_a_cheating_answer_fail_its_check_with_a_message():
    def cheat(x):
        return F.batch_norm(x, None, None, training=True)

    def honest(x):
        return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)

    def check(fn):
        def case():
            x = _x()
            return None if torch.allclose(fn(x.clone()), F.batch_norm(x, None, None, training=True)) else "differs"
        return run_check("bn", [("x", case)], verbose=False)

    assert check(cheat) and check(honest)  # without the guard both pass: the defect of issue 28
    guarded = check(guard(cheat, *TORCH_NORM, why="computed by hand"))
    assert not guarded and "your function called torch" in guarded.failures[0][1]
    assert check(guard(honest, *TORCH_NORM))
    assert F.batch_norm is not None and F.batch_norm.__name__ == "batch_norm"  # restored


def test_private_copy_catches_a_fold_that_resets_the_module():
    bn = nn.BatchNorm1d(3).double().eval()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    kept = private_copy(bn)
    assert changed(bn, kept, "bn") is None

    def resetting_fold(w, b, module):
        module.reset_running_stats()
        with torch.no_grad():
            module.weight.fill_(1)
            module.bias.zero_()
        return w, b

    resetting_fold(torch.ones(3, 5), torch.zeros(3), bn)
    message = changed(bn, kept, "bn")
    assert message is not None and "running_mean" in message
    # the reference built from the kept copy still differs from the identity the mutated module now is
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.allclose(bn(x), x, atol=1e-4) and not torch.allclose(kept(x), x, atol=1e-2)
    t = torch.ones(3)
    kept_t = private_copy(t)
    t.add_(1)
    assert "changed its x" in changed(t, kept_t, "x")


def test_hint_leaks_finds_a_printed_formula_and_not_a_pointer():
    reference = """
def batch_norm_backward(dy, x, gamma, eps):
    n = x.shape[0]
    r = 1 / torch.sqrt(((x - x.mean(0)) ** 2).mean(0) + eps)
    x_hat = (x - x.mean(0)) * r
    dbeta, dgamma = dy.sum(0), (dy * x_hat).sum(0)
    dx = gamma * r / n * (n * dy - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta
"""
    assert formula_fragments(reference)
    leaky = ("dbeta = sum(dy), dgamma = sum(dy * x_hat) over the batch; dx = gamma * r / n * (n * dy - dbeta - "
             "x_hat * dgamma) with r = 1/sqrt(var + eps)")
    assert hint_leaks(leaky, reference) == ["gamma*r/n*(n*dy-dbeta-x_hat*dgamma)"]
    renamed = "dx = g * inv / N * (N * grad - sum_g - xh * sum_gx)"  # the same formula under other names
    assert hint_leaks(renamed, reference)
    guiding = ("dbeta and dgamma match but dx does not: the gradient also flows through the batch mean and the "
               "batch variance; count the paths from x to the loss in the graph (three)")
    assert hint_leaks(guiding, reference) == []
    assert hint_leaks("anything", "not python (") == []
