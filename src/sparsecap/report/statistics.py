"""Interval estimates and tests over seeds: what a verdict needs beyond mean ± std.

Seeds are few (3 to 5), so intervals use Student's t, differences use Welch's test (the two points'
seeds have unequal spreads, and a sparse point's spread is often the larger), and the many points of
one curve are Holm-corrected so that a long width list does not manufacture a significant point.
Pure functions over plain numbers; SciPy does the distributions.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
SIGNIFICANCE_LEVEL = 1 - CONFIDENCE
FRACTION = (0.0, 1.0)
"""Where an accuracy or a recall lies."""
UNBOUNDED = (-math.inf, math.inf)

Point = TypeVar("Point")


def best_by_mean(points: Sequence[Point], mean: Callable[[Point], float], higher_is_better: bool) -> Point | None:
    """The point with the best mean (the lowest where lower is better), the first of a tie; None for none.
    A curve's sweet spot, for its figure and its verdict alike: points come dense to sparse, so a tie goes
    to the densest."""
    sign = 1.0 if higher_is_better else -1.0
    return max(points, key=lambda point: sign * mean(point), default=None)


def observed(values: Iterable[float | None]) -> np.ndarray:
    """The seeds that have a value: None and NaN are missing seeds, not zeros. An infinity is kept: it is a
    measurement (a loss that overflowed under weight noise), and leaving it out as missing would make the
    point look more robust than it is."""
    array = np.array([math.nan if value is None else float(value) for value in values], dtype=float)
    return array[~np.isnan(array)]


def mean_of(sample: np.ndarray) -> float:
    """The mean, NaN for no values; infinite when a value is, and NaN when both infinities are."""
    with np.errstate(invalid="ignore"):
        return float(sample.mean()) if sample.size else math.nan


def observed_mean(values: Iterable[float | None]) -> float:
    """The mean over the seeds that have a value (`observed`, `mean_of`)."""
    return mean_of(observed(values))


def mean_spread_count(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation and count of the seeds that have a value: (NaN, NaN, 0) for none, a
    spread of 0 for one seed, and an infinite mean with a NaN spread when a value is infinite."""
    sample = observed(values)
    if sample.size == 0:
        return math.nan, math.nan, 0
    if not np.isfinite(sample).all():
        return mean_of(sample), math.nan, int(sample.size)
    return float(sample.mean()), float(sample.std(ddof=1)) if sample.size > 1 else 0.0, int(sample.size)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its t-interval; low/high are NaN with fewer than two seeds."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def interval_of(mean: float, std: float, n: int) -> Interval:
    """The Student-t interval from a mean, a sample standard deviation and a seed count."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def within(interval: Interval, low: float, high: float) -> Interval:
    """The interval cut to [low, high], where the mean must lie (an accuracy in [0, 1]). A t-interval over a few
    seeds can reach past it (±12.7 standard errors with 2 seeds); the cut one still holds the true mean
    whenever the whole one does, so its coverage is unchanged and it no longer shows impossible values."""
    return dataclasses.replace(interval, low=_clamp(interval.low, low, high), high=_clamp(interval.high, low, high))


def _clamp(value: float, low: float, high: float) -> float:
    """`value` within [low, high]; NaN (an undefined interval end) stays NaN."""
    return min(max(value, low), high)


def t_interval(values: Iterable[float | None]) -> Interval:
    """Mean and two-sided Student-t confidence interval over seeds; an infinite value makes the mean infinite
    and leaves the interval undefined."""
    return interval_of(*mean_spread_count(values))


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its Welch confidence interval and two-sided p-value.

    NaN interval and p-value when either side has fewer than two seeds; p is 1 when both sides have
    no spread and equal means, 0 when they have no spread and differ (a deterministic difference).
    A side with an infinite value is tested by rank, without an interval (`welch_difference`).
    """

    estimate: float
    low: float
    high: float
    p_value: float
    n_a: int
    n_b: int

    @property
    def testable(self) -> bool:
        return math.isfinite(self.p_value)


def difference_within(difference: Difference, low: float, high: float) -> Difference:
    """The difference's interval cut to what a difference of two means in [low, high] can be (`within`)."""
    span = high - low
    return dataclasses.replace(difference, low=_clamp(difference.low, -span, span),
                               high=_clamp(difference.high, -span, span))


def welch_difference(a: Iterable[float | None], b: Iterable[float | None]) -> Difference:
    """Welch's unequal-variance t-test of a against b, with the interval of the difference of means.

    A side with an infinite value (a loss that overflowed under weight noise) has an infinite mean whatever
    its other seeds, and no t-interval. The seeds are then compared by rank (Mann-Whitney, two-sided), an
    infinity above every finite value: one overflowed seed among five is no evidence on its own, all five
    against five finite ones is (p = 0.0075). The interval stays undefined (NaN); the estimate is the
    difference of the means, infinite or (both sides infinite) NaN."""
    first, second = observed(a), observed(b)
    if first.size == 0 or second.size == 0:
        return Difference(math.nan, math.nan, math.nan, math.nan, int(first.size), int(second.size))
    estimate = mean_of(first) - mean_of(second)
    if first.size < 2 or second.size < 2:
        return Difference(estimate, math.nan, math.nan, math.nan, int(first.size), int(second.size))
    if not (np.isfinite(first).all() and np.isfinite(second).all()):
        p_value = float(stats.mannwhitneyu(first, second, alternative="two-sided").pvalue)
        return Difference(estimate, math.nan, math.nan, p_value, int(first.size), int(second.size))
    if np.ptp(first) == 0 and np.ptp(second) == 0:
        # No spread: the t statistic is 0/0 or ±inf, so decide directly. Tested on the values themselves, as the
        # mean of 7 copies of 0.1135 is not 0.1135 to the last bit: variance and difference then come out at
        # 1e-34 and 1e-17, and the t-test finds a "significant" difference between identical seeds.
        estimate = float(first[0] - second[0])
        return Difference(estimate, estimate, estimate, 1.0 if estimate == 0 else 0.0, int(first.size), int(second.size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(first, second, equal_var=False)
        interval = result.confidence_interval(CONFIDENCE)
    return Difference(estimate, float(interval.low), float(interval.high), float(result.pvalue),
                      int(first.size), int(second.size))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given; NaN (untestable) entries stay NaN and do
    not count towards the number of tests.

    SciPy has no Holm step-down (only Benjamini-Hochberg), hence the few lines here.
    """
    testable = [index for index, value in enumerate(p_values) if math.isfinite(value)]
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, index in enumerate(sorted(testable, key=lambda position: p_values[position])):
        running = max(running, min(1.0, (len(testable) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
