r"""Every comparative and outcome word the book states, drawn from an interval over seeds.

One rule for the whole book: a difference between two settings is reported as "higher" or "lower" only when its
95 % confidence interval excludes zero; when the interval covers zero the two are "indistinguishable" at this
number of seeds, and the book says exactly that. The sign of a noisy difference is never a verdict.

- :func:`compare` -- two sets of per-seed results: the mean difference ``a - b``, its confidence interval
  (Welch's t for independent seeds; the paired t when the same seeds and data order pair the runs), the number
  of runs and the verdict ``"higher"``, ``"lower"`` or ``"indistinguishable"``; :meth:`Comparison.phrase`
  renders the words the prose glues.
- :func:`compare_ratio` -- the same on a log scale, for quantities that compare by ratio (times, speeds):
  "1.48x (95 % CI 1.39 to 1.58)"; verdicts ``"higher"`` (ratio above 1), ``"lower"``, ``"indistinguishable"``.
- :func:`compare_to` -- one set of results against a fixed value (a prediction, chance level, 1.0).
- :func:`training_outcome` -- "trains" / "does not train" / "unclear" from per-seed final accuracies, with the
  book's one threshold (:data:`TRAIN_MARGIN` above chance) declared here and nowhere else.
- :func:`mean_sd` -- the ``"0.812 ± 0.010"`` the tables print (sample standard deviation, ddof = 1).

The intervals are scipy's (``scipy.stats.ttest_ind(equal_var=False)``, ``ttest_rel``, ``ttest_1samp`` and their
``confidence_interval``); ``tests/test_stats.py`` checks them against textbook values computed in closed form.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

__all__ = ["ALPHA", "TRAIN_MARGIN", "Comparison", "compare", "compare_ratio", "compare_to", "Outcome",
           "training_outcome", "mean_sd", "mean_std", "mean_ci"]

#: The book's significance level: every interval is a (1 - ALPHA) = 95 % confidence interval.
ALPHA = 0.05

#: "Trains" means: final (validation) accuracy above chance by at least this much, as a lower confidence bound over
#: seeds; "does not train": the upper bound is below it. Declared once, here, for the whole book.
TRAIN_MARGIN = 0.2

VERDICTS = ("higher", "lower", "indistinguishable")


def _values(x, name: str) -> np.ndarray:
    arr = np.asarray(list(x) if not isinstance(x, np.ndarray) else x, dtype=float).ravel()
    if arr.size < 2:
        raise ValueError(f"{name} has {arr.size} value(s): an interval over seeds needs at least 2 runs per "
                         "setting (run more seeds)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf ({arr.tolist()}): a diverged run has no accuracy to "
                         "average; record its outcome (e.g. chance-level accuracy) or leave the run out and say so")
    return arr


def _constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1 (0.05 gives 95 % intervals), got {alpha!r}")


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    return "indistinguishable"


def _quiet(test):
    """Run a scipy test whose input may hold a group without spread (e.g. five runs all at chance, 0.100): scipy
    then warns "Precision loss occurred in moment calculation" although a zero variance is the right answer and
    the interval is computed correctly from the other group. That warning alone is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred in moment calculation",
                                category=RuntimeWarning)
        return test()


def _fmt(x: float, digits: int) -> str:
    return f"{x:.{digits}f}".replace("-", "\u2212")


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`, :func:`compare_ratio` or :func:`compare_to`.

    ``difference`` is ``mean(a) - mean(b)`` (for :func:`compare_ratio` the ratio of geometric means ``a / b``, and
    ``low``/``high`` bound the ratio); ``low``/``high`` is its (1 - alpha) confidence interval; ``verdict`` is
    ``"higher"`` when the interval lies above 0 (above 1 for a ratio), ``"lower"`` when below, else
    ``"indistinguishable"``. ``n_a``/``n_b`` are the numbers of runs (``n_b`` is 0 against a fixed value).
    """
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    n_a: int
    n_b: int
    paired: bool
    alpha: float
    verdict: str
    scale: str = "difference"  # "difference" or "ratio"
    sample: str = "seeds"  # what one run is, for the phrase: "seeds", "rounds", "test images", "batches"

    @property
    def confidence(self) -> int:
        return round(100 * (1 - self.alpha))

    @property
    def runs(self) -> str:
        """``"5 seeds"``, ``"5 and 4 seeds"`` or ``"5 paired seeds"`` (``sample`` names what was repeated:
        ``"9 paired rounds"`` of a timing, ``"10,000 paired test images"``)."""
        if self.paired:
            return f"{self.n_a:,} paired {self.sample}"
        if self.n_b == 0 or self.n_a == self.n_b:
            return f"{self.n_a:,} {self.sample}"
        return f"{self.n_a:,} and {self.n_b:,} {self.sample}"

    def word(self, higher: str = "higher than", lower: str = "lower than",
             indistinguishable: str = "indistinguishable from") -> str:
        """The verdict in the caller's words, e.g. ``word("faster than", "slower than", "as fast as")``."""
        return {"higher": higher, "lower": lower, "indistinguishable": indistinguishable}[self.verdict]

    def interval(self, digits: int = 3, unit: str = "") -> str:
        """``"difference 0.050, 95 % CI 0.020 to 0.080, 5 seeds"`` (for a ratio: ``"1.48×, 95 % CI 1.39 to
        1.58, 7 paired seeds"``)."""
        if self.scale == "ratio":
            head = f"{self.difference:.{digits}f}\u00d7"
            lo, hi = f"{self.low:.{digits}f}", f"{self.high:.{digits}f}"
        else:
            head = f"difference {_fmt(self.difference, digits)}{unit}"
            lo, hi = _fmt(self.low, digits) + unit, _fmt(self.high, digits) + unit
        return f"{head}, {self.confidence} % CI {lo} to {hi}, {self.runs}"

    def phrase(self, than: str = "", *, digits: int = 3, unit: str = "", higher: str = "higher than",
               lower: str = "lower than", indistinguishable: str = "indistinguishable from") -> str:
        """The words the prose glues: ``"higher than LeNet (difference 0.050, 95 % CI 0.020 to 0.080, 5 seeds)"``
        or ``"indistinguishable from LeNet (difference 0.004, 95 % CI −0.010 to 0.018, 5 seeds)"``."""
        words = self.word(higher, lower, indistinguishable)
        target = f" {than}" if than else ""
        return f"{words}{target} ({self.interval(digits, unit)})"

    def __str__(self) -> str:
        return f"{self.verdict} ({self.interval()})"


def compare(a: Sequence[float], b: Sequence[float], *, paired: bool = False, alpha: float = ALPHA,
            sample: str = "seeds") -> Comparison:
    """Compare per-seed results ``a`` and ``b`` (e.g. final validation accuracies of two settings).

    ``paired=False``: independent runs; Welch's t interval for ``mean(a) - mean(b)`` (no equal-variance
    assumption). ``paired=True``: ``a[i]`` and ``b[i]`` share seed ``i`` (same initial weights or the same data
    order), so the interval is the one-sample t interval of the differences ``a[i] - b[i]`` (often much narrower).
    At least 2 runs per setting; NaN or inf is refused (say what a diverged run counts as). ``sample`` names what
    the values are repeated over in the phrase (``"seeds"``; ``"test images"`` for per-image correctness of two
    models on one test set, ``"batches"``).
    """
    from scipy import stats as st

    _check_alpha(alpha)
    a, b = _values(a, "a"), _values(b, "b")
    diff = float(a.mean() - b.mean())
    if paired:
        if a.size != b.size:
            raise ValueError(f"a paired comparison needs one b per a (same seeds), got {a.size} and {b.size} runs")
        d = a - b
        if _constant(d):  # no spread at all: the interval is the value itself (scipy would return NaN)
            diff = low = high = float(d[0])
        else:
            low, high = _quiet(lambda: st.ttest_rel(a, b).confidence_interval(1 - alpha))
    else:
        if _constant(a) and _constant(b):  # no spread at all: the interval is the difference itself
            diff = low = high = float(a[0] - b[0])
        else:
            low, high = _quiet(lambda: st.ttest_ind(a, b, equal_var=False).confidence_interval(1 - alpha))
    low, high = float(low), float(high)
    return Comparison(float(a.mean()), float(b.mean()), diff, low, high, int(a.size), int(b.size), paired, alpha,
                      _verdict(low, high), sample=sample)


def compare_ratio(a: Sequence[float], b: Sequence[float], *, paired: bool = True,
                  alpha: float = ALPHA, sample: str = "seeds") -> Comparison:
    """Compare positive per-run quantities by their ratio ``a / b`` (times, throughputs): :func:`compare` on
    ``log a`` and ``log b``, exponentiated. ``difference`` is the ratio of geometric means, ``low``/``high`` its
    interval; the verdict is ``"higher"`` when the whole interval is above 1. ``paired=True`` (the default) fits
    timings measured interleaved, round by round (:func:`normbook.timing.compare_times`; pass
    ``sample="rounds"`` so the phrase says what was repeated)."""
    a_arr, b_arr = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if np.any(a_arr <= 0) or np.any(b_arr <= 0):
        raise ValueError("compare_ratio needs positive values (times, speeds); got a value <= 0")
    c = compare(np.log(a_arr), np.log(b_arr), paired=paired, alpha=alpha)
    return Comparison(float(np.exp(np.log(a_arr).mean())), float(np.exp(np.log(b_arr).mean())),
                      math.exp(c.difference), math.exp(c.low), math.exp(c.high), c.n_a, c.n_b, paired, alpha,
                      c.verdict, scale="ratio", sample=sample)


def compare_to(a: Sequence[float], value: float, *, alpha: float = ALPHA, sample: str = "seeds") -> Comparison:
    """Compare per-seed results with a fixed ``value`` (a prediction, chance level): the one-sample t interval
    of ``mean(a) - value``; the verdict says whether the results lie above, below or are indistinguishable from
    it."""
    from scipy import stats as st

    _check_alpha(alpha)
    a = _values(a, "a")
    diff = float(a.mean() - value)
    if _constant(a):
        diff = low = high = float(a[0] - value)
    else:
        low, high = _quiet(lambda: st.ttest_1samp(a, value).confidence_interval(1 - alpha))
        low, high = float(low) - value, float(high) - value
    return Comparison(float(a.mean()), float(value), diff, low, high, int(a.size), 0, False, alpha,
                      _verdict(low, high), sample=sample)


def mean_ci(values: Sequence[float], alpha: float = ALPHA) -> tuple:
    """``(mean, low, high)``: the mean of ``values`` and its t confidence interval (degenerate without spread)."""
    c = compare_to(values, 0.0, alpha=alpha)
    return c.mean_a, c.low, c.high


@dataclass(frozen=True)
class Outcome:
    """The result of :func:`training_outcome`: ``verdict`` is ``"trains"``, ``"does not train"`` or
    ``"unclear"``; ``mean``, ``low``, ``high`` the mean final accuracy and its interval; ``threshold`` =
    chance + margin; ``n`` runs."""
    verdict: str
    mean: float
    low: float
    high: float
    threshold: float
    n: int
    alpha: float

    @property
    def trains(self) -> bool:
        return self.verdict == "trains"

    def phrase(self, digits: int = 3) -> str:
        """``"trains (accuracy 0.812, 95 % CI 0.80 to 0.82 over 5 seeds, threshold 0.300)"``."""
        return (f"{self.verdict} (accuracy {self.mean:.{digits}f}, {round(100 * (1 - self.alpha))} % CI "
                f"{self.low:.{digits}f} to {self.high:.{digits}f} over {self.n} seeds; threshold "
                f"{self.threshold:.{digits}f})")

    def __str__(self) -> str:
        return self.phrase()


def training_outcome(accuracies: Sequence[float], *, chance: float, margin: Optional[float] = None,
                     alpha: float = ALPHA) -> Outcome:
    """Whether a setting trains, from its per-seed final accuracies (on the validation split when tuning).

    The book's rule: **trains** when the lower bound of the (1 - alpha) interval of the mean accuracy is at
    least ``chance + margin``; **does not train** when the upper bound is below it; **unclear** otherwise (more
    seeds, or a longer run, would decide). ``margin`` defaults to :data:`TRAIN_MARGIN` (0.2: twenty points
    above chance, e.g. 0.3 for Fashion-MNIST's ten classes). Say "within N epochs" wherever the budget decides.
    """
    if not 0 <= chance < 1:
        raise ValueError(f"chance is the accuracy of guessing, in [0, 1) (0.1 for ten classes), got {chance!r}")
    margin = TRAIN_MARGIN if margin is None else margin
    accuracies = list(accuracies)
    mean, low, high = mean_ci(accuracies, alpha)
    threshold = chance + margin
    verdict = "trains" if low >= threshold else ("does not train" if high < threshold else "unclear")
    return Outcome(verdict, mean, low, high, threshold, len(accuracies), alpha)


def mean_std(mean: float, std: Optional[float], digits: int = 3) -> str:
    """``"0.812 ± 0.010"`` from a mean and a standard deviation; the std part is left out when it is None or NaN
    (a single run)."""
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} \u00b1 {std:.{digits}f}"


def mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``"0.812 ± 0.010"``: mean and sample standard deviation (ddof = 1) of ``values``; one value prints alone."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        raise ValueError("no values to summarize")
    return mean_std(float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else None, digits)
