"""The interval estimates and tests of the claims, checked against SciPy (and Holm against a worked example)."""

import math

import numpy as np
import pytest
from scipy import stats

from sparsecap.report.aggregate import Stat
from sparsecap.report.statistics import (
    Difference,
    best_by_mean,
    difference_within,
    holm,
    t_interval,
    welch_difference,
    within,
)

SAMPLE = [0.91, 0.93, 0.90, 0.94, 0.92]
OTHER = [0.85, 0.89, 0.80, 0.88]


def test_t_interval_matches_scipy():
    interval = t_interval(SAMPLE)
    low, high = stats.t.interval(0.95, len(SAMPLE) - 1, loc=np.mean(SAMPLE), scale=stats.sem(SAMPLE))
    assert interval.mean == pytest.approx(np.mean(SAMPLE))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert interval.n == 5 and interval.defined


def test_t_interval_leaves_out_missing_seeds_and_needs_two():
    assert t_interval([0.5, None, math.nan, 0.7]).n == 2
    single = t_interval([0.5])
    assert single.mean == 0.5 and not single.defined
    assert t_interval([]).n == 0


def test_welch_difference_matches_scipy():
    difference = welch_difference(SAMPLE, OTHER)
    expected = stats.ttest_ind(SAMPLE, OTHER, equal_var=False)
    interval = expected.confidence_interval(0.95)
    assert difference.estimate == pytest.approx(np.mean(SAMPLE) - np.mean(OTHER))
    assert difference.p_value == pytest.approx(expected.pvalue)
    assert (difference.low, difference.high) == pytest.approx((interval.low, interval.high))
    # Welch, not Student: the pooled test gives another p-value on these unequal spreads.
    assert difference.p_value != pytest.approx(stats.ttest_ind(SAMPLE, OTHER).pvalue, rel=1e-3)


def test_welch_difference_without_spread_or_seeds():
    assert welch_difference([1.0, 1.0], [1.0, 1.0]).p_value == 1.0
    assert welch_difference([1.0, 1.0], [0.5, 0.5]).p_value == 0.0
    small = welch_difference([0.9, 0.9, 0.9], [0.895, 0.895])  # deterministic, however small
    assert (small.estimate, small.low, small.high, small.p_value) == pytest.approx((0.005, 0.005, 0.005, 0.0))
    assert not welch_difference([1.0], [0.5, 0.6]).testable


def test_one_side_without_spread_is_still_welchs_test():
    """Only both sides without spread are decided directly: with one side's spread, Welch-Satterthwaite leaves that
    side's standard error and n - 1 degrees of freedom."""
    spread = [0.45, 0.5, 0.52]
    difference = welch_difference([0.5, 0.5, 0.5], spread)
    error = float(np.std(spread, ddof=1)) / math.sqrt(3)
    estimate = 0.5 - float(np.mean(spread))
    assert difference.p_value == pytest.approx(2 * stats.t.sf(abs(estimate) / error, 2))
    assert 0.05 < difference.p_value < 1
    half = stats.t.ppf(0.975, 2) * error
    assert (difference.low, difference.high) == pytest.approx((estimate - half, estimate + half))


def test_identical_seeds_in_unequal_numbers_do_not_differ():
    """Seven models at MNIST's chance accuracy against five: their means differ in the last bit."""
    difference = welch_difference([0.1135] * 7, [0.1135] * 5)
    assert (difference.estimate, difference.p_value) == (0.0, 1.0)


def test_holm_worked_example():
    # Holm (1979) step-down: sorted p 0.01, 0.02, 0.03, 0.04 times 4, 3, 2, 1, made monotone.
    assert holm([0.04, 0.01, 0.03, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.6, 0.7, 0.01]) == pytest.approx([1.0, 1.0, 0.03])  # never above 1


def test_holm_skips_untestable_points():
    adjusted = holm([0.01, math.nan, 0.04])
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.04)
    assert math.isnan(adjusted[1])


def test_a_point_statistic_gives_the_same_interval():
    assert Stat.of(SAMPLE).interval == t_interval(SAMPLE)


def test_the_best_point_by_mean_follows_the_measure_direction_and_a_tie_goes_to_the_first():
    points = [("dense", 0.5), ("half", 0.7), ("quarter", 0.7), ("eighth", 0.2)]
    assert best_by_mean(points, lambda point: point[1], higher_is_better=True) == ("half", 0.7)
    assert best_by_mean(points, lambda point: point[1], higher_is_better=False) == ("eighth", 0.2)
    assert best_by_mean([], lambda point: point[1], higher_is_better=True) is None


def test_an_interval_is_cut_to_where_the_mean_can_lie_and_keeps_its_mean():
    wide = t_interval([0.05, 0.95])  # two seeds: ±12.7 standard errors, far past [0, 1]
    assert wide.low < 0 and wide.high > 1
    cut = within(wide, 0.0, 1.0)
    assert (cut.mean, cut.low, cut.high, cut.n) == (wide.mean, 0.0, 1.0, 2)
    narrow = t_interval(SAMPLE)
    assert within(narrow, 0.0, 1.0) == narrow
    assert within(narrow, -math.inf, math.inf) == narrow
    assert not within(t_interval([0.5]), 0.0, 1.0).defined  # one seed stays undefined, not [0, 1]


def test_a_difference_of_two_fractions_is_cut_to_plus_minus_one():
    wide = welch_difference([0.1, 0.9], [0.95, 0.97])
    assert wide.low < -1 and wide.high > 1
    cut = difference_within(wide, 0.0, 1.0)
    assert (cut.low, cut.high) == (-1.0, 1.0)
    assert (cut.estimate, cut.p_value, cut.n_a, cut.n_b) == (wide.estimate, wide.p_value, 2, 2)
    one_sided = difference_within(Difference(0.5, 0.2, 1.4, 0.01, 3, 3), 0.0, 1.0)
    assert (one_sided.low, one_sided.high) == (0.2, 1.0)


def test_an_infinite_seed_is_a_value_not_a_missing_seed():
    """A loss that overflowed under weight noise: dropping it as missing would make the point look robust."""
    overflowed = t_interval([0.4, math.inf, None, 0.5])
    assert (overflowed.mean, overflowed.n, overflowed.defined) == (math.inf, 3, False)
    stat = Stat.of([0.4, math.inf, math.nan])
    assert (stat.mean, stat.n, stat.format()) == (math.inf, 2, "∞")
    assert not stat.present  # nothing to draw, but the table says ∞
    assert Stat.of([0.4, 0.6]).format() == "0.500 ± 0.141"


def test_seeds_with_an_infinite_value_are_compared_by_rank_not_decided_by_one_overflow():
    """An overflowed loss is above every finite one, but one such seed is no evidence on its own."""
    one = welch_difference([0.55, 0.6, 0.7, 0.8, 0.65], [0.5, 0.5, math.inf, 0.5, 0.5])
    assert one.estimate == -math.inf and math.isnan(one.low) and math.isnan(one.high)
    assert one.p_value == pytest.approx(stats.mannwhitneyu([0.55, 0.6, 0.7, 0.8, 0.65], [0.5, 0.5, math.inf, 0.5, 0.5],
                                                           alternative="two-sided").pvalue) and one.p_value > 0.05
    every = welch_difference([math.inf] * 5, [0.5, 0.6, 0.7, 0.55, 0.65])
    assert every.estimate == math.inf and 0 < every.p_value < 0.01
    assert welch_difference([math.inf] * 2, [0.5, 0.6]).p_value > 0.05  # two seeds each cannot show it
    both = welch_difference([math.inf, 0.4], [0.5, math.inf])
    assert math.isnan(both.estimate) and both.p_value == 1.0
    assert not welch_difference([math.inf], [0.5, 0.6]).testable  # one seed is still too few
    assert math.isnan(difference_within(every, -1.0, 1.0).low)  # no interval to cut
