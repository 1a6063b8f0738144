"""A study's report: figures and one self-contained HTML page, drawn from the results database only."""

from __future__ import annotations

import sys
from pathlib import Path

from sparsecap.errors import StudyDirectoryError
from sparsecap.report.aggregate import class_recall_analysis, load_study, summarise_points
from sparsecap.report.class_recall import ClassRecallChange, normalised_recall_changes
from sparsecap.report.figures import write_figures
from sparsecap.report.page import render_page

REPORT_DIRECTORY = "report"
PAGE_FILE = "index.html"

__all__ = ["ClassRecallChange", "normalised_recall_changes", "write_report", "REPORT_DIRECTORY", "PAGE_FILE"]


def write_report(study_directory: Path) -> Path:
    """Write `study_directory/report/index.html` and its PNG figures; return the page's path.

    Raises StudyDirectoryError when the directory holds no results database or no finished trial.
    """
    results = load_study(Path(study_directory))
    for trial_id, problem in sorted(results.damaged_checkpoints.items()):
        print(f"warning: checkpoint of {trial_id} is {problem}; rerun the study to train it again", file=sys.stderr)
    points_by_group = summarise_points(results)
    analysis = class_recall_analysis(results, points_by_group)
    directory = Path(study_directory) / REPORT_DIRECTORY
    try:
        figures = write_figures(points_by_group, analysis, directory)
        page = directory / PAGE_FILE
        page.write_text(render_page(results, points_by_group, analysis, figures), encoding="utf-8")
    except OSError as error:
        raise StudyDirectoryError(
            f"cannot write the report to {directory}: {error.strerror or error}; the results database is "
            f"untouched (copy the study directory somewhere writable to draw its report there)"
        ) from None
    return page
