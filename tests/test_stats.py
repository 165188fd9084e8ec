"""normbook.book.stats against textbook values and closed-form intervals (the oracle is never the module itself).

The textbook example is Student's sleep data (Cushny & Peebles 1905, as analysed by "Student" 1908 and shipped
with R as ``sleep``): extra hours of sleep of ten patients under two drugs. R's ``t.test`` on it gives, paired:
mean difference -1.58, t = -4.0621, df = 9, 95 % CI (-2.4598858, -0.7001142); unpaired Welch: t = -1.8608,
df = 17.776, 95 % CI (-3.3654832, 0.2054832). The same data are "lower" paired and "indistinguishable" unpaired.
"""
import math

import numpy as np
import pytest
from scipy import stats as st

from normbook.book import stats

DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_matches_r_on_the_sleep_data():
    c = stats.compare(DRUG_1, DRUG_2, paired=True)
    assert c.difference == pytest.approx(-1.58)
    assert (c.low, c.high) == pytest.approx((-2.4598858, -0.7001142), abs=1e-6)
    assert c.verdict == "lower" and c.paired and c.n_a == c.n_b == 10


def test_welch_matches_r_on_the_sleep_data():
    c = stats.compare(DRUG_1, DRUG_2)
    assert c.difference == pytest.approx(-1.58)
    assert (c.low, c.high) == pytest.approx((-3.3654832, 0.2054832), abs=1e-6)
    assert c.verdict == "indistinguishable"  # the interval covers 0


def _welch_closed_form(a, b, alpha=0.05):
    a, b = np.asarray(a, float), np.asarray(b, float)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))  # Welch-Satterthwaite
    half = st.t.ppf(1 - alpha / 2, df) * math.sqrt(va + vb)
    d = a.mean() - b.mean()
    return d - half, d + half


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_welch_interval_is_the_closed_form(seed, alpha):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.8, 0.02, size=5), rng.normal(0.78, 0.05, size=7)
    c = stats.compare(a, b, alpha=alpha)
    assert (c.low, c.high) == pytest.approx(_welch_closed_form(a, b, alpha), rel=1e-10)
    assert c.confidence == round(100 * (1 - alpha))


def test_paired_is_the_one_sample_interval_of_the_differences():
    rng = np.random.default_rng(1)
    base = rng.normal(0.8, 0.05, size=6)
    a, b = base + 0.01 + rng.normal(0, 0.002, 6), base
    d = a - b
    half = st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    paired = stats.compare(a, b, paired=True)
    assert (paired.low, paired.high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-10)
    # the shared seed-to-seed spread cancels: paired sees the 0.01 gain, unpaired does not
    assert paired.verdict == "higher" and stats.compare(a, b).verdict == "indistinguishable"


def test_an_interval_that_must_cover_zero():
    a = [0.80, 0.82, 0.78, 0.81, 0.79]
    c = stats.compare(a, list(reversed(a)))  # the same values: difference exactly 0
    assert c.difference == 0 and c.low < 0 < c.high and c.verdict == "indistinguishable"


def test_separated_groups_are_higher_and_lower():
    a, b = [0.90, 0.91, 0.92], [0.50, 0.52, 0.51]
    assert stats.compare(a, b).verdict == "higher" and stats.compare(b, a).verdict == "lower"


def test_no_spread_gives_an_exact_interval():
    c = stats.compare([0.1, 0.1, 0.1], [0.1, 0.1])
    assert (c.low, c.high, c.verdict) == (0.0, 0.0, "indistinguishable")
    c = stats.compare([0.3, 0.3], [0.1, 0.1])
    assert c.low == c.high == pytest.approx(0.2) and c.verdict == "higher"
    c = stats.compare([1.0, 2.0], [0.5, 1.5], paired=True)  # every difference is 0.5
    assert c.low == c.high == pytest.approx(0.5) and c.verdict == "higher"


@pytest.mark.parametrize("a, b, kwargs, match", [
    ([0.5], [0.4, 0.3], {}, "at least 2 runs"),
    ([0.5, float("nan")], [0.4, 0.3], {}, "NaN"),
    ([0.5, 0.6, 0.7], [0.4, 0.3], {"paired": True}, "paired"),
    ([0.5, 0.6], [0.4, 0.3], {"alpha": 1.5}, "alpha"),
])
def test_bad_input_is_named(a, b, kwargs, match):
    with pytest.raises(ValueError, match=match):
        stats.compare(a, b, **kwargs)


def test_phrase_and_word():
    c = stats.compare([0.90, 0.91, 0.92], [0.50, 0.52, 0.51])
    assert c.phrase("LeNet").startswith("higher than LeNet (difference 0.400, 95 % CI ")
    assert c.phrase("LeNet").endswith(", 3 seeds)")
    assert c.word("beats", "loses to", "ties with") == "beats"
    same = stats.compare([0.80, 0.82, 0.78], [0.81, 0.79, 0.80])
    assert same.phrase("GN").startswith("indistinguishable from GN (difference ")
    assert "\u2212" in same.interval() or same.low >= 0  # negative bounds print with a minus sign
    assert stats.compare([1, 2, 3], [1, 2, 3, 4]).runs == "3 and 4 seeds"
    assert stats.compare([1, 2, 3], [2, 2, 4], paired=True).runs == "3 paired seeds"


def test_sample_names_what_was_repeated():
    right_a = [1.0] * 600 + [0.0] * 400          # per-image correctness of two models on one test set
    right_b = [1.0] * 500 + [0.0] * 500
    c = stats.compare(right_a, right_b, paired=True, sample="test images")
    assert c.phrase("B").endswith(", 1,000 paired test images)") and c.verdict == "higher"
    r = stats.compare_ratio([2.0, 2.1, 1.9], [1.0, 1.1, 0.9], sample="rounds")
    assert r.interval().endswith("3 paired rounds")
    assert stats.compare_to([0.8, 0.82], 0.1, sample="batches").runs == "2 batches"
    assert stats.compare([1, 2], [3, 4]).sample == "seeds"  # the default is unchanged


def test_ratio_is_the_exponentiated_log_interval():
    a, b = [2.0, 2.2, 1.9, 2.1], [1.0, 1.05, 0.98, 1.02]
    r = stats.compare_ratio(a, b)
    d = np.log(a) - np.log(b)
    half = st.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert r.difference == pytest.approx(math.exp(d.mean()))
    assert (r.low, r.high) == pytest.approx((math.exp(d.mean() - half), math.exp(d.mean() + half)))
    assert r.verdict == "higher" and r.scale == "ratio" and "\u00d7" in r.interval()
    with pytest.raises(ValueError, match="positive"):
        stats.compare_ratio([1.0, 0.0], [1.0, 1.0])


def test_compare_to_a_value():
    a = [0.11, 0.09, 0.10, 0.12, 0.08]  # chance-level accuracies
    c = stats.compare_to(a, 0.1)
    half = st.t.ppf(0.975, 4) * np.std(a, ddof=1) / math.sqrt(5)
    assert (c.low, c.high) == pytest.approx((np.mean(a) - 0.1 - half, np.mean(a) - 0.1 + half))
    assert c.verdict == "indistinguishable" and c.n_b == 0 and c.runs == "5 seeds"
    assert stats.compare_to([0.8, 0.82, 0.81], 0.1).verdict == "higher"


def test_training_outcome_rule():
    assert stats.TRAIN_MARGIN == 0.2
    trains = stats.training_outcome([0.80, 0.82, 0.81], chance=0.1)
    assert trains.verdict == "trains" and trains.trains and trains.threshold == pytest.approx(0.3)
    stuck = stats.training_outcome([0.10, 0.10, 0.10], chance=0.1)
    assert stuck.verdict == "does not train" and not stuck.trains
    # one seed at 0.526 and two at chance: the interval straddles the threshold
    assert stats.training_outcome([0.526, 0.10, 0.11], chance=0.1).verdict == "unclear"
    assert stats.training_outcome([0.33, 0.34, 0.32], chance=0.1, margin=0.3).verdict == "does not train"
    assert "over 3 seeds" in trains.phrase()
    with pytest.raises(ValueError, match="chance"):
        stats.training_outcome([0.5, 0.5], chance=10)


def test_mean_sd_and_mean_std():
    assert stats.mean_sd([0.80, 0.82]) == f"0.810 \u00b1 {np.std([0.80, 0.82], ddof=1):.3f}"
    assert stats.mean_sd([0.5]) == "0.500"
    assert stats.mean_std(0.81234, 0.0101) == "0.812 \u00b1 0.010"
    assert stats.mean_std(0.5, float("nan")) == "0.500"
    with pytest.raises(ValueError):
        stats.mean_sd([])


def test_a_group_without_spread_gives_an_interval_without_a_warning():
    """Five runs that all stay at chance (0.1 each) against five that train: scipy warns about "precision loss"
    for the constant group, although its zero variance is right; the comparison is Welch's interval with the
    other group's spread alone (n_a - 1 degrees of freedom) and prints nothing."""
    import warnings
    stuck, trained = [0.1] * 5, [0.80, 0.79, 0.78, 0.79, 0.785]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = stats.compare(trained, stuck)
    half = st.t.ppf(0.975, 4) * np.std(trained, ddof=1) / math.sqrt(5)
    assert (c.low, c.high) == pytest.approx((np.mean(trained) - 0.1 - half, np.mean(trained) - 0.1 + half))
    assert c.verdict == "higher"
