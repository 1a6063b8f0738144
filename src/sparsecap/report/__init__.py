"""A study's report: figures and one self-contained HTML page, drawn from the results database only."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from sparsecap.errors import StudyDirectoryError
from sparsecap.report.aggregate import StudyResults, incomplete_warning
from sparsecap.report.analysis import Analysis, analyse
from sparsecap.report.claims import ClaimVerdict
from sparsecap.report.class_recall import ClassRecallChange, normalised_recall_changes
from sparsecap.report.combined import check_distinct, load_studies
from sparsecap.report.claims_format import findings_by_claim
from sparsecap.report.figures import FIGURE_CLAIMS, write_figures
from sparsecap.report.page import render_page

REPORT_DIRECTORY = "report"
PAGE_FILE = "index.html"

__all__ = ["Analysis", "ClassRecallChange", "analyse", "draw_report", "normalised_recall_changes", "read_results",
           "study_claims", "write_report", "REPORT_DIRECTORY", "PAGE_FILE"]


def read_results(study_directories: Sequence[Path]) -> StudyResults:
    """One study's results, or several combined, saying on stderr what its figures and verdicts cannot rest on:
    damaged checkpoints, and the planned trials without a result (failed, or left unrun by a stopped run). Raises
    StudyDirectoryError for a directory that is not a study."""
    results = load_studies(study_directories)
    for trial_id, problem in sorted(results.damaged_checkpoints.items()):
        print(f"warning: checkpoint of {trial_id} is {problem}; rerun the study to train it again", file=sys.stderr)
    warning = incomplete_warning(results)
    if warning is not None:
        print(f"warning: {warning}", file=sys.stderr)
    return results


def study_claims(results: StudyResults) -> list[ClaimVerdict]:
    """The claims table of read results (one study, or several combined)."""
    return analyse(results).claims


def write_report(*study_directories: Path, out: Path | None = None) -> Path:
    """Write the report page and its PNG figures; return the page's path.

    One study's report goes to `study_directory/report/` unless `out` says otherwise; several studies are
    combined into one report (their claims compared), which needs `out`. Raises StudyDirectoryError when a
    directory holds no results database or no finished trial, or the studies cannot be combined.
    """
    check_distinct(study_directories)  # before asking for --out, which a study named twice does not need
    if len(study_directories) > 1 and out is None:
        raise StudyDirectoryError("a report of several studies needs --out REPORTDIR (it belongs to none of them)")
    results = read_results(study_directories)
    directory = Path(out) if out is not None else Path(study_directories[0]) / REPORT_DIRECTORY
    return draw_report(results, analyse(results), directory)


def draw_report(results: StudyResults, analysis: Analysis, directory: Path) -> Path:
    """Write the page and figures of analysed results into `directory`; return the page's path. Apart from
    `write_report` so that a caller printing the claims too analyses the results once."""
    if directory.exists() and not directory.is_dir():  # mkdir's "File exists" would not say what is wrong
        raise StudyDirectoryError(f"the report's path {directory} exists and is not a directory; give --out a "
                                  f"directory")
    try:
        findings = findings_by_claim(analysis.claims)
        captions = {key: " ".join(findings[claim] for claim in claims if claim in findings)
                    for key, claims in FIGURE_CLAIMS.items()}
        figures = write_figures(analysis.points_by_group, analysis.recall, directory, captions)
        page = directory / PAGE_FILE
        page.write_text(render_page(results, analysis, figures), encoding="utf-8")
    except OSError as error:
        raise StudyDirectoryError(
            f"cannot write the report to {error.filename or directory}: {error.strerror or error}; the results "
            f"database is untouched (copy the study directory somewhere writable to draw its report there)"
        ) from None
    return page
