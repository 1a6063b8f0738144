"""Whether the paper's claims hold in a study: a verdict per claim, with the numbers that decided it.

Every group (architecture · dataset · family · schedule) becomes one `Curve` per measure: per point,
the mean over seeds with its 95% t-interval and the difference from the group's dense base with
Welch's test (by rank where a seed's loss overflowed), Holm-corrected over the curve's points. Each claim
is then a small rule over curves, with the measure's margin (the smallest change that matters, stated
beside every verdict) on both sides:

- a claim is `holds` only when the effect is significant in its favour and its estimate exceeds the margin;
- `does not hold` needs evidence against it: intervals that exclude the claimed effect by more than
  the margin at every point tested, or that separate against it;
- anything else, too few seeds, and a point the claim is about that could not be tested is `inconclusive`.
  So more noise can only make a verdict inconclusive, never turn one into the other.

Each verdict also counts the trials that were not trained to the stopping rule (they stopped at
`max_epochs` with the training loss still above `stop_loss`, or diverged and are left out of the
statistics): a curve of under-trained models says how far training got, not what sparsity does, and one
whose diverged seeds are left out shows the survivors, so such verdicts are flagged.

Pure functions over `StudyResults` (the database rows) and the per-point summaries; no I/O.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from scipy import stats

from sparsecap.models.architectures import architecture_family
from sparsecap.report.aggregate import (
    GroupKey,
    PointRecallAnalysis,
    PointSummary,
    StudyResults,
    corruption_per_trial,
    group_key,
    is_dense,
    model_of,
    noise_per_sigma,
    robust_per_trial,
    stop_loss_of,
    surviving_path_fraction,
    under_trained,
)
from sparsecap.report.statistics import (
    FRACTION,
    SIGNIFICANCE_LEVEL,
    UNBOUNDED,
    Difference,
    Interval,
    best_by_mean,
    difference_within,
    holm,
    observed_mean,
    t_interval,
    welch_difference,
    within,
)
from sparsecap.studies.database import DIVERGED, FINISHED

ACCURACY_MARGIN = 0.01
"""One percentage point: smaller accuracy changes are treated as no change."""
RECALL_MARGIN = 0.02
"""The non-inferiority margin of minimum class recall (two percentage points)."""
DELTA_LOSS_MARGIN = 0.10
"""ΔL changes smaller than a tenth of the base's ΔL are treated as no change."""
FAILURE_NEAR_PERCENT = (5.0, 20.0)
"""The remaining-weight range c6 reads as "near 10 %"."""


class Verdict(str, enum.Enum):
    HOLDS = "holds"
    FAILS = "does not hold"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Measure:
    """One quantity per trial, which way is better, and the smallest change that matters."""

    key: str
    label: str
    higher_is_better: bool = True
    margin: float = ACCURACY_MARGIN
    relative_margin: bool = False
    """The margin is a fraction of the base's mean (ΔL has no natural unit)."""
    percent: bool = True
    """A fraction shown in percentage points."""

    def margin_at(self, base_mean: float) -> float:
        return self.margin * abs(base_mean) if self.relative_margin else self.margin

    def show(self, value: float, signed: bool = False) -> str:
        if math.isnan(value):
            return "—"
        if math.isinf(value):  # a loss that overflowed under weight noise, or a difference from one
            return "−∞" if value < 0 else "+∞" if signed else "∞"
        scaled = value * 100 if self.percent else value
        text = f"{scaled:+.2f}" if signed else f"{scaled:.2f}"
        return text + (" pp" if self.percent and signed else "")

    def show_margin(self, margin: float) -> str:
        """A margin as the reasons print it: in percentage points for a measure in percent."""
        return self.show(margin) + (" pp" if self.percent else "")

    def better(self, value: float) -> float:
        """The value with its sign made so that larger is better."""
        return value if self.higher_is_better else -value

    @property
    def value_range(self) -> tuple[float, float]:
        """Where a mean can lie: a fraction (shown in percentage points) in [0, 1], anything else anywhere."""
        return FRACTION if self.percent else UNBOUNDED

    def interval(self, values: Iterable[float | None]) -> Interval:
        """The seeds' t-interval, cut to the measure's range."""
        return within(t_interval(values), *self.value_range)

    def difference(self, values: Iterable[float | None], others: Iterable[float | None]) -> Difference:
        """Welch's test of `values` against `others` (`welch_difference`), its interval cut to what a difference
        can be."""
        return difference_within(welch_difference(values, others), *self.value_range)


CLEAN_ACCURACY = Measure("clean_accuracy", "clean accuracy")
MIN_CLASS_RECALL = Measure("min_class_recall", "minimum class recall", margin=RECALL_MARGIN)
NOISE_ACCURACY = Measure("noise_accuracy", "accuracy under weight noise (mean over σ > 0)")
NOISE_DELTA_LOSS = Measure("noise_delta_loss", "ΔL under weight noise (mean over σ > 0)", higher_is_better=False,
                           margin=DELTA_LOSS_MARGIN, relative_margin=True, percent=False)
CORRUPTED_ACCURACY = Measure("corrupted_accuracy", "accuracy on corrupted data (mean over corruptions)")
ROBUST_ACCURACY = Measure("robust_accuracy", "robust accuracy (mean over attacks and ε > 0)")


PATH_FRACTION = Measure("path_fraction_log10", "log10 of the surviving input-output path fraction", percent=False)
EFFECTIVE_WIDTH = Measure("min_effective_width_fraction", "narrowest layer's effective width (fraction)")
INEFFECTIVE_UNITS = Measure("ineffective_units", "hidden units on no input-output path", higher_is_better=False,
                            percent=False)
CONNECTIVITY_MEASURES = (PATH_FRACTION, EFFECTIVE_WIDTH, INEFFECTIVE_UNITS)
"""Read from the mask, per trial: what the paper's "loose connectivity between layers" would look like."""


def noise_accuracy_at(sigma: float) -> Measure:
    return Measure(f"noise_accuracy@{sigma:g}", f"accuracy under weight noise σ={sigma:g}")


def noise_delta_loss_at(sigma: float) -> Measure:
    return Measure(f"noise_delta_loss@{sigma:g}", f"ΔL under weight noise σ={sigma:g}", higher_is_better=False,
                   margin=DELTA_LOSS_MARGIN, relative_margin=True, percent=False)


def corrupted_accuracy_at(corruption: str, severity: int) -> Measure:
    return Measure(f"corrupted_accuracy@{corruption}/{severity}", f"accuracy on {corruption} (severity {severity})")


def robust_accuracy_at(attack: str, epsilon: float) -> Measure:
    return Measure(f"robust_accuracy@{attack}/{epsilon:g}", f"{attack.upper()} robust accuracy ε={epsilon:.4g}")


def trial_values(results: StudyResults, trial: dict[str, Any]) -> dict[Measure, float]:
    """Every measure one finished trial has, weight noise and corruptions averaged over their draws."""
    trial_id = trial["trial_id"]
    values = {CLEAN_ACCURACY: trial["test_accuracy"], MIN_CLASS_RECALL: trial["min_class_recall"]}
    connectivity = {measure: trial.get(measure.key) for measure in CONNECTIVITY_MEASURES} | {
        PATH_FRACTION: surviving_path_fraction(trial)}
    values |= {measure: value for measure, value in connectivity.items() if value is not None}
    noise_rows = results.weight_noise.get(trial_id, [])
    accuracy, delta_loss = noise_per_sigma(noise_rows, "accuracy"), noise_per_sigma(noise_rows, "delta_loss")
    values |= {noise_accuracy_at(sigma): value for sigma, value in accuracy.items()}
    values |= {noise_delta_loss_at(sigma): value for sigma, value in delta_loss.items()}
    if any(sigma > 0 for sigma in accuracy):
        values[NOISE_ACCURACY] = observed_mean(value for sigma, value in accuracy.items() if sigma > 0)
        values[NOISE_DELTA_LOSS] = observed_mean(value for sigma, value in delta_loss.items() if sigma > 0)
    per_corruption, means = corruption_per_trial(results.corruption.get(trial_id, []))
    values |= {corrupted_accuracy_at(*key): value for key, value in per_corruption.items()}
    if None in means:
        values[CORRUPTED_ACCURACY] = means[None]
    robust = robust_per_trial(results.adversarial.get(trial_id, []))
    values |= {robust_accuracy_at(*key): value for key, value in robust.items()}
    if any(epsilon > 0 for _, epsilon in robust):
        values[ROBUST_ACCURACY] = observed_mean(value for (_, epsilon), value in robust.items() if epsilon > 0)
    return {measure: math.nan if value is None else float(value) for measure, value in values.items()}


MIN_SEEDS = 2
"""Finished seeds a point and its base each need for Welch's test of one against the other."""

Point = TypeVar("Point")


def sweet_spot_of(points: Sequence[Point], is_base: Callable[[Point], bool], seeds: Callable[[Point], int],
                  mean: Callable[[Point], float], *, higher_is_better: bool) -> Point | None:
    """The sweet spot, one rule for the verdicts, the statistics table and the figures' star: the best mean among
    the non-base points testable against the base (`MIN_SEEDS` finished seeds each). A point left with one seed
    (its others failed) has a mean no test can back, and would otherwise stand in for a testable one. None when
    no point qualifies."""
    if not any(is_base(point) and seeds(point) >= MIN_SEEDS for point in points):
        return None
    testable = [point for point in points if not is_base(point) and seeds(point) >= MIN_SEEDS]
    return best_by_mean(testable, mean, higher_is_better)


@dataclass(frozen=True)
class PointEstimate:
    """One point of a curve over seeds, against the dense base of its group."""

    label: str
    width: int
    depth: int
    remaining_percent: float
    values: tuple[float, ...]
    """Per finished seed (NaN where the trial lacks the measure)."""
    interval: Interval
    versus_base: Difference
    adjusted_p: float
    """Holm-corrected over the curve's non-base points (NaN for the base and untestable points)."""
    under_trained: int
    diverged: int

    @property
    def is_base(self) -> bool:
        return is_dense(self.remaining_percent)

    @property
    def significant(self) -> bool:
        return math.isfinite(self.adjusted_p) and self.adjusted_p < SIGNIFICANCE_LEVEL

    @property
    def where(self) -> str:
        return f"{self.label} ({self.remaining_percent:.3g}% remaining)"


@dataclass(frozen=True)
class Curve:
    """One measure over the points of one group, dense base first."""

    group: GroupKey
    measure: Measure
    points: tuple[PointEstimate, ...]

    @property
    def base(self) -> PointEstimate | None:
        return next((point for point in self.points if point.is_base), None)

    @property
    def sparse_points(self) -> list[PointEstimate]:
        return [point for point in self.points if not point.is_base and point.interval.n > 0]

    @property
    def sweet_spot(self) -> PointEstimate | None:
        """`sweet_spot_of` this curve: the rule the figures' star follows too."""
        return sweet_spot_of(self.points, lambda point: point.is_base, lambda point: point.interval.n,
                             lambda point: point.interval.mean, higher_is_better=self.measure.higher_is_better)

    @property
    def margin(self) -> float:
        return self.measure.margin_at(self.base.interval.mean) if self.base else math.nan

    @property
    def under_trained(self) -> int:
        return sum(point.under_trained for point in self.points)

    @property
    def diverged(self) -> int:
        return sum(point.diverged for point in self.points)

    @property
    def untested(self) -> list[PointEstimate]:
        """Sparse points with finished seeds that cannot be tested against the base (one seed): a claim about
        every point cannot pass over them."""
        return [point for point in self.sparse_points if not point.versus_base.testable]

    @property
    def trials(self) -> int:
        return sum(point.interval.n for point in self.points)

    def point_at(self, width: int, depth: int) -> PointEstimate | None:
        return next((point for point in self.points if (point.width, point.depth) == (width, depth)), None)


def build_curve(group: GroupKey, measure: Measure, points: Sequence[PointSummary],
                seed_values: dict[tuple[int, int], list[float]]) -> Curve:
    """The curve of one measure from its per-point seed values (points already ordered dense to sparse)."""
    base = next((point for point in points if point.is_base), None)
    base_values = seed_values.get((base.width, base.depth), []) if base else []
    differences = [measure.difference(seed_values.get((point.width, point.depth), []), base_values)
                   if base and not point.is_base else measure.difference([], []) for point in points]
    adjusted = holm([difference.p_value for difference in differences])
    return Curve(group, measure, tuple(
        PointEstimate(
            label=point.label, width=point.width, depth=point.depth, remaining_percent=point.remaining_percent,
            values=tuple(seed_values.get((point.width, point.depth), [])),
            interval=measure.interval(seed_values.get((point.width, point.depth), [])),
            versus_base=difference, adjusted_p=adjusted_p,
            under_trained=point.n_under_trained, diverged=point.n_diverged,
        )
        for point, difference, adjusted_p in zip(points, differences, adjusted)
    ))


def study_curves(results: StudyResults, points_by_group: dict[GroupKey, list[PointSummary]]) -> dict[GroupKey, dict[Measure, Curve]]:
    """Every group's curve of every measure its trials have."""
    values_by_point: dict[GroupKey, dict[Measure, dict[tuple[int, int], list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for trial in sorted(results.trials_with_status(FINISHED), key=lambda trial: trial["seed"]):
        point = model_of(trial)
        for measure, value in trial_values(results, trial).items():
            values_by_point[group_key(trial)][measure][point].append(value)
    return {
        group: {measure: build_curve(group, measure, points_by_group[group], values)
                for measure, values in measures.items()}
        for group, measures in values_by_point.items()
    }


@dataclass(frozen=True)
class Finding:
    """A verdict on one part of a claim, in words and numbers."""

    verdict: Verdict
    reason: str
    evidence: str = ""


def _shortage(curve: Curve) -> str | None:
    """Why the curve cannot be tested at all, if it cannot."""
    if curve.base is None:
        return "no dense base point (remaining 100 %) in this group"
    if curve.base.interval.n < MIN_SEEDS:
        return (f"too few seeds: the base has {curve.base.interval.n} finished seed(s), at least {MIN_SEEDS} are "
                f"needed")
    if sum(point.versus_base.testable for point in curve.sparse_points) < 1:
        return f"too few seeds: no sparse point has {MIN_SEEDS} finished seeds"
    return None


def _gain_upper(measure: Measure, difference: Difference) -> float:
    """The largest improvement the interval allows (larger is better, whichever way the measure runs)."""
    return difference.high if measure.higher_is_better else -difference.low


def _versus(measure: Measure, difference: Difference, adjusted_p: float | None = None) -> str:
    """The difference, its 95% interval (per point: Holm adjusts the p-value, not the interval) and its p-value; a
    seed with an infinite value has no interval and was compared by rank."""
    p_value = difference.p_value if adjusted_p is None else adjusted_p
    p_text = f"Holm p = {p_value:.2g}" if adjusted_p is not None else f"p = {p_value:.2g}"
    if math.isnan(difference.low):
        return f"{measure.show(difference.estimate, signed=True)} (by rank: a loss overflowed), {p_text}"
    interval = f"[{measure.show(difference.low, signed=True)}, {measure.show(difference.high, signed=True)}]"
    return f"{measure.show(difference.estimate, signed=True)} {interval}{' unadjusted' if adjusted_p is not None else ''}, {p_text}"


def _exceeds(gain: float, margin: float) -> bool:
    """A gain beyond the margin; an infinite one (a finite loss against an overflowed one) is beyond any, also the
    infinite margin a relative margin becomes at an overflowed base."""
    return gain == math.inf or gain > margin


def _untested_text(points: Sequence[PointEstimate]) -> str:
    return ", ".join(point.label for point in points) + " could not be tested (1 finished seed)"


def _no_gain_shown(curve: Curve, best: PointEstimate, testable: Sequence[PointEstimate]) -> str:
    """Why a best sparse point that is not significantly better decides nothing: it does not separate from the
    base, or it is significantly worse while another point's interval still allows a gain of the margin (so the
    claim is not refuted either: that needs every interval to exclude the gain)."""
    measure = curve.measure
    if not (best.significant and measure.better(best.versus_base.estimate) < 0):
        return "the best sparse point does not separate from the base"
    still_open = next(point for point in testable if _gain_upper(measure, point.versus_base) >= curve.margin)
    return (f"even the best sparse point is significantly worse than the base, but the interval at "
            f"{still_open.where} does not rule out a gain of the margin")


def _margin_text(curve: Curve) -> str:
    """The margin as a reason states it: in the measure's unit, or as a share of the base's value (ΔL)."""
    if curve.measure.relative_margin:
        return f"{DELTA_LOSS_MARGIN:.0%} of the base's value"
    return curve.measure.show_margin(curve.margin)


def _no_gain(curve: Curve, verb: str, evidence: str) -> Finding | None:
    """The verdict where no sparse point is shown to gain on the base by more than the margin (`verb`: how the
    claim words a gain), None where the best one is: the first half of every "better when sparser" claim. A gain
    every interval keeps below the margin does not hold, even where it is significant: the margin is the
    smallest gain a claim counts."""
    measure, best = curve.measure, curve.sweet_spot
    testable = [point for point in curve.sparse_points if point.versus_base.testable]
    if all(_gain_upper(measure, point.versus_base) < curve.margin for point in testable):
        if curve.untested:
            return Finding(Verdict.INCONCLUSIVE, f"no tested sparse point {verb} the base by the margin, but "
                           + _untested_text(curve.untested), evidence)
        return Finding(Verdict.FAILS, f"no sparse point {verb} the base by the margin ({_margin_text(curve)})",
                       evidence)
    if not (best.significant and measure.better(best.versus_base.estimate) > 0):
        return Finding(Verdict.INCONCLUSIVE, _no_gain_shown(curve, best, testable), evidence)
    if not _exceeds(measure.better(best.versus_base.estimate), curve.margin):
        return Finding(Verdict.INCONCLUSIVE, f"the best sparse point {verb} the base significantly, but by no more "
                       f"than the margin ({_margin_text(curve)})", evidence)
    return None


def rises_then_falls(curve: Curve) -> Finding:
    """The paper's shape: some sparser point beats the base, and sparser still it falls again."""
    shortage = _shortage(curve)
    if shortage:
        return Finding(Verdict.INCONCLUSIVE, shortage)
    measure, margin, peak = curve.measure, curve.margin, curve.sweet_spot
    peak_text = f"{measure.label}: sweet spot {peak.where}: {_versus(measure, peak.versus_base, peak.adjusted_p)} against the base"
    no_rise = _no_gain(curve, "beats", peak_text)
    if no_rise is not None:
        if no_rise.verdict is Verdict.FAILS:
            return replace(no_rise, reason=f"{no_rise.reason}: there is no rise")
        return no_rise
    sparser = [point for point in curve.sparse_points if point.remaining_percent < peak.remaining_percent]
    drops = [measure.difference(point.values, peak.values) for point in sparser]
    adjusted = holm([drop.p_value for drop in drops])
    falls = [(point, drop, p_value) for point, drop, p_value in zip(sparser, drops, adjusted)
             if math.isfinite(p_value) and p_value < SIGNIFICANCE_LEVEL and measure.better(drop.estimate) < 0]
    large = [(point, drop, p_value) for point, drop, p_value in falls if _exceeds(-measure.better(drop.estimate), margin)]
    if large:
        point, drop, p_value = large[0]
        return Finding(Verdict.HOLDS, "rises above the base, then falls",
                       f"{peak_text}; then {point.where}: {_versus(measure, drop, p_value)} against the sweet spot")
    if falls:
        point, drop, p_value = falls[0]
        return Finding(Verdict.INCONCLUSIVE, "rises above the base, then falls significantly, but by no more than "
                       "the margin", f"{peak_text}; then {point.where}: {_versus(measure, drop, p_value)} against "
                       "the sweet spot")
    return Finding(Verdict.INCONCLUSIVE, "rises above the base, but no significant fall beyond the sweet spot "
                   "within the sparsities studied", peak_text)


def improves_with_sparsity(curve: Curve) -> Finding:
    """Some sparse point is better than the base (ΔL: grows more slowly, i.e. is lower)."""
    shortage = _shortage(curve)
    if shortage:
        return Finding(Verdict.INCONCLUSIVE, shortage)
    measure, best = curve.measure, curve.sweet_spot
    evidence = f"{measure.label}: best {best.where}: {_versus(measure, best.versus_base, best.adjusted_p)} against the base"
    return _no_gain(curve, "improves on", evidence) or Finding(
        Verdict.HOLDS, "better than the base's at a sparser point", evidence)  # `combine` names the measure


def combine(parts: Sequence[tuple[Curve, Finding]]) -> Finding:
    """All parts must hold; one that does not hold decides against. Each reason is named by its measure."""
    verdicts = {finding.verdict for _, finding in parts}
    verdict = (Verdict.FAILS if Verdict.FAILS in verdicts else
               Verdict.HOLDS if verdicts == {Verdict.HOLDS} else Verdict.INCONCLUSIVE)
    return Finding(verdict, "; ".join(f"{curve.measure.label}: {finding.reason}" for curve, finding in parts),
                   "; ".join(finding.evidence for _, finding in parts if finding.evidence))


def _collapse_percent(clean: Curve | None) -> float:
    """The remaining percent where clean accuracy collapses (`first_collapse`: significantly below the base by
    more than the margin), 0 where it never does. c4 judges the points denser than it only: beyond it every point
    is out, also one whose noisier clean accuracy does not separate from the base; a significant dip smaller than
    the margin is no collapse."""
    collapse = first_collapse(clean) if clean is not None else None
    return collapse.remaining_percent if collapse is not None else 0.0


def recall_not_inferior(curve: Curve, clean: Curve | None, recall: Sequence[PointRecallAnalysis]) -> Finding:
    """c4: minimum class recall stays within the margin of the base's (one-sided non-inferiority via the 95% CI's
    lower bound) wherever clean accuracy holds up, and no class is disproportionately hurt (Hooker et al.),
    the per-class Welch tests Holm-corrected together."""
    shortage = _shortage(curve)
    if shortage:
        return Finding(Verdict.INCONCLUSIVE, shortage)
    if curve.base.interval.mean == 0:
        return Finding(Verdict.INCONCLUSIVE, "the base's minimum class recall is 0 in every seed (a class it never "
                       "predicts): it cannot fall, so non-inferiority would say nothing")
    margin, collapse_at = curve.margin, _collapse_percent(clean)
    before_collapse = [point for point in curve.sparse_points if point.remaining_percent > collapse_at]
    regime = [point for point in before_collapse if point.versus_base.testable]
    if not regime:
        return Finding(Verdict.INCONCLUSIVE, "no testable sparse point before clean accuracy collapses")
    regime_points = {(point.width, point.depth) for point in regime}
    class_tests = [(change, entry) for entry in recall if (entry.point.width, entry.point.depth) in regime_points
                   for change in entry.changes if change.p_value is not None]
    adjusted = holm([change.p_value for change, _ in class_tests])
    hurt = [(change, entry) for (change, entry), p_value in zip(class_tests, adjusted)
            if math.isfinite(p_value) and p_value < SIGNIFICANCE_LEVEL and change.change < 0]
    inferior = [point for point in regime if point.significant and point.versus_base.estimate < -margin]
    # The point that decides: the first significantly inferior one, else the one whose interval reaches lowest.
    shown = inferior[0] if inferior else min(regime, key=lambda point: point.versus_base.low)
    past = [point.label for point in curve.sparse_points if point.remaining_percent <= collapse_at]
    evidence = (f"{'inferior' if inferior else 'lowest interval end'} {shown.where}: "
                f"{_versus(curve.measure, shown.versus_base, shown.adjusted_p)}; "
                f"margin −{curve.measure.show(margin)} pp; Hooker test: {len(hurt)} of {len(class_tests)} "
                f"(class, point) pair(s) disproportionately hurt after Holm"
                + (f"; left out, at or past the collapse of clean accuracy: {', '.join(past)}" if past else ""))
    if inferior:
        return Finding(Verdict.FAILS, f"minimum class recall falls significantly below the base at "
                       f"{inferior[0].where}, before clean accuracy collapses", evidence)
    if hurt:
        change, entry = hurt[0]
        return Finding(Verdict.FAILS, f"class {change.class_index} is disproportionately hurt at {entry.point.label}",
                       evidence)
    if all(point.versus_base.low > -margin for point in regime):
        untested = [point for point in before_collapse if not point.versus_base.testable]
        if untested:
            return Finding(Verdict.INCONCLUSIVE, "minimum class recall is non-inferior to the base at every tested "
                           f"point before the collapse, but {_untested_text(untested)}", evidence)
        return Finding(Verdict.HOLDS, "minimum class recall is non-inferior to the base at every point before "
                       "the collapse", evidence)
    return Finding(Verdict.INCONCLUSIVE, "the intervals are too wide to show non-inferiority", evidence)


def first_collapse(curve: Curve, within: set[tuple[int, int]] | None = None) -> PointEstimate | None:
    """The densest sparse point (among the (width, depth) points `within`, if given) significantly worse than
    the base by more than the margin."""
    return next((point for point in curve.sparse_points if point.significant
                 and curve.measure.better(point.versus_base.estimate) < -curve.margin
                 and (within is None or (point.width, point.depth) in within)), None)


def degrades_sooner(sooner: Curve, later: Curve) -> Finding:
    """Holds when `sooner`'s schedule is significantly worse than `later`'s somewhere and never better (point
    by point, Welch, Holm-corrected; a gap counts only beyond `later`'s margin, as every claim's effect does)
    and does not first fall below its base later than it. Which curve first falls significantly below its
    base alone does not decide against a significant point-by-point gap: a noisier curve separates from its
    base later. c5 is posttrain against static; a dynamic schedule is tested as static against it (does a
    moving mask degrade later?)."""
    for curve in (sooner, later):
        shortage = _shortage(curve)
        if shortage:
            return Finding(Verdict.INCONCLUSIVE, f"{curve.group.schedule}: {shortage}")
    measure, first, second = later.measure, sooner.group.schedule, later.group.schedule
    pairs = [(point, later.point_at(point.width, point.depth)) for point in sooner.sparse_points]
    pairs = [(point, other) for point, other in pairs if other is not None]
    gaps = [measure.difference(point.values, other.values) for point, other in pairs]
    adjusted = holm([gap.p_value for gap in gaps])
    significant = [(point, gap, p_value) for (point, _), gap, p_value in zip(pairs, gaps, adjusted)
                   if math.isfinite(p_value) and p_value < SIGNIFICANCE_LEVEL]
    worse = [entry for entry in significant if _exceeds(-measure.better(entry[1].estimate), later.margin)]
    better = [entry for entry in significant if _exceeds(measure.better(entry[1].estimate), later.margin)]
    small = [entry for entry in significant if entry not in worse and entry not in better]
    # Only the points both schedules were trained at: a schedule cannot collapse where it was not run.
    shared = {(point.width, point.depth) for point, _ in pairs}
    collapse = {curve.group.schedule: first_collapse(curve, shared) for curve in (sooner, later)}
    sooner_at, later_at = (point.remaining_percent if point else 0.0 for point in (collapse[first], collapse[second]))

    def collapse_text(schedule: str) -> str:
        point = collapse[schedule]
        return (f"{schedule} first falls below its base at {point.where}" if point else
                f"{schedule} never falls significantly below its base at the points both were trained at")
    evidence = f"{collapse_text(first)}; {collapse_text(second)}"
    tested = [(point, gap, p_value) for (point, _), gap, p_value in zip(pairs, gaps, adjusted)
              if math.isfinite(p_value)]
    # Where nothing separates, the comparison nearest to it, by its unadjusted p (Holm's values tie at 1).
    closest = [min(tested, key=lambda entry: entry[1].p_value)] if tested and not significant else []
    for label, found in (("worse", worse), ("better", better), ("within the margin", small),
                         ("closest (smallest unadjusted p)", closest)):
        if found:
            point, gap, p_value = found[0]
            evidence += f"; {label} at {point.where}, {first} − {second}: {_versus(measure, gap, p_value)}"
    if worse and not better and sooner_at >= later_at:
        return Finding(Verdict.HOLDS, f"{first} is significantly worse than {second} and never better"
                       + (", and falls below its base at a denser point" if sooner_at > later_at else ""), evidence)
    if better and not worse:
        return Finding(Verdict.FAILS, f"{first} is never significantly worse than {second}, and better somewhere",
                       evidence)
    if later_at > sooner_at and not worse:
        return Finding(Verdict.FAILS, f"{second} falls below its base at a denser point than {first}", evidence)
    if worse and better:
        return Finding(Verdict.INCONCLUSIVE, f"mixed: {first} is significantly worse than {second} at one point "
                       "and better at another", evidence)
    if worse and later_at > sooner_at:
        return Finding(Verdict.INCONCLUSIVE, f"mixed: {first} is significantly worse than {second} somewhere, but "
                       f"{second} is the first to fall significantly below its base", evidence)
    if small:
        return Finding(Verdict.INCONCLUSIVE, f"{first} and {second} differ significantly, but by no more than the "
                       f"margin ({measure.show_margin(later.margin)})", evidence)
    return Finding(Verdict.INCONCLUSIVE, "the two schedules do not separate", evidence)


@dataclass(frozen=True)
class ConvergenceCount:
    """Trials near 10 % remaining weights, and how many of them did not converge (diverged or under-trained)."""

    trials: int = 0
    failed: int = 0
    under_trained: int = 0
    """Of the failed, those that ran out of max_epochs rather than diverged."""

    def __add__(self, other: ConvergenceCount) -> ConvergenceCount:
        return ConvergenceCount(self.trials + other.trials, self.failed + other.failed,
                                self.under_trained + other.under_trained)

    @property
    def fraction(self) -> float:
        return self.failed / self.trials if self.trials else math.nan


def convergence_near_ten_percent(results: StudyResults, group: GroupKey, points: Sequence[PointSummary]) -> ConvergenceCount:
    """Of the group's point nearest 10 % remaining (within `FAILURE_NEAR_PERCENT`), the trials that did not
    reach the stopping rule."""
    low, high = FAILURE_NEAR_PERCENT
    near = [point for point in points if low <= point.remaining_percent <= high]
    if not near:
        return ConvergenceCount()
    point = min(near, key=lambda point: abs(math.log(point.remaining_percent / 10.0)))
    stop_loss = stop_loss_of(results)
    trials = [trial for trial in results.trials
              if group_key(trial) == group and model_of(trial) == (point.width, point.depth)
              and trial["status"] in (FINISHED, DIVERGED)]
    under = sum(under_trained(trial, stop_loss) for trial in trials)
    return ConvergenceCount(len(trials), under + sum(trial["status"] == DIVERGED for trial in trials), under)


def vgg_fails_to_converge(vgg: ConvergenceCount, others: ConvergenceCount) -> Finding:
    """c6: most depth-family VGG trials near 10 % fail to converge, most ResNet and MLP ones do not (Fisher's
    exact test, one-sided)."""
    if vgg.trials == 0 or others.trials == 0:
        return Finding(Verdict.INCONCLUSIVE, "needs depth-family trials of VGG and of ResNet or MLP with 5-20 % "
                       "of their weights remaining")
    p_value = float(stats.fisher_exact([[vgg.failed, vgg.trials - vgg.failed],
                                        [others.failed, others.trials - others.failed]], alternative="greater").pvalue)
    evidence = (f"not converged near 10 %: VGG {vgg.failed}/{vgg.trials}, ResNet/MLP {others.failed}/{others.trials}; "
                f"Fisher p = {p_value:.2g}")
    if vgg.fraction > 0.5 > others.fraction and p_value < SIGNIFICANCE_LEVEL:
        return Finding(Verdict.HOLDS, "VGG fails to converge where ResNet and MLP converge", evidence)
    # Evidence against: VGG converges in most trials, or ResNet/MLP fail in most, each binomially significant.
    vgg_converges = stats.binomtest(vgg.failed, vgg.trials, 0.5, alternative="less").pvalue
    others_fail = stats.binomtest(others.failed, others.trials, 0.5, alternative="greater").pvalue
    if vgg_converges < SIGNIFICANCE_LEVEL:
        return Finding(Verdict.FAILS, "VGG converges in most trials near 10 %",
                       f"{evidence}; VGG failing in under half of its trials: binomial p = {vgg_converges:.2g}")
    if others_fail < SIGNIFICANCE_LEVEL:
        return Finding(Verdict.FAILS, "ResNet and MLP fail to converge in most trials near 10 % too",
                       f"{evidence}; ResNet/MLP failing in over half of theirs: binomial p = {others_fail:.2g}")
    return Finding(Verdict.INCONCLUSIVE, "too few trials to separate the architectures", evidence)


@dataclass(frozen=True)
class Collapse:
    """Where a group's clean accuracy first falls significantly below its base, and the mask's connectivity
    there and at the point before it."""

    group: GroupKey
    collapse: PointEstimate | None
    before: PointEstimate | None
    connectivity: dict[Measure, tuple[float, float]]
    """measure -> (mean at the point before, mean at the collapse); NaN where not measured."""
    untestable: str | None = None
    """Why no collapse can be located (too few seeds, no base): then "never falls" would claim what no test saw."""

    @property
    def text(self) -> str:
        if self.untestable is not None:
            return f"no collapse can be located: {self.untestable}"
        if self.collapse is None:
            return "clean accuracy never falls significantly below the base within the sparsities studied"
        drop = CLEAN_ACCURACY.show(self.collapse.versus_base.estimate, signed=True)
        parts = [f"clean accuracy first falls below the base at {self.collapse.where} ({drop})"]
        measured = {measure: pair for measure, pair in self.connectivity.items() if any(map(math.isfinite, pair))}
        if measured and self.before is not None:
            parts.append("connectivity " + ", ".join(
                f"{measure.label} {_connectivity_value(measure, before)} at {self.before.label} → "
                f"{_connectivity_value(measure, at)}" for measure, (before, at) in measured.items()))
        return "; ".join(parts)


def _connectivity_value(measure: Measure, value: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value:.3g}" if measure is not EFFECTIVE_WIDTH else f"{value:.0%}"


def collapses(curves: dict[GroupKey, dict[Measure, Curve]]) -> list[Collapse]:
    """Per group, where the collapse starts and what connectivity was there (the paper's explanation, measured)."""
    found = []
    for group, by_measure in curves.items():
        clean = by_measure.get(CLEAN_ACCURACY)
        if clean is None:
            continue
        shortage = _shortage(clean)
        collapse = first_collapse(clean) if shortage is None else None
        sparse = clean.sparse_points
        index = sparse.index(collapse) if collapse is not None else -1
        before = (sparse[index - 1] if index > 0 else clean.base) if collapse is not None else None

        def mean_at(measure: Measure, point: PointEstimate | None) -> float:
            curve = by_measure.get(measure)
            at = curve.point_at(point.width, point.depth) if curve is not None and point is not None else None
            return at.interval.mean if at is not None else math.nan
        found.append(Collapse(group, collapse, before, {
            measure: (mean_at(measure, before), mean_at(measure, collapse)) for measure in CONNECTIVITY_MEASURES},
            shortage))
    return found


@dataclass(frozen=True)
class Claim:
    key: str
    statement: str


CLAIMS = (
    Claim("c1", "under weight noise, accuracy first rises, then falls as sparsity grows, and ΔL grows more "
                "slowly for sparser models"),
    Claim("c2", "on corrupted data, accuracy first rises, then falls as sparsity grows"),
    Claim("c3", "under adversarial attacks, robust accuracy first rises, then falls as sparsity grows"),
    Claim("c4", "minimum class recall does not fall with sparsity"),
    Claim("c5", "post-training pruning degrades sooner than static sparsity"),
    Claim("c6", "depth-sparsified VGG fails to converge near 10 % remaining weights; ResNet and MLP do not"),
    Claim("golubeva", "clean accuracy first rises, then falls as sparsity grows (Golubeva et al.)"),
)
CLAIM_BY_KEY = {claim.key: claim for claim in CLAIMS}


@dataclass(frozen=True)
class ClaimVerdict:
    """One row of the claims table."""

    claim: Claim
    scope: str
    finding: Finding
    trials: int
    """Finished trials (c6: the trials its test counted)."""
    under_trained: int
    diverged: int = 0
    """Diverged trials left out of the statistics (c6 counts them as its outcome, so none are left out)."""
    curves: tuple[Curve, ...] = field(default=(), compare=False)
    """The curves that decided it (drawn and tabulated beside it)."""

    @property
    def verdict(self) -> Verdict:
        return self.finding.verdict

    @property
    def untested(self) -> bool:
        """Inconclusive for want of data (no trial measured what it needs), not on weighed evidence."""
        return self.verdict is Verdict.INCONCLUSIVE and self.trials == 0 and self.diverged == 0

    @property
    def trained_to_rule(self) -> bool:
        return self.under_trained == 0 and self.diverged == 0

    @property
    def flags(self) -> list[str]:
        """What the verdict's trials fall short of: trained to the stopping rule, every seed counted."""
        return [flag for flag, count in (("under-trained", self.under_trained),
                                         ("diverged seeds left out", self.diverged)) if count]

    @property
    def training_text(self) -> str:
        if self.trials == 0 and self.diverged == 0:
            return "—"
        if self.trained_to_rule:
            return "yes"
        parts = {
            f"under-trained: {self.under_trained} of {self.trials} trial(s) stopped at max_epochs above stop_loss":
                self.under_trained,
            f"diverged: {self.diverged} trial(s), left out of the statistics (the verdict rests on the seeds that "
            "survived)": self.diverged,
        }
        return "; ".join(text for text, count in parts.items() if count)


def _verdict(claim: Claim, scope: str, finding: Finding, curves: Sequence[Curve]) -> ClaimVerdict:
    by_group: dict[GroupKey, list[Curve]] = defaultdict(list)
    for curve in curves:  # a group's curves of several measures share its trials: count them once
        by_group[curve.group].append(curve)
    trials = sum(max(curve.trials for curve in group_curves) for group_curves in by_group.values())
    under = sum(max(curve.under_trained for curve in group_curves) for group_curves in by_group.values())
    diverged = sum(max(curve.diverged for curve in group_curves) for group_curves in by_group.values())
    return ClaimVerdict(claim, scope, finding, trials, under, diverged, tuple(curves))


CurveClaim = tuple[Claim, tuple[Measure, ...], Callable[[Sequence[Curve]], Finding]]
"""A claim decided per group: its measures, and the rule over their curves (in that order)."""

PER_GROUP_CLAIMS: tuple[CurveClaim, ...] = (
    (CLAIM_BY_KEY["c1"], (NOISE_ACCURACY, NOISE_DELTA_LOSS),
     lambda curves: combine([(curves[0], rises_then_falls(curves[0])), (curves[1], improves_with_sparsity(curves[1]))])),
    (CLAIM_BY_KEY["c2"], (CORRUPTED_ACCURACY,), lambda curves: rises_then_falls(curves[0])),
    (CLAIM_BY_KEY["c3"], (ROBUST_ACCURACY,), lambda curves: rises_then_falls(curves[0])),
    (CLAIM_BY_KEY["golubeva"], (CLEAN_ACCURACY,), lambda curves: rises_then_falls(curves[0])),
)

NOT_MEASURED = {
    "c1": "no weight-noise level above 0 was evaluated",
    "c2": "corrupted data was not evaluated (enable [corruptions])",
    "c3": "no attack was run (enable [adversarial])",
}


def _per_group_claims(curves: dict[GroupKey, dict[Measure, Curve]]) -> list[ClaimVerdict]:
    verdicts = []
    for claim, measures, rule in PER_GROUP_CLAIMS:
        measured = [(group, [by_measure[measure] for measure in measures]) for group, by_measure in curves.items()
                    if all(measure in by_measure for measure in measures)]
        if not measured:
            verdicts.append(_verdict(claim, "every group", Finding(Verdict.INCONCLUSIVE, NOT_MEASURED[claim.key]), []))
        verdicts += [_verdict(claim, group.label, rule(group_curves), group_curves) for group, group_curves in measured]
    return verdicts


def _recall_claims(curves: dict[GroupKey, dict[Measure, Curve]],
                   recall: dict[GroupKey, list[PointRecallAnalysis]]) -> list[ClaimVerdict]:
    claim = CLAIM_BY_KEY["c4"]
    return [
        _verdict(claim, group.label, recall_not_inferior(by_measure[MIN_CLASS_RECALL], by_measure.get(CLEAN_ACCURACY),
                                                         recall.get(group, [])), [by_measure[MIN_CLASS_RECALL]])
        for group, by_measure in curves.items() if MIN_CLASS_RECALL in by_measure
    ]


POSTTRAIN, STATIC = "posttrain", "static"


def _schedule_claims(curves: dict[GroupKey, dict[Measure, Curve]]) -> list[ClaimVerdict]:
    """c5 for posttrain against static; for every other schedule, whether static degrades sooner than it."""
    pairs = [(group, GroupKey(group.architecture, group.dataset, group.family, STATIC)) for group in curves
             if group.schedule != STATIC]
    pairs = [(other, static) for other, static in pairs if static in curves and CLEAN_ACCURACY in curves[other]]
    verdicts = []
    if not any(other.schedule == POSTTRAIN for other, _ in pairs):
        verdicts.append(_verdict(CLAIM_BY_KEY["c5"], "every group", Finding(Verdict.INCONCLUSIVE, "needs both the "
                        "static and the posttrain schedule for one architecture and dataset (in one study, or "
                        "studies given together)"), []))
    for other, static in pairs:
        scope = f"{other.architecture} · {other.dataset} · {other.family} family"
        other_curve, static_curve = curves[other][CLEAN_ACCURACY], curves[static][CLEAN_ACCURACY]
        if other.schedule == POSTTRAIN:  # the key, c5, does not name the schedules compared: the scope does
            verdicts.append(_verdict(CLAIM_BY_KEY["c5"], f"{scope}, posttrain vs static",
                                     degrades_sooner(other_curve, static_curve), [other_curve, static_curve]))
        else:
            claim = Claim(f"{other.schedule} vs static", f"beyond the paper: static sparsity degrades sooner than "
                          f"{other.schedule} at the same nonzero count")
            verdicts.append(_verdict(claim, scope, degrades_sooner(static_curve, other_curve),
                                     [static_curve, other_curve]))
    return verdicts


def _convergence_claim(results: StudyResults, points_by_group: dict[GroupKey, list[PointSummary]]) -> ClaimVerdict:
    vgg, others = ConvergenceCount(), ConvergenceCount()
    for group, points in points_by_group.items():
        if group.family != "depth" or group.schedule != STATIC:
            continue
        count = convergence_near_ten_percent(results, group, points)
        if architecture_family(group.architecture).name == "vgg":
            vgg += count
        else:
            others += count
    counted = vgg + others
    return ClaimVerdict(CLAIM_BY_KEY["c6"], "depth family, static", vgg_fails_to_converge(vgg, others),
                        counted.trials, counted.under_trained)


StudyCurves = dict[GroupKey, dict[Measure, Curve]]


def evaluate_claims(results: StudyResults, points_by_group: dict[GroupKey, list[PointSummary]], curves: StudyCurves,
                    recall: dict[GroupKey, list[PointRecallAnalysis]]) -> list[ClaimVerdict]:
    """Every claim's verdicts, in the paper's order (c1..c6, then Golubeva's)."""
    verdicts = (_per_group_claims(curves) + _recall_claims(curves, recall) + _schedule_claims(curves)
                + [_convergence_claim(results, points_by_group)])
    order = {claim.key: index for index, claim in enumerate(CLAIMS)}
    return sorted(verdicts, key=lambda verdict: order.get(verdict.claim.key, len(order)))


def verdict_counts(verdicts: Iterable[ClaimVerdict]) -> dict[Verdict, int]:
    counts = {verdict: 0 for verdict in Verdict}
    for entry in verdicts:
        counts[entry.verdict] += 1
    return counts
