"""Chapter 6's checkers: a right implementation passes, a wrong one fails."""
import math

from normbook.book.exercises import ch06


def values_per_statistic(kind, shape, num_groups=None):  # channels last: right
    b, *spatial, c = shape
    hw = math.prod(spatial)
    return {"batch": b * hw, "instance": hw, "group": c // (num_groups or 1) * hw, "layer": c * hw}[kind]


def values_per_statistic_channels_first(kind, shape, num_groups=None):  # reads C as shape[1]: wrong
    b, c, *spatial = shape
    hw = math.prod(spatial)
    return {"batch": b * hw, "instance": hw, "group": c // (num_groups or 1) * hw, "layer": c * hw}[kind]


def values_per_statistic_instance_over_batch(kind, shape, num_groups=None):  # InstanceNorm pools the batch: wrong
    b, *spatial, c = shape
    hw = math.prod(spatial)
    return {"batch": b * hw, "instance": b * hw, "group": c // (num_groups or 1) * hw, "layer": c * hw}[kind]


def values_per_statistic_gn_uses_batch(kind, shape, num_groups=None):  # GN over the batch: wrong
    b, *spatial, c = shape
    hw = math.prod(spatial)
    return {"batch": b * hw, "instance": hw, "group": b * c // (num_groups or 1) * hw, "layer": c * hw}[kind]


def test_values_per_statistic():
    assert ch06.check_values_per_statistic(values_per_statistic, verbose=False)
    for wrong in (values_per_statistic_channels_first, values_per_statistic_instance_over_batch,
                  values_per_statistic_gn_uses_batch, lambda kind, shape, num_groups=None: None):
        assert not ch06.check_values_per_statistic(wrong, verbose=False)


def runs_needed(sigma, target):
    return max(1, math.ceil((sigma / target) ** 2 - 1e-9))


def runs_needed_linear(sigma, target):  # sigma/n instead of sigma/sqrt(n): wrong
    return max(1, math.ceil(sigma / target))


def test_runs_needed():
    assert ch06.check_runs_needed(runs_needed, verbose=False)
    assert not ch06.check_runs_needed(runs_needed_linear, verbose=False)
    assert not ch06.check_runs_needed(lambda s, t: None, verbose=False)
