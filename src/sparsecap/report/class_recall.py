"""Which classes does a compressed model lose disproportionately? (Hooker et al. 2020 style).

For one model (a width/depth point, over seeds) against the dense base model of its group (over seeds),
per class c:

* normalised recall change = (mean recall_c - mean base recall_c) - (mean accuracy - mean base accuracy),
  i.e. how much more (negative) or less (positive) class c moved than the model's overall accuracy did;
* significance: a two-sided Welch t-test (unequal variances, `welch_difference`) between the seeds'
  (recall_c - accuracy) of the model and those of the base; significant when its p-value, Holm-adjusted
  over the model's classes, is below ``alpha`` (unadjusted, 5 of CIFAR-100's 100 classes would be starred
  by chance alone). With fewer than two seeds on either side the test is undefined and the class is
  reported as "n/a" (``significant is None``).

This module is pure: numbers in, numbers out, no database or plotting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sparsecap.report.statistics import SIGNIFICANCE_LEVEL, holm, welch_difference

GAP_DECIMALS = 10


@dataclass(frozen=True)
class ClassRecallChange:
    """One class's normalised recall change of a model against its dense base."""

    class_index: int
    change: float
    """(mean recall - mean base recall) - (mean accuracy - mean base accuracy); NaN if a side has no data."""
    p_value: float | None
    """Welch t-test p-value; None when a side has fewer than two seeds (n/a); 1 for seeds that all agree."""
    adjusted_p: float | None
    """`p_value` Holm-adjusted over the model's testable classes; None where `p_value` is."""
    significant: bool | None
    """adjusted_p < alpha; None when the test could not be run (n/a)."""
    n_model: int
    n_base: int

    @property
    def label(self) -> str:
        """'yes', 'no' or 'n/a'."""
        if self.significant is None:
            return "n/a"
        return "yes" if self.significant else "no"


def _as_matrix(recalls: Sequence[Sequence[float]], n_classes: int) -> np.ndarray:
    matrix = np.full((len(recalls), n_classes), np.nan)
    for row, values in enumerate(recalls):
        for column, value in enumerate(values):
            matrix[row, column] = np.nan if value is None else float(value)
    return matrix


def _as_vector(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if value is None else float(value) for value in values], dtype=float)


def normalised_recall_changes(
    model_recalls: Sequence[Sequence[float]],
    model_accuracies: Sequence[float | None],
    base_recalls: Sequence[Sequence[float]],
    base_accuracies: Sequence[float | None],
    *,
    alpha: float = SIGNIFICANCE_LEVEL,
) -> list[ClassRecallChange]:
    """Per-class normalised recall change of a model against its dense base, with Welch's t-test.

    ``model_recalls[i][c]`` is seed i's recall of class c and ``model_accuracies[i]`` that seed's
    accuracy (likewise for the base). Seeds whose accuracy or class recall is missing (None/NaN) are
    left out of that class. Returns one entry per class (the longest recall vector given).
    """
    if len(model_recalls) != len(model_accuracies):
        raise ValueError("model_recalls and model_accuracies must have one entry per seed")
    if len(base_recalls) != len(base_accuracies):
        raise ValueError("base_recalls and base_accuracies must have one entry per seed")
    n_classes = max((len(values) for values in (*model_recalls, *base_recalls)), default=0)
    model = _as_matrix(model_recalls, n_classes)
    base = _as_matrix(base_recalls, n_classes)
    model_accuracy = _as_vector(model_accuracies)
    base_accuracy = _as_vector(base_accuracies)

    tests = []
    for class_index in range(n_classes):
        model_gap = model[:, class_index] - model_accuracy  # recall_c - accuracy, per seed
        base_gap = base[:, class_index] - base_accuracy
        # Round away floating-point noise: otherwise gaps that agree to 1e-16 but have no spread at all
        # would make the t-test "significant" on rounding error alone.
        model_gap = np.round(model_gap[np.isfinite(model_gap)], GAP_DECIMALS)
        base_gap = np.round(base_gap[np.isfinite(base_gap)], GAP_DECIMALS)
        difference = welch_difference(model_gap, base_gap)
        # The estimate, mean(recall - acc) - mean(base recall - base acc), equals the formula in the module
        # doc whenever the same seeds enter both means, which is what dropping incomplete seeds ensures.
        tests.append((difference, int(model_gap.size), int(base_gap.size)))
    adjusted = holm([difference.p_value if difference.testable else math.nan for difference, _, _ in tests])
    return [
        ClassRecallChange(
            class_index=class_index,
            change=difference.estimate,
            p_value=difference.p_value if difference.testable else None,
            adjusted_p=adjusted_p if difference.testable else None,
            significant=bool(adjusted_p < alpha) if difference.testable else None,
            n_model=n_model,
            n_base=n_base,
        )
        for class_index, ((difference, n_model, n_base), adjusted_p) in enumerate(zip(tests, adjusted, strict=True))
    ]
