"""Chapter 4's checkers: a right implementation passes, a wrong one fails."""
import torch

from normbook.book.exercises import ch04


def _dims(x):
    return (0,) + tuple(range(2, x.dim()))


def update(rm, rv, x, momentum):
    mean, var = x.mean(_dims(x)), x.var(_dims(x))          # unbiased
    return (1 - momentum) * rm + momentum * mean, (1 - momentum) * rv + momentum * var


def update_old_value(rm, rv, x, momentum):                 # rho convention used with alpha: wrong
    mean, var = x.mean(_dims(x)), x.var(_dims(x))
    return momentum * rm + (1 - momentum) * mean, momentum * rv + (1 - momentum) * var


def update_biased(rm, rv, x, momentum):
    mean, var = x.mean(_dims(x)), x.var(_dims(x), unbiased=False)
    return (1 - momentum) * rm + momentum * mean, (1 - momentum) * rv + momentum * var


def test_running_update():
    assert ch04.check_running_update(update, verbose=False)
    assert not ch04.check_running_update(update_old_value, verbose=False)
    assert not ch04.check_running_update(update_biased, verbose=False)


def stats(batches):
    means = torch.stack([b.mean(_dims(b)) for b in batches])
    variances = torch.stack([b.var(_dims(b)) for b in batches])
    return means.mean(0), variances.mean(0)


def stats_pooled(batches):                                  # variance of the pooled data: not what BN stores
    x = torch.cat(batches)
    return x.mean(_dims(x)), x.var(_dims(x))


def test_population_stats():
    assert ch04.check_population_stats(stats, verbose=False)
    assert not ch04.check_population_stats(stats_pooled, verbose=False)


def fold(weight, bias, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = torch.zeros_like(s) if bias is None else bias
    return weight * s.view(-1, *([1] * (weight.dim() - 1))), s * (b - bn.running_mean) + bn.bias


def fold_no_eps(weight, bias, bn):
    s = bn.weight / torch.sqrt(bn.running_var)
    b = torch.zeros_like(s) if bias is None else bias
    return weight * s.view(-1, *([1] * (weight.dim() - 1))), s * (b - bn.running_mean) + bn.bias


def fold_forgets_bias(weight, bias, bn):
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * s.view(-1, *([1] * (weight.dim() - 1))), bn.bias - s * bn.running_mean


def test_fold():
    with torch.no_grad():
        assert ch04.check_fold(fold, verbose=False)
        assert not ch04.check_fold(fold_no_eps, verbose=False)
        assert not ch04.check_fold(fold_forgets_bias, verbose=False)


def fold_then_reset(weight, bias, bn):  # right answer, but it leaves the checker's BatchNorm changed
    out = fold(weight, bias, bn)
    with torch.no_grad():
        bn.running_var.fill_(1.0)
    return out


def fold_switches_to_train(weight, bias, bn):
    out = fold(weight, bias, bn)
    bn.train()
    return out


def test_fold_must_leave_the_module_as_it_was():
    with torch.no_grad():
        result = ch04.check_fold(fold_then_reset, verbose=False)
    assert not result and all("changed its BatchNorm (running_var)" in m for _, m in result.failures)
    with torch.no_grad():
        result = ch04.check_fold(fold_switches_to_train, verbose=False)
    assert not result and "training" in result.failures[0][1]


def update_by_torch(rm, rv, x, momentum):
    torch.nn.functional.batch_norm(x, rm, rv, training=True, momentum=momentum)
    return rm, rv


def test_running_statistics_checkers_forbid_torchs_layers():
    result = ch04.check_running_update(update_by_torch, verbose=False)
    assert not result and all("ForbiddenCall" in m for _, m in result.failures)
    assert ch04.check_running_update.forbids == ch04.check_population_stats.forbids == ("torch-norm",)
    assert ch04.check_running_update(update, verbose=False)  # restored after the check
