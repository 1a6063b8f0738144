"""What a report says of read results, computed once for the page, the figures and `sparsecap claims`."""

from __future__ import annotations

from dataclasses import dataclass

from sparsecap.report.aggregate import (
    GroupKey,
    PointRecallAnalysis,
    PointSummary,
    StudyResults,
    class_recall_analysis,
    summarise_points,
)
from sparsecap.report.claims import ClaimVerdict, Collapse, StudyCurves, collapses, evaluate_claims, study_curves


@dataclass(frozen=True)
class Analysis:
    """What a report says of read results: per-point summaries, curves with intervals, class recall, claims."""

    points_by_group: dict[GroupKey, list[PointSummary]]
    curves: StudyCurves
    recall: dict[GroupKey, list[PointRecallAnalysis]]
    claims: list[ClaimVerdict]
    collapses: list[Collapse]
    unfinished_trials: tuple[str, ...] = ()
    """Planned trials without a result (failed, or not yet run): the claims rest on the others."""


def analyse(results: StudyResults) -> Analysis:
    """Everything the page and `sparsecap claims` show, computed once from one study or several combined."""
    points_by_group = summarise_points(results)
    curves = study_curves(results, points_by_group)
    recall = class_recall_analysis(results, points_by_group)
    return Analysis(points_by_group, curves, recall, evaluate_claims(results, points_by_group, curves, recall),
                    collapses(curves), results.unfinished_trials)
