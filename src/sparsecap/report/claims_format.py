"""The claims table as terminal text, Markdown and JSON (the HTML page draws its own from the same rows)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

from sparsecap.report.analysis import Analysis
from sparsecap.report.claims import (
    ACCURACY_MARGIN,
    DELTA_LOSS_MARGIN,
    RECALL_MARGIN,
    ClaimVerdict,
    Collapse,
    Curve,
    Verdict,
    verdict_counts,
)
from sparsecap.report.statistics import CONFIDENCE

LINE_WIDTH = 100
"""Where the terminal text of `claims_text` and `collapses_text` wraps."""
KEY_WIDTH = 9
"""The claim key's column ("c1", "golubeva"), widened for a longer key; a verdict's lines are indented by it."""
METHOD = (
    f"{CONFIDENCE:.0%} t-intervals over seeds; differences from the dense base by Welch's test (by rank where a "
    f"loss overflowed), p-values Holm-corrected over the points of a curve (the intervals are per point); margins, "
    f"which an effect must exceed to hold and intervals must exclude not to: accuracy {ACCURACY_MARGIN * 100:g} pp, "
    f"minimum class recall {RECALL_MARGIN * 100:g} pp (non-inferiority), ΔL {DELTA_LOSS_MARGIN:.0%} of the base's."
)


PLURAL = {Verdict.HOLDS: "hold", Verdict.FAILS: "do not hold", Verdict.INCONCLUSIVE: "inconclusive"}
"""A count's verb: '1 holds', '3 hold'."""


def summary_line(verdicts: Sequence[ClaimVerdict]) -> str:
    """The verdicts counted; those inconclusive for want of data are named apart, since a count that merged
    them with evidence weighed and found wanting would overstate what the study tested."""
    counts = verdict_counts(verdicts)
    under = sum(bool(entry.under_trained) for entry in verdicts)
    diverged = sum(bool(entry.diverged) for entry in verdicts)
    untested = [entry.claim.key for entry in verdicts if entry.untested]
    return (", ".join(f"{count} {verdict.value if count == 1 else PLURAL[verdict]}"
                      for verdict, count in counts.items())
            + (f" ({len(untested)} of them untested: no data for {', '.join(sorted(set(untested)))})" if untested
               else "")
            + (f"; {under} verdict(s) on under-trained models" if under else "")
            + (f"; {diverged} verdict(s) with diverged seeds left out" if diverged else ""))


def claims_text(verdicts: Sequence[ClaimVerdict]) -> str:
    """One block per verdict, wrapped for a terminal."""
    lines = ["Claims: " + summary_line(verdicts), textwrap.fill(METHOD, LINE_WIDTH), ""]
    key_width = max([KEY_WIDTH] + [len(entry.claim.key) + 2 for entry in verdicts])  # "posttrain-finetune vs static"
    for entry in verdicts:
        flag = "".join(f"  [{flag.upper()}]" for flag in entry.flags)
        lines.append(f"{entry.claim.key:<{key_width}}{entry.verdict.value.upper()}{flag}   {entry.scope}")
        for label, text in (("claim", entry.claim.statement), ("why", entry.finding.reason),
                            ("numbers", entry.finding.evidence), ("trained to the stopping rule", entry.training_text)):
            if text:
                lines.append(textwrap.fill(f"{label}: {text}", LINE_WIDTH, initial_indent=" " * KEY_WIDTH,
                                           subsequent_indent=" " * (KEY_WIDTH + 2)))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def findings_by_claim(verdicts: Sequence[ClaimVerdict]) -> dict[str, str]:
    """Per claim key, one sentence of its verdicts: 'c1 holds for mlp · mnist · width family · static; ...'."""
    sentences: dict[str, list[str]] = {}
    for entry in verdicts:
        flag = "".join(f" ({flag})" for flag in entry.flags)
        sentences.setdefault(entry.claim.key, []).append(f"{entry.verdict.value}{flag} for {entry.scope}")
    return {key: f"{key} " + "; ".join(parts) + "." for key, parts in sentences.items()}


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def claims_markdown(analysis: Analysis) -> str:
    """The claims table in Markdown, for notes and papers; an unfinished study says so above it, since a pasted
    table loses the terminal's warning."""
    verdicts = analysis.claims
    header = "| claim | scope | verdict | why | numbers | trained to the stopping rule |\n|---|---|---|---|---|---|\n"
    rows = "".join(
        "| " + " | ".join(_markdown_cell(cell) for cell in (
            f"{entry.claim.key}: {entry.claim.statement}", entry.scope, f"**{entry.verdict.value}**",
            entry.finding.reason, entry.finding.evidence or "—", entry.training_text)) + " |\n"
        for entry in verdicts
    )
    missing = analysis.unfinished_trials
    incomplete = (f"**Incomplete study:** {len(missing)} planned trial(s) without a result, failed or not yet run "
                  f"(e.g. {missing[0]}); the verdicts rest on the others.\n\n" if missing else "")
    return f"{incomplete}{summary_line(verdicts)}\n\n{METHOD}\n\n{header}{rows}"


def _json_number(value: Any) -> Any:
    """Standard JSON has no NaN or infinity: NaN (nothing measured) becomes null, an infinity (a loss that
    overflowed under weight noise) the string "Infinity" or "-Infinity", which float() and JavaScript's
    Number() read back."""
    if not isinstance(value, float) or math.isfinite(value):
        return value
    return None if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"


def curve_rows(curve: Curve) -> list[dict[str, Any]]:
    """A curve as plain rows: mean and CI, difference from the base with its CI and (Holm) p, sweet spot."""
    sweet = curve.sweet_spot
    return [
        {
            "point": point.label, "width": point.width, "depth": point.depth,
            "remaining_percent": point.remaining_percent, "seeds": point.interval.n,
            "mean": point.interval.mean, "ci_low": point.interval.low, "ci_high": point.interval.high,
            "difference_from_base": None if point.is_base else point.versus_base.estimate,
            "difference_ci_low": None if point.is_base else point.versus_base.low,
            "difference_ci_high": None if point.is_base else point.versus_base.high,
            "p_value": None if point.is_base else point.versus_base.p_value,
            "holm_p_value": None if point.is_base else point.adjusted_p,
            "base": point.is_base, "sweet_spot": point is sweet,
            "under_trained": point.under_trained, "diverged": point.diverged,
        }
        for point in curve.points
    ]


def _curve_json(curve: Curve) -> dict[str, Any]:
    return {"group": curve.group.label, "measure": curve.measure.label, "margin": _json_number(curve.margin),
            "points": [{key: _json_number(value) for key, value in row.items()} for row in curve_rows(curve)]}


def collapses_text(collapses: Sequence[Collapse]) -> str:
    """Where each group's collapse starts, and the connectivity there."""
    lines = ["Where the collapse starts:"]
    lines += [textwrap.fill(f"{entry.group.label}: {entry.text}", LINE_WIDTH, initial_indent="  ", subsequent_indent="    ")
              for entry in collapses]
    return "\n".join(lines) + "\n"


def claims_json(analysis: Analysis) -> dict[str, Any]:
    """The claims table with its deciding curves, every group's curve of every measure, where each group
    collapses, and the planned trials without a result (failed or not yet run), JSON-ready (`_json_number`)."""
    verdicts = analysis.claims
    return {
        "method": METHOD,
        "unfinished_trials": list(analysis.unfinished_trials),
        "measures": [_curve_json(curve) for by_measure in analysis.curves.values() for curve in by_measure.values()],
        "collapses": [
            {"group": entry.group.label, "text": entry.text,
             "collapse": None if entry.collapse is None else entry.collapse.label,
             "before": None if entry.before is None else entry.before.label,
             "connectivity": {measure.key: {"before": _json_number(before), "at_collapse": _json_number(at)}
                              for measure, (before, at) in entry.connectivity.items()}}
            for entry in analysis.collapses
        ],
        "claims": [
            {
                "claim": entry.claim.key, "statement": entry.claim.statement, "scope": entry.scope,
                "verdict": entry.verdict.value, "reason": entry.finding.reason, "evidence": entry.finding.evidence,
                "trials": entry.trials, "under_trained": entry.under_trained, "diverged": entry.diverged,
                "trained_to_rule": entry.trained_to_rule,
                "curves": [_curve_json(curve) for curve in entry.curves],
            }
            for entry in verdicts
        ],
    }
