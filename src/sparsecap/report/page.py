"""The report's self-contained HTML page (inline CSS, relative links to the PNG figures beside it)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from sparsecap.report.aggregate import (
    GroupKey,
    PointRecallAnalysis,
    PointSummary,
    StudyResults,
    adversarial_budgets,
    incomplete_warning,
    noise_sigmas,
    stop_loss_of,
    under_trained_note,
)
from sparsecap.report.analysis import Analysis
from sparsecap.report.claims import (
    ACCURACY_MARGIN,
    CLEAN_ACCURACY,
    CORRUPTED_ACCURACY,
    MIN_CLASS_RECALL,
    NOISE_ACCURACY,
    NOISE_DELTA_LOSS,
    ROBUST_ACCURACY,
    ClaimVerdict,
    Collapse,
    StudyCurves,
    Verdict,
)
from sparsecap.report.claims_format import METHOD, summary_line
from sparsecap.report.figures import FigureInfo
from sparsecap.report.statistics import SIGNIFICANCE_LEVEL
from sparsecap.studies.database import DIVERGED, FINISHED

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d1d1f;
       background: #fafafa; line-height: 1.45; }
main { max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 3rem; background: #fff; }
h1 { font-size: 1.7rem; margin: 0.2rem 0 0.6rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
p.lead { font-size: 1.02rem; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #e3e3e3; }
figcaption { font-size: 0.92rem; color: #444; max-width: 70rem; }
figcaption strong { color: #1d1d1f; }
pre { background: #f4f4f6; padding: 0.8rem; overflow-x: auto; font-size: 0.82rem; border-radius: 4px; }
details summary { cursor: pointer; font-weight: 600; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.6rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: right; white-space: nowrap; }
th { background: #f0f0f3; white-space: normal; vertical-align: bottom; }
td.text, th.text { text-align: left; }
tr.group-row td { background: #e8eef7; font-weight: 600; text-align: left; }
tr.point-row:nth-child(even) td { background: #fbfbfd; }
td.sig { font-weight: 700; }
td.neg { color: #b2182b; }
td.pos { color: #2166ac; }
.muted { color: #777; }
td.wrap { white-space: normal; min-width: 9rem; max-width: 26rem; }
td.verdict { font-weight: 700; }
td.verdict.holds { color: #1a7f37; }
td.verdict.fails { color: #b2182b; }
td.verdict.inconclusive { color: #7a5d00; }
td.under-trained { color: #b2182b; font-weight: 600; }
.warning { border-left: 4px solid #c0392b; background: #fdf2f0; padding: 0.2em 1em; margin: 1em 0; }
"""


def _cell(value: Any, css_class: str | None = None) -> str:
    attribute = f' class="{escape(css_class)}"' if css_class else ""
    return f"<td{attribute}>{escape(str(value))}</td>"


def _header(labels: Iterable[str], text_columns: int = 0) -> str:
    cells = [
        f'<th class="text">{escape(label)}</th>' if index < text_columns else f"<th>{escape(label)}</th>"
        for index, label in enumerate(labels)
    ]
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def _table(table_id: str, labels: Iterable[str], rows: Iterable[str]) -> str:
    """A scrollable results table: one text column (the point), then numbers."""
    return (f'<div class="table-wrap"><table id="{table_id}">' + _header(labels, text_columns=1)
            + "<tbody>" + "".join(rows) + "</tbody></table></div>")


def _percent(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.3g}"


def summary_text(results: StudyResults, points_by_group: dict[GroupKey, list[PointSummary]]) -> str:
    """One sentence per fact: trial counts, seeds, groups and points."""
    finished = results.trials_with_status(FINISHED)
    diverged = results.trials_with_status(DIVERGED)
    other = len(results.trials) - len(finished) - len(diverged)
    seeds = sorted({int(trial["seed"]) for trial in results.trials})
    n_points = sum(len(points) for points in points_by_group.values())
    sigmas = noise_sigmas(points_by_group)
    parts = [
        f"{len(results.trials)} trial(s) recorded: {len(finished)} finished, {len(diverged)} diverged"
        + (f", {other} with another status" if other else "")
        + ".",
        f"{len(seeds)} seed(s) ({', '.join(str(seed) for seed in seeds)}).",
        f"{len(points_by_group)} group(s) (architecture × dataset × family × schedule) with {n_points} "
        f"width/depth point(s) in all.",
    ]
    if sigmas:
        parts.append(f"Weight-noise levels σ: {', '.join(f'{sigma:g}' for sigma in sigmas)}.")
    else:
        parts.append("No weight-noise results were recorded.")
    budgets = adversarial_budgets(points_by_group)
    if budgets:
        attacks = "; ".join(
            f"{attack.upper()} at ε {', '.join(f'{epsilon:.4g}' for epsilon in epsilons)}"
            for attack, epsilons in budgets.items()
        )
        parts.append(f"Adversarial attacks (L∞ budgets in pixel units): {attacks}.")
    parts.append(
        "Statistics use finished trials only: per trial, weight-noise results are averaged over draws, then "
        "mean ± sample std are taken over seeds."
    )
    return " ".join(parts)


def _kept_paths_text(point: PointSummary) -> str:
    """The log10 kept path fraction over seeds, saying how many seeds keep no path (-inf, outside the mean)."""
    if point.n_severed and point.n_severed == point.n_finished:
        return "no path kept"
    text = point.path_fraction_log10.format(2)
    return f"{text} ({point.n_severed} seed(s) keep no path)" if point.n_severed else text


def _results_table(points_by_group: dict[GroupKey, list[PointSummary]]) -> str:
    sigmas = noise_sigmas(points_by_group)
    labels = ["point", "width", "depth", "remaining %", "seeds", "diverged", "epochs", "under-trained",
              "clean accuracy", "min class recall",
              "log₁₀ kept paths", "min effective width"]
    labels += [f"accuracy @ σ={sigma:g}" for sigma in sigmas]
    rows = []
    for group, points in points_by_group.items():
        rows.append(f'<tr class="group-row"><td colspan="{len(labels)}">{escape(group.label)}</td></tr>')
        for point in points:
            cells = [
                _cell(point.label + (" (dense base)" if point.is_base else ""), "text"),
                _cell(point.width),
                _cell(point.depth),
                _cell(_percent(point.remaining_percent)),
                _cell(point.n_finished),
                _cell(point.n_diverged),
                _cell(point.epochs.format(1)),
                _cell(point.n_under_trained, "under-trained" if point.n_under_trained else None),
                _cell(point.clean_accuracy.format()),
                _cell(point.min_class_recall.format()),
                _cell(_kept_paths_text(point)),
                _cell(point.min_effective_width_fraction.format()),
            ]
            for sigma in sigmas:
                stat = point.noise_accuracy.get(sigma)
                cells.append(_cell(stat.format() if stat is not None else "—"))
            rows.append('<tr class="point-row">' + "".join(cells) + "</tr>")
    return _table("results-table", labels, rows)


def _recall_table(analysis: dict[GroupKey, list[PointRecallAnalysis]]) -> str:
    n_classes = max(len(entry.changes) for entries in analysis.values() for entry in entries)
    labels = ["point", "remaining %", "seeds (model / base)", "significant classes"]
    labels += [f"class {index}" for index in range(n_classes)]
    rows = []
    for group, entries in analysis.items():
        base = entries[0].base
        rows.append(
            f'<tr class="group-row"><td colspan="{len(labels)}">{escape(group.label)} — against dense base '
            f"{escape(base.label)}</td></tr>"
        )
        for entry in entries:
            significant = [change.class_index for change in entry.changes if change.significant]
            if not any(change.significant is not None for change in entry.changes):
                significant_text = "n/a"
            else:
                significant_text = ", ".join(str(index) for index in significant) or "none"
            n_model = max((change.n_model for change in entry.changes), default=0)
            n_base = max((change.n_base for change in entry.changes), default=0)
            cells = [
                _cell(entry.point.label, "text"),
                _cell(_percent(entry.point.remaining_percent)),
                _cell(f"{n_model} / {n_base}"),
                _cell(significant_text, "text"),
            ]
            by_class = {change.class_index: change for change in entry.changes}
            for index in range(n_classes):
                change = by_class.get(index)
                if change is None or not math.isfinite(change.change):
                    cells.append(_cell("—", "muted"))
                    continue
                text = f"{change.change:+.3f}"
                classes = [] if abs(change.change) < 5e-4 else ["neg" if change.change < 0 else "pos"]
                if change.significant is None:
                    text += " (n/a)"
                elif change.significant:
                    text += "*"
                    classes.append("sig")
                if change.p_value is not None and change.adjusted_p is not None and math.isfinite(change.p_value):
                    title = f"p = {change.p_value:.3g}, Holm over the point's classes {change.adjusted_p:.3g}"
                else:
                    title = "test not possible (fewer than 2 seeds)" if change.significant is None else "p undefined"
                cells.append(f'<td class="{" ".join(classes)}" title="{escape(title)}">{escape(text)}</td>')
            rows.append('<tr class="point-row">' + "".join(cells) + "</tr>")
    return _table("class-recall-table", labels, rows)


def _figures_html(figures: Sequence[FigureInfo]) -> str:
    blocks = []
    for number, info in enumerate(figures, start=1):
        blocks.append(
            f'<figure id="{escape(info.filename.removesuffix(".png"))}">'
            f'<img src="{escape(info.filename)}" alt="{escape(info.title)}">'
            f"<figcaption><strong>Figure {number}. {escape(info.title)}.</strong> {escape(info.caption)}"
            "</figcaption></figure>"
        )
    return "\n".join(blocks)


def _placements_html(trials: Sequence[dict[str, Any]]) -> str:
    """Where the trials ran (device, its name, versions, threads), counted: a study may span machines."""
    keys = ("device", "device_name", "torch_version", "cuda_version", "threads")
    counts = Counter(tuple(trial.get(key) for key in keys) for trial in trials if trial.get("device"))
    if not counts:
        return '<p class="muted">Where the trials ran was not recorded (a study from before sparsecap kept it).</p>'
    rows = "".join("<tr>" + "".join(_cell("—" if value is None else value, "text") for value in placement)
                   + _cell(count) + "</tr>" for placement, count in sorted(counts.items(), key=str))
    return ('<div class="table-wrap"><table id="placements-table">'
            + _header(["device", "name", "torch", "CUDA", "threads", "trials"], text_columns=5)
            + f"<tbody>{rows}</tbody></table></div>")


VERDICT_CLASSES = {Verdict.HOLDS: "holds", Verdict.FAILS: "fails", Verdict.INCONCLUSIVE: "inconclusive"}


def _claims_html(claims: Sequence[ClaimVerdict]) -> str:
    """The answer first: one row per claim and scope, its verdict, why, the numbers, and how trained."""
    rows = "".join(
        f'<tr class="claim-row verdict-{VERDICT_CLASSES[entry.verdict]}">'
        + _cell(entry.claim.key, "text")
        + _cell(entry.claim.statement, "text wrap")
        + _cell(entry.scope, "text wrap")
        + _cell(entry.verdict.value, f"text verdict {VERDICT_CLASSES[entry.verdict]}")
        + _cell(entry.finding.reason, "text wrap")
        + _cell(entry.finding.evidence or "—", "text wrap")
        + _cell(entry.training_text, "text wrap" + ("" if entry.trained_to_rule else " under-trained"))
        + "</tr>"
        for entry in claims
    )
    return (f'<p id="claims-summary"><strong>{escape(summary_line(claims))}.</strong> {escape(METHOD)}</p>'
            '<div class="table-wrap"><table id="claims-table">'
            + _header(["claim", "the paper says", "scope", "verdict", "why", "numbers", "trained to the stopping rule"],
                      text_columns=7)
            + f"<tbody>{rows}</tbody></table></div>")


HEADLINE_MEASURES = (CLEAN_ACCURACY, NOISE_ACCURACY, NOISE_DELTA_LOSS, CORRUPTED_ACCURACY, ROBUST_ACCURACY,
                     MIN_CLASS_RECALL)


def _statistics_html(curves: StudyCurves) -> str:
    """Per group, measure and point: mean with its CI, the difference from the base with its CI and Holm p."""
    labels = ["measure · point", "remaining %", "seeds", "mean [95% CI]", "− base [95% CI]", "Holm p"]
    rows = []
    for group, by_measure in curves.items():
        rows.append(f'<tr class="group-row"><td colspan="{len(labels)}">{escape(group.label)}</td></tr>')
        for measure in (measure for measure in HEADLINE_MEASURES if measure in by_measure):
            curve = by_measure[measure]
            sweet = curve.sweet_spot
            for point in curve.points:
                interval, difference = point.interval, point.versus_base
                note = " (dense base)" if point.is_base else " ★ sweet spot" if point is sweet else ""
                rows.append(
                    '<tr class="statistic-row">'
                    + _cell(f"{measure.label} · {point.label}{note}", "text")
                    + _cell(_percent(point.remaining_percent)) + _cell(interval.n)
                    + _cell(f"{measure.show(interval.mean)} [{measure.show(interval.low)}, {measure.show(interval.high)}]")
                    + _cell("—" if point.is_base else f"{measure.show(difference.estimate, signed=True)} "
                            f"[{measure.show(difference.low, signed=True)}, {measure.show(difference.high, signed=True)}]")
                    + _cell("—" if not math.isfinite(point.adjusted_p) else f"{point.adjusted_p:.2g}",
                            "sig" if point.significant else None)
                    + "</tr>")
    return _table("statistics-table", labels, rows)


def _version_text(value: Any) -> str:
    """A recorded version, or a combined study's versions of one study (component -> version) as one line."""
    if isinstance(value, dict):
        return ", ".join(f"{component} {version}" for component, version in sorted(value.items()))
    return value if isinstance(value, str) else json.dumps(value)


def _incomplete_html(results: StudyResults) -> str:
    warning = incomplete_warning(results)
    if warning is None:
        return ""
    items = "".join(f"<li>{escape(trial_id)}</li>" for trial_id in results.unfinished_trials)
    return (f'<div id="incomplete-study" class="warning"><p><strong>Incomplete study.</strong> {escape(warning)}.</p>'
            f"<details><summary>Show the trials without a result</summary><ul>{items}</ul></details></div>")


def _under_trained_html(results: StudyResults) -> str:
    note = under_trained_note(results.trials, stop_loss_of(results))
    if note is None:
        return ""
    return (f'<div id="under-trained" class="warning"><p><strong>Under-trained models.</strong> {escape(note)}. '
            "Their points show how far training got rather than what sparsity does; the results table counts them "
            "per point and the verdicts over them say so. To train them to the stopping rule, run the study again "
            "with a larger <code>training.max_epochs</code> into a new output directory.</p></div>")


def _damaged_html(damaged: dict[str, str]) -> str:
    """Trials whose checkpoint is gone or altered: their results stand, but their weights cannot be reloaded."""
    if not damaged:
        return ""
    items = "".join(f"<li>{escape(trial_id)}: {escape(problem)}</li>" for trial_id, problem in sorted(damaged.items()))
    return (f'<div id="damaged-checkpoints" class="warning"><p><strong>{len(damaged)} checkpoint(s) missing or '
            f"damaged.</strong> Their trials' results below are as recorded; rerun the study to train them "
            f"again and rewrite the checkpoints.</p><details><summary>Show the trials</summary><ul>{items}</ul>"
            "</details></div>")


def _collapses_html(collapses: Sequence[Collapse]) -> str:
    if not collapses:
        return '<p class="muted">No group has clean accuracies to locate a collapse in.</p>'
    items = "".join(f"<li><strong>{escape(entry.group.label)}</strong>: {escape(entry.text)}.</li>" for entry in collapses)
    return f'<ul id="collapses">{items}</ul>'


def render_page(results: StudyResults, report: Analysis, figures: Sequence[FigureInfo]) -> str:
    """The whole HTML document as a string; every piece of text from the study is escaped."""
    points_by_group, analysis, claims, curves = report.points_by_group, report.recall, report.claims, report.curves
    name = results.name
    spec_json = json.dumps(results.spec, indent=2, sort_keys=True, default=str)
    versions = results.versions
    if versions:
        versions_html = (
            '<div class="table-wrap"><table id="versions-table">'
            + _header(["component", "version"], text_columns=2)
            + "<tbody>"
            + "".join(
                f"<tr>{_cell(key, 'text')}{_cell(_version_text(value), 'text')}</tr>"
                for key, value in sorted(versions.items())
            )
            + "</tbody></table></div>"
        )
    else:
        versions_html = '<p class="muted">No versions were recorded.</p>'
    groups_without_base = [group for group in points_by_group if group not in analysis]
    recall_note = ""
    if groups_without_base:
        recall_note = (
            '<p class="muted">No class-recall comparison for: '
            + escape("; ".join(group.label for group in groups_without_base))
            + " (the group has no dense base point at 100 % remaining weights with recorded class recalls,"
            " or no compressed point).</p>"
        )
    recall_section = (
        "<p>Normalised recall change of each class: (mean recall of the class − mean recall of the class "
        "in the dense base) − (mean accuracy − mean accuracy of the dense base), over seeds. * marks a "
        f"significant difference (two-sided Welch t-test of the seeds' recall − accuracy, p Holm-adjusted over "
        f"the point's classes &lt; {SIGNIFICANCE_LEVEL:g}); n/a: fewer than two seeds on a side. Hover a cell for "
        f"its p-values.</p>"
        + (_recall_table(analysis) if analysis else "")
        + recall_note
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(name)} — sparsecap report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<p class="muted">sparsecap study report</p>
<h1>{escape(name)}</h1>
<p class="lead" id="summary">{escape(summary_text(results, points_by_group))}</p>
{_incomplete_html(results)}
{_under_trained_html(results)}
{_damaged_html(results.damaged_checkpoints)}
<h2>Do the paper's claims hold?</h2>
{_claims_html(claims)}
<p>Does sparsity itself make networks fragile, or the capacity lost with it? Every model of a group holds
the same number of nonzero weights; wider or deeper models are masked more sparsely. <em>static</em>: a random
mask fixed at initialisation; <em>posttrain</em>: dense training followed by magnitude pruning without
fine-tuning; beyond the paper, <em>posttrain-finetune</em> fine-tunes after that pruning, <em>set</em> and
<em>rigl</em> move a random mask during training (regrowing at random or where the gradient is largest) and
<em>imp</em> prunes iteratively with rewinding (README: schedules). Remaining weights (%) = 100 × nonzero / total weights; the dense base model has 100 %.</p>
<h3>Where the collapse starts, and the connectivity there</h3>
<p>The paper explains the collapse at extreme sparsity by loose connectivity between layers. Per group: the
densest point whose clean accuracy is significantly (Holm) more than {ACCURACY_MARGIN * 100:g} pp below the base, and the mask's
connectivity (means over seeds) at the point before it and at it.</p>
{_collapses_html(report.collapses)}
<h2>Figures</h2>
{_figures_html(figures)}
<h2>Results</h2>
<p>One row per group and width/depth point: mean ± sample std over the finished seeds. Connectivity of the final
mask (after pruning), counted over units (neurons, or channels joined by any kept kernel weight; residual
blocks sum their branches): <em>log₁₀ kept paths</em> is log₁₀ of the fraction of the dense network's
input-to-output paths that survive (0: all); <em>min effective width</em> is the narrowest hidden layer's
fraction of units on at least one such path.</p>
{_results_table(points_by_group)}
<h2>Per-point statistics</h2>
<p>Accuracies in percent. The mean over the finished seeds with its 95% Student-t interval; the difference from
the group's dense base with its 95% Welch interval, and Welch's p-value Holm-corrected over the points of one
measure (bold: below {SIGNIFICANCE_LEVEL:g}). ★ marks the sweet spot, the best sparse point.</p>
<details><summary>Show the table</summary>{_statistics_html(curves)}</details>
<h2>Class recall against the dense base</h2>
{recall_section}
<h2>Study</h2>
<details open><summary>Spec</summary><pre id="spec">{escape(spec_json)}</pre></details>
<h3>Versions</h3>
{versions_html}
<h3>Where the trials ran</h3>
{_placements_html(results.trials)}
<p class="muted">Source: {escape(str(results.directory))}; drawn from the results database only.</p>
</main>
</body>
</html>
"""
