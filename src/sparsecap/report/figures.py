"""The report's figures: every measure against the share of weights that remain.

Panels and lines. A measure with one value per point (clean accuracy, minimum class recall) gets one
panel per *setting* (architecture · dataset · family) and one line per schedule, so static, post-training
and dynamic schedules of the same models are read off the same axes: the comparison claim c5 needs. A
measure that already spends its lines on a parameter (a line per σ of weight noise, per attack budget ε,
per corruption severity, or clean against corrupted) keeps one panel per group, schedule included: adding
the schedules to those axes would give σ × schedule lines with overlapping bands, and a study with one
schedule (most) keeps one panel per setting. There the schedules of one setting stand side by side (panels
in group order), and every panel of a figure shares one y-axis, so they compare by eye.

Every line is the mean over seeds with its 95% Student-t interval (band and bars, `Stat.interval`, cut to
where the mean can lie: [0, 1] but for ΔL, whose axis turns symmetric-log where a few points dwarf the rest,
`symlog_threshold`); a point with one seed shows its mean alone. The dense base (100 %) is a square on a
dotted vertical line; the sweet spot is a star, chosen by the claims' rule (`claims.sweet_spot_of`: the best
mean, the lowest for ΔL, among the sparser points with at least 2 finished seeds), so the figures, the
statistics table and the verdicts name one point. Captions say what the paper claims for the figure and, where
the caller gives one (`write_figures(findings=...)`, keyed by `FigureKey`), what this study found.

All metric-versus-remaining-weights figures go through one function (`plot_against_remaining`), and the
panel grid is shared with the class-recall heatmap, so a new architecture, family or schedule needs no code
here. Figures are built as `matplotlib.figure.Figure` objects rendered by the Agg canvas, leaving pyplot's
global state alone.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.scale import SymmetricalLogTransform
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator
from matplotlib.transforms import IdentityTransform, Transform

from sparsecap.report.aggregate import (
    GroupKey,
    PointRecallAnalysis,
    PointSummary,
    Stat,
    adversarial_budgets,
    noise_sigmas,
)
from sparsecap.report.claims import CLAIM_BY_KEY, MIN_SEEDS, sweet_spot_of
from sparsecap.report.statistics import FRACTION, SIGNIFICANCE_LEVEL, UNBOUNDED, Interval, within

DPI = 110
PANEL_SIZE = (5.6, 3.9)
MAX_COLUMNS = 2

StatOf = Callable[[PointSummary], Stat | None]


class Panel(Protocol):
    """What a panel is keyed by: a group, or anything else with a title."""

    @property
    def label(self) -> str: ...


@dataclass(frozen=True)
class AttackPanel:
    """One attack within one group (the adversarial figure has a panel per attack per group)."""

    group: GroupKey
    attack: str

    @property
    def label(self) -> str:
        return f"{self.group.label}\n{self.attack.upper()}"


@dataclass(frozen=True, order=True)
class SettingPanel:
    """What the schedules of one comparison share: a panel with one line per schedule."""

    architecture: str
    dataset: str
    family: str

    @classmethod
    def of(cls, group: GroupKey) -> SettingPanel:
        return cls(group.architecture, group.dataset, group.family)

    @property
    def label(self) -> str:
        return f"{self.architecture} · {self.dataset} · {self.family} family"


@dataclass(frozen=True)
class PlotLine:
    """One line of a panel: its points, how to read its statistic off a point, and which way is better."""

    label: str
    points: Sequence[PointSummary]
    stat_of: StatOf
    color: object = None
    """A matplotlib colour; None picks one from the line's position."""
    higher_is_better: bool = True
    """Which end the sweet spot is: the highest mean, or the lowest (ΔL)."""
    value_range: tuple[float, float] = FRACTION
    """Where a mean can lie (accuracies, recalls; ΔL anywhere): bands and bars are cut to it, as a t-interval over
    2 or 3 seeds reaches far past it."""

    def interval(self, stat: Stat) -> Interval:
        return within(stat.interval, *self.value_range)


class FigureKey(str, enum.Enum):
    """One figure of the report: its file's stem, and the key of its finding in `write_figures(findings=...)`."""

    CLEAN_ACCURACY = "clean_accuracy"
    ACCURACY_UNDER_NOISE = "accuracy_under_noise"
    DELTA_LOSS_UNDER_NOISE = "delta_loss_under_noise"
    MIN_CLASS_RECALL = "min_class_recall"
    ADVERSARIAL_ACCURACY = "adversarial_accuracy"
    CORRUPTED_ACCURACY = "corrupted_accuracy"
    CORRUPTION_BREAKDOWN = "corruption_breakdown"
    CLASS_RECALL_CHANGES = "class_recall_changes"


READING_HINTS: Mapping[FigureKey, str] = {
    FigureKey.CLEAN_ACCURACY: "where both are drawn, c5 expects the posttrain line to fall below its base at a "
                              "denser point than the static one",
    FigureKey.DELTA_LOSS_UNDER_NOISE: "at each σ the line should lie lower towards the sparse (right) end, sparser "
                                      "being better",
    FigureKey.CLASS_RECALL_CHANGES: "no class should lose significantly more recall than the model loses accuracy",
}
"""How a figure shows its claims, where that is not plain from their statements."""
FIGURE_CLAIMS: Mapping[FigureKey, tuple[str, ...]] = {
    FigureKey.CLEAN_ACCURACY: ("golubeva", "c5"),
    FigureKey.ACCURACY_UNDER_NOISE: ("c1",),
    FigureKey.DELTA_LOSS_UNDER_NOISE: ("c1",),
    FigureKey.MIN_CLASS_RECALL: ("c4",),
    FigureKey.ADVERSARIAL_ACCURACY: ("c3",),
    FigureKey.CORRUPTED_ACCURACY: ("c2",),
    FigureKey.CORRUPTION_BREAKDOWN: ("c2",),
    FigureKey.CLASS_RECALL_CHANGES: ("c4",),
}
"""The claims (`sparsecap.report.claims` keys) whose statements and verdicts each figure's caption reports."""


def paper_claims_text(key: FigureKey) -> str:
    """What the paper claims for a figure: its claims' statements (`CLAIM_BY_KEY`, the verdicts' own), and how
    the figure shows them."""
    statements = "; ".join(f"{claim}: {CLAIM_BY_KEY[claim].statement}" for claim in FIGURE_CLAIMS[key])
    hint = READING_HINTS.get(key)
    return f"{statements}: {hint}" if hint else statements


@dataclass(frozen=True)
class FigureInfo:
    """A written figure and what the page should say about it."""

    key: FigureKey
    title: str
    caption: str

    @property
    def filename(self) -> str:
        return f"{self.key.value}.png"


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)  # attaches an Agg canvas to this figure only
    figure.savefig(path, dpi=DPI, facecolor="white")


def _panel_grid(
    n_panels: int, panel_size: tuple[float, float] = PANEL_SIZE, *, max_columns: int = MAX_COLUMNS
) -> tuple[Figure, list[Axes]]:
    columns = min(max_columns, max(1, n_panels))
    rows = max(1, math.ceil(n_panels / columns))
    figure = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    axes = list(grid.flat)
    for unused in axes[n_panels:]:
        unused.set_visible(False)
    return figure, axes[:n_panels]


def _nice_log_ticks(low: float, high: float) -> list[float]:
    """Round tick positions between low and high for a log axis of remaining percentages."""
    low_exponent = math.floor(math.log10(low))
    high_exponent = math.ceil(math.log10(high))
    for mantissas in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7)):
        ticks = [
            m * 10.0**exponent
            for exponent in range(low_exponent, high_exponent + 1)
            for m in mantissas
            if low <= m * 10.0**exponent <= high
        ]
        if len(ticks) >= 3:
            return ticks
    return ticks


def _percent_label(value: float, _position: object = None) -> str:
    return f"{value:g}"


def _format_remaining_axis(axis: Axes, points: Sequence[PointSummary]) -> None:
    """Log-scale remaining-weights x axis, inverted (sparser to the right), widths/depths on top."""
    xs = np.array([point.remaining_percent for point in points], dtype=float)
    xs = xs[np.isfinite(xs) & (xs > 0)]
    if xs.size == 0:
        return
    low, high = float(xs.min()), float(xs.max())
    axis.set_xlim(high * 1.2, low / 1.2)  # inverted: dense on the left, sparse on the right; set first, or one
    axis.set_xscale("log")                # point's equal limits make matplotlib warn as the scale changes
    axis.xaxis.set_major_locator(FixedLocator(_nice_log_ticks(low / 1.2, high * 1.2)))
    axis.xaxis.set_major_formatter(FuncFormatter(_percent_label))
    axis.xaxis.set_minor_locator(LogLocator(subs="auto"))
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_xlabel("remaining weights (%), log scale")
    axis.grid(True, which="major", alpha=0.3)

    labelled = [point for point in points if math.isfinite(point.remaining_percent) and point.remaining_percent > 0]
    top = axis.secondary_xaxis("top")
    top.set_xticks([point.remaining_percent for point in labelled], [point.label for point in labelled])
    top.xaxis.set_minor_locator(NullLocator())
    top.tick_params(labelsize=7, length=3, pad=1)
    if len(labelled) > 6:
        top.tick_params(labelrotation=45)


def _line_colors(n: int) -> list:
    if n == 1:
        return ["C0"]
    cmap = colormaps["viridis"]
    return [cmap(0.9 * index / max(1, n - 1)) for index in range(n)]


def _present(curve: PlotLine) -> list[tuple[PointSummary, Stat]]:
    """The curve's points that have a value and a place on the log axis, in the curve's order."""
    present = []
    for point in curve.points:
        stat = curve.stat_of(point)
        if stat is not None and stat.present and point.remaining_percent > 0:
            present.append((point, stat))
    return present


def sweet_spot(curve: PlotLine) -> tuple[PointSummary, Stat] | None:
    """The point starred, with its statistic: the claims' sweet spot (`sweet_spot_of`) among the points drawn, so
    the star, the statistics table and the verdicts name the same point."""
    return sweet_spot_of(_present(curve), lambda item: item[0].is_base, lambda item: item[1].n,
                         lambda item: item[1].mean, higher_is_better=curve.higher_is_better)


Y_PADDING = 0.05
"""Share of the data's span left free above and below it."""


DWARFING = 100.0
"""How many times the median |mean| the largest must reach for an unbounded measure to get a log axis: the ΔL
of a VGG at 1/256 of its weights reached 1e5 against about 1 for the other points, which a linear axis
flattens onto zero."""


def symlog_threshold(curves: Iterable[PlotLine]) -> float | None:
    """Where the figure's y axis turns logarithmic (symmetric about 0, linear within ±threshold), or None for a
    linear axis. Only an unbounded measure (ΔL, which can be negative too) gets one, when its largest |mean|
    dwarfs the median |mean|; the threshold is the median's power of ten, so the bulk of points stays linear."""
    curves = list(curves)
    if any(curve.value_range != UNBOUNDED for curve in curves):
        return None
    magnitudes = sorted(abs(stat.mean) for curve in curves for _, stat in _present(curve)
                        if math.isfinite(stat.mean) and stat.mean != 0)
    if not magnitudes:
        return None
    median = magnitudes[len(magnitudes) // 2]
    return 10.0 ** math.floor(math.log10(median)) if magnitudes[-1] >= DWARFING * median else None


def y_transform(threshold: float | None) -> Transform:
    """The y axis's scale as a transform (`symlog_threshold`'s), to pad limits by a share of what is drawn."""
    return IdentityTransform() if threshold is None else SymmetricalLogTransform(10, threshold, 1)


def shared_y_limits(curves: Iterable[PlotLine], transform: Transform | None = None) -> tuple[float, float] | None:
    """One y range for every panel of a figure: every mean and every interval end, padded by a share of the
    span as drawn on the axis's `transform` (None: linear).

    None when no curve has a value (each panel then keeps its own, empty, axis).
    """
    values = [
        value
        for curve in curves
        for _, stat in _present(curve)
        for interval in [curve.interval(stat)]
        for value in (interval.mean, interval.low, interval.high)
        if math.isfinite(value)
    ]
    if not values:
        return None
    transform = transform or IdentityTransform()
    low, high = transform.transform(np.array([min(values), max(values)], dtype=float))
    padding = (high - low) * Y_PADDING or max(abs(high) * Y_PADDING, 1e-3)
    padded_low, padded_high = transform.inverted().transform(np.array([low - padding, high + padding]))
    return float(padded_low), float(padded_high)


BASE_PERCENT = 100.0
BASE_MARKER = dict(marker="s", markersize=7, markerfacecolor="white", markeredgewidth=1.6, linestyle="none")
SWEET_SPOT_MARKER = dict(marker="*", markersize=14, markeredgecolor="black", markeredgewidth=0.6, linestyle="none")
DIVERGED_MARKER = dict(marker="x", markersize=8, markeredgewidth=1.8, linestyle="none")
DIVERGED_HEIGHT = 0.03
"""Where a point whose every seed diverged is marked: this share of the axis's height above its bottom."""
OVERFLOW_MARKER = dict(marker="^", markersize=8, linestyle="none")
OVERFLOW_HEIGHT = 1 - DIVERGED_HEIGHT
"""Where a point whose mean is +inf is marked: as high below the axis's top."""


def diverged_points(curve: PlotLine) -> list[PointSummary]:
    """The curve's points where every trial diverged: no value to draw, yet what claim c6 is about, so they are
    marked on the axis's bottom edge rather than left out of the line without a trace."""
    return [point for point in curve.points
            if point.n_diverged and not point.n_finished and point.remaining_percent > 0]


def overflowed_points(curve: PlotLine) -> list[PointSummary]:
    """The curve's points whose mean is +inf (a seed's loss overflowed under weight noise): beyond every axis,
    yet the worst a point can be, so they are marked on the axis's top edge rather than left out."""
    return [point for point in curve.points for stat in [curve.stat_of(point)]
            if stat is not None and stat.n and stat.mean == math.inf and point.remaining_percent > 0]


def _mark_on_edge(axis: Axes, points: Sequence[PointSummary], height: float, color: object,
                  marker: Mapping[str, Any]) -> bool:
    """Markers at the points' positions, `height` up the axis whatever its y range; False for no points."""
    if points:
        axis.plot([point.remaining_percent for point in points], [height] * len(points),
                  transform=axis.get_xaxis_transform(), color=color, clip_on=False, zorder=4, **marker)
    return bool(points)


def _draw_curve(axis: Axes, curve: PlotLine, color: object) -> bool:
    """Mean line with its 95% CI as a band and bars, the base, the sweet spot, and the points whose every seed
    diverged or whose mean is infinite marked on an edge; False if there was nothing to draw."""
    marked = [_mark_on_edge(axis, diverged_points(curve), DIVERGED_HEIGHT, color, DIVERGED_MARKER),
              _mark_on_edge(axis, overflowed_points(curve), OVERFLOW_HEIGHT, color, OVERFLOW_MARKER)]
    present = sorted(_present(curve), key=lambda item: item[0].remaining_percent)
    if not present:
        return any(marked)
    x = np.array([point.remaining_percent for point, _ in present])
    intervals = [curve.interval(stat) for _, stat in present]
    mean, low, high = (np.array([getattr(interval, end) for interval in intervals]) for end in ("mean", "low", "high"))
    axis.plot(x, mean, marker="o", markersize=4, color=color, label=curve.label, linewidth=1.6)
    defined = np.isfinite(low) & np.isfinite(high)
    if defined.any():
        axis.fill_between(x, low, high, where=defined, color=color, alpha=0.18, linewidth=0)
        axis.errorbar(x[defined], mean[defined], yerr=[mean[defined] - low[defined], high[defined] - mean[defined]],
                      fmt="none", ecolor=color, elinewidth=0.8, capsize=2.5, alpha=0.8)
    for point, stat in present:
        if point.is_base:
            axis.plot([point.remaining_percent], [stat.mean], markeredgecolor=color, zorder=3, **BASE_MARKER)
    best = sweet_spot(curve)
    if best is not None:
        point, stat = best
        axis.plot([point.remaining_percent], [stat.mean], color=color, zorder=4, **SWEET_SPOT_MARKER)
    return True


def _marker_legend(curves: Sequence[PlotLine]) -> list[Line2D]:
    """Legend entries for the base and sweet-spot markers, each only where some curve shows it."""
    handles = []
    if any(point.is_base for curve in curves for point, _ in _present(curve)):
        handles.append(Line2D([], [], markeredgecolor="0.2", label="dense base (100 %)", **BASE_MARKER))
    if any(sweet_spot(curve) is not None for curve in curves):
        handles.append(Line2D([], [], color="0.5", label="sweet spot", **SWEET_SPOT_MARKER))
    if any(diverged_points(curve) for curve in curves):
        handles.append(Line2D([], [], color="0.2", label="every seed diverged", **DIVERGED_MARKER))
    if any(overflowed_points(curve) for curve in curves):
        handles.append(Line2D([], [], color="0.2", label="infinite: a loss overflowed under noise", **OVERFLOW_MARKER))
    return handles


def _axis_points(curves: Sequence[PlotLine]) -> list[PointSummary]:
    """Every point of the panel's curves, one per position and label (schedules share their widths)."""
    unique: dict[tuple[float, str], PointSummary] = {}
    for curve in curves:
        for point in curve.points:
            unique.setdefault((point.remaining_percent, point.label), point)
    return list(unique.values())


def _no_data(axis: Axes) -> None:
    axis.text(0.5, 0.5, "no data", transform=axis.transAxes, ha="center", va="center", color="0.4")
    axis.set_xticks([])
    axis.set_yticks([])


def plot_against_remaining(
    panels: Mapping[Panel, Sequence[PlotLine]],
    *,
    ylabel: str,
    title: str,
    legend_title: str | None = None,
    max_columns: int = MAX_COLUMNS,
    panel_size: tuple[float, float] = PANEL_SIZE,
) -> Figure:
    """One panel per key, each curve's mean and 95% CI over seeds against remaining weights (%), one shared y.

    The dense base is marked (square, dotted line at 100 %), each curve's sweet spot is starred.
    """
    keys = list(panels)
    figure, axes = _panel_grid(len(keys), panel_size, max_columns=max_columns)
    columns = min(max_columns, max(1, len(keys)))
    every_curve = [curve for curves in panels.values() for curve in curves]
    threshold = symlog_threshold(every_curve)
    limits = shared_y_limits(every_curve, y_transform(threshold))
    legend_handles: dict[str, object] = {}
    labelled_rows: set[int] = set()
    for index, (axis, key) in enumerate(zip(axes, keys, strict=True)):
        curves = panels[key]
        axis.set_title(key.label, fontsize=9)
        drawn = [
            _draw_curve(axis, curve, curve.color if curve.color is not None else default_color)
            for curve, default_color in zip(curves, _line_colors(len(curves)), strict=True)
        ]
        if not any(drawn):
            _no_data(axis)
            continue
        if any(point.is_base for curve in curves for point, _ in _present(curve)):
            axis.axvline(BASE_PERCENT, linestyle=":", color="0.35", linewidth=1.0, zorder=1)
        _format_remaining_axis(axis, _axis_points(curves))
        if threshold is not None:
            axis.set_yscale("symlog", linthresh=threshold)
        if limits is not None:
            axis.set_ylim(*limits)
        if index // columns not in labelled_rows:  # the row's first panel with data: an empty one has no y axis
            labelled_rows.add(index // columns)
            axis.set_ylabel(ylabel if threshold is None else f"{ylabel}, log scale beyond ±{threshold:g}")
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend_handles.setdefault(label, handle)
    figure.suptitle(title, fontsize=11)
    if legend_handles:
        for handle in _marker_legend(every_curve):
            legend_handles[handle.get_label()] = handle
        figure.legend(
            list(legend_handles.values()),
            list(legend_handles),
            loc="outside right center",
            title=legend_title,
            fontsize=8,
            title_fontsize=8,
        )
    return figure


MANY_CLASSES = 20
"""Above this many classes the heatmap is transposed (points as rows, classes as columns), one panel a row."""


def _class_count(analysis: Mapping[GroupKey, Sequence[PointRecallAnalysis]]) -> int:
    """The most classes any point has (0 for none): every panel's class axis spans them all."""
    return max((len(entry.changes) for entries in analysis.values() for entry in entries), default=0)


def heatmap_transposed(analysis: Mapping[GroupKey, Sequence[PointRecallAnalysis]]) -> bool:
    """Whether the heatmap puts points on rows and classes on columns: the one layout decision that both the
    drawing and its caption read, so the caption names the axes drawn."""
    return _class_count(analysis) > MANY_CLASSES


def heatmap_layout(transposed: bool) -> str:
    """What the heatmap's rows and columns are, for its caption."""
    return ("Per compressed point (rows) and class (columns)" if transposed
            else "Per class (rows) and compressed point (columns)")


def plot_class_recall_heatmap(analysis: dict[GroupKey, list[PointRecallAnalysis]]) -> Figure:
    """One heatmap panel per group of classes × compressed points; significant cells boxed and starred."""
    groups = list(analysis)
    n_classes = _class_count(analysis)
    n_points = max(len(entries) for entries in analysis.values())
    transposed = heatmap_transposed(analysis)
    if transposed:  # classes along x: a wide panel per group, stacked
        panel_size = (min(16.0, 3.0 + 0.12 * n_classes), max(2.2, 1.6 + 0.32 * n_points))
        figure, axes = _panel_grid(len(groups), panel_size, max_columns=1)
    else:
        panel_size = (max(4.6, 1.6 + 0.75 * n_points), max(3.2, 1.4 + 0.26 * n_classes))
        figure, axes = _panel_grid(len(groups), panel_size)
    finite = [
        abs(change.change)
        for entries in analysis.values()
        for entry in entries
        for change in entry.changes
        if math.isfinite(change.change)
    ]
    limit = max(finite, default=0.0) or 1e-3
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    cmap = colormaps["RdBu"].with_extremes(bad="0.85")
    image = None
    annotate = not transposed and n_points <= 10
    class_step = max(1, round(n_classes / 25)) if transposed else 1
    class_ticks = list(range(0, n_classes, class_step))

    def cell(class_index: int, point_index: int) -> tuple[int, int]:
        """(x, y) of a cell in the panel's data coordinates."""
        return (class_index, point_index) if transposed else (point_index, class_index)

    for axis, group in zip(axes, groups, strict=True):
        entries = analysis[group]
        matrix = np.full((n_classes, len(entries)), np.nan)
        for column, entry in enumerate(entries):
            for change in entry.changes:
                matrix[change.class_index, column] = change.change
        shown = matrix.T if transposed else matrix
        image = axis.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
        for point_index, entry in enumerate(entries):
            for change in entry.changes:
                x, y = cell(change.class_index, point_index)
                if change.significant:
                    axis.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.4))
                if annotate and math.isfinite(change.change):
                    text = f"{change.change:+.3f}" + ("*" if change.significant else "")
                    dark = abs(change.change) > 0.6 * limit
                    axis.text(x, y, text, ha="center", va="center", fontsize=6.5, color="white" if dark else "black")
                elif change.significant:
                    axis.text(x, y, "*", ha="center", va="center", fontsize=7)
        point_labels = [f"{entry.point.label}\n{entry.point.remaining_percent:.3g}%" for entry in entries]
        if transposed:
            point_labels = [label.replace("\n", " (") + ")" for label in point_labels]
            axis.set_yticks(range(len(entries)), point_labels, fontsize=7)
            axis.set_xticks(class_ticks, [str(index) for index in class_ticks], fontsize=7)
            axis.set_xlabel("class")
        else:
            axis.set_xticks(range(len(entries)), point_labels, fontsize=7)
            axis.set_yticks(class_ticks, [str(index) for index in class_ticks], fontsize=7)
            axis.set_ylabel("class")
            axis.set_xlabel("compressed point (remaining weights)", fontsize=8)
        base = entries[0].base
        axis.set_title(f"{group.label}\nvs dense base {base.label} ({base.n_finished} seeds)", fontsize=9)
    if image is not None:
        colorbar = figure.colorbar(image, ax=axes, shrink=0.8 if not transposed else 0.9, aspect=30)
        colorbar.set_label("normalised recall change", fontsize=8)
        colorbar.ax.tick_params(labelsize=7)
    figure.suptitle(
        "Class recall change vs dense base, net of the accuracy change (boxed/* = Welch p, Holm-adjusted over the "
        f"point's classes, < {SIGNIFICANCE_LEVEL:g})", fontsize=10
    )
    return figure


ADVERSARIAL_PANEL_SIZE = (4.2, 3.4)


def _epsilon_label(epsilon: float) -> str:
    """'ε = 0.1', or 'ε = 8/255' for budgets on the 1/255 grid CIFAR budgets are quoted on."""
    in_255ths = epsilon * 255
    if epsilon > 0 and abs(in_255ths - round(in_255ths)) < 1e-6 and abs(epsilon * 100 - round(epsilon * 100)) > 1e-6:
        return f"ε = {round(in_255ths)}/255"
    return f"ε = {epsilon:g}"


def _plot_adversarial(points_by_group: dict[GroupKey, list[PointSummary]], budgets: dict[str, list[float]]) -> Figure:
    """Robust accuracy: a row of panels (one per attack) per group, a line per budget, same colour per budget."""
    epsilons = sorted({epsilon for values in budgets.values() for epsilon in values})
    colors = dict(zip(epsilons, _line_colors(len(epsilons)), strict=True))
    panels = {
        AttackPanel(group, attack): [
            PlotLine(_epsilon_label(epsilon), points,
                  lambda point, key=(attack, epsilon): point.adversarial_accuracy.get(key), colors[epsilon])
            for epsilon in epsilons_of_attack
        ]
        for group, points in points_by_group.items()
        for attack, epsilons_of_attack in budgets.items()
    }
    return plot_against_remaining(
        panels, ylabel="robust accuracy", legend_title="L∞ budget",
        title="Robust accuracy under adversarial attacks vs remaining weights",
        max_columns=len(budgets), panel_size=ADVERSARIAL_PANEL_SIZE,
    )


@dataclass(frozen=True)
class CorruptionPanel:
    """One corruption within one group (the per-corruption breakdown has a panel per corruption per group)."""

    group: GroupKey
    corruption: str
    severities: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        only = f" (severity {self.severities[0]})" if len(self.severities) == 1 else ""
        return f"{self.group.label}\n{self.corruption}{only}"


CORRUPTION_PANEL_SIZE = (3.6, 3.0)
CORRUPTION_COLUMNS = 4


def _corruption_severities(points_by_group: dict[GroupKey, list[PointSummary]]) -> list[int]:
    keys = {key for points in points_by_group.values() for point in points for key in point.corruption_accuracy}
    return sorted({severity for _, severity in keys})


def _plot_corrupted_accuracy(points_by_group: dict[GroupKey, list[PointSummary]]) -> Figure:
    """Paper Fig. 2: clean accuracy and the mean accuracy over corruptions (per severity where uniform)."""
    severities = _corruption_severities(points_by_group)
    colors = dict(zip(severities, _line_colors(len(severities)), strict=True))

    def curves(points: list[PointSummary]) -> list[PlotLine]:
        keys = {key for point in points for key in point.corruption_mean}
        levels = sorted(key for key in keys if key is not None)
        result = [PlotLine("clean", points, lambda point: point.clean_accuracy, "0.3")]
        if levels:
            result += [PlotLine(f"severity {level}, mean over corruptions", points,
                             lambda point, key=level: point.corruption_mean.get(key), colors.get(level))
                       for level in levels]
        else:
            result.append(PlotLine("mean over corruptions", points, lambda point: point.corruption_mean.get(None), "C3"))
        return result

    return plot_against_remaining(
        {group: curves(points) for group, points in points_by_group.items()},
        ylabel="accuracy", legend_title="test data", title="Accuracy on corrupted data vs remaining weights",
    )


def _plot_corruption_breakdown(points_by_group: dict[GroupKey, list[PointSummary]]) -> Figure:
    """Paper Fig. 9-11: a panel per corruption (and group), a line per severity, same colour per severity."""
    severities = _corruption_severities(points_by_group)
    colors = dict(zip(severities, _line_colors(len(severities)), strict=True))

    def levels(points: list[PointSummary], corruption: str) -> tuple[int, ...]:
        return tuple(sorted({level for point in points for name, level in point.corruption_accuracy if name == corruption}))

    panels = {}
    for group, points in points_by_group.items():
        for name in dict.fromkeys(name for point in points for name, _ in point.corruption_accuracy):
            panel = CorruptionPanel(group, name, levels(points, name))
            panels[panel] = [
                PlotLine(f"severity {level}", points,
                      lambda point, key=(name, level): point.corruption_accuracy.get(key), colors[level])
                for level in panel.severities
            ]
    return plot_against_remaining(
        panels, ylabel="accuracy", legend_title="severity", title="Accuracy per corruption vs remaining weights",
        max_columns=CORRUPTION_COLUMNS, panel_size=CORRUPTION_PANEL_SIZE,
    )


def schedule_colors(schedules: Iterable[str]) -> dict[str, str]:
    """One colour per schedule, the same in every figure of a report."""
    return {schedule: f"C{index % 10}" for index, schedule in enumerate(sorted(set(schedules)))}


def curves_by_schedule(
    points_by_group: Mapping[GroupKey, Sequence[PointSummary]], stat_of: StatOf, *, higher_is_better: bool = True
) -> dict[SettingPanel, list[PlotLine]]:
    """A panel per (architecture, dataset, family), a curve per schedule: the schedules on the same axes."""
    colors = schedule_colors(group.schedule for group in points_by_group)
    panels: dict[SettingPanel, list[PlotLine]] = defaultdict(list)
    for group in sorted(points_by_group):
        panels[SettingPanel.of(group)].append(
            PlotLine(group.schedule, points_by_group[group], stat_of, colors[group.schedule], higher_is_better)
        )
    return dict(panels)


def _sigma_label(sigma: float) -> str:
    return f"σ = {sigma:g}"


def _reading(*, higher_is_better: bool = True) -> str:
    """How to read a line figure: what the lines, bands and markers are."""
    best = "highest" if higher_is_better else "lowest"
    return (
        "Remaining weights on a log scale, dense base on the left, wider and sparser models to the right; the top "
        "axis names each point's width or depth. Lines: means over seeds; bands and bars: 95% CI over seeds "
        "(Student t; a point with one finished seed shows its mean alone). Square on the dotted line at 100 %: "
        f"the dense base; star: the sweet spot, the {best} mean among the sparser points with at least {MIN_SEEDS} "
        "finished seeds (none where no point has them, or the base lacks them); ✕ on the bottom edge: a point "
        "whose every seed diverged (no value). Panels share one y-axis."
    )


def _caption(key: FigureKey, description: str, findings: Mapping[FigureKey, str]) -> str:
    """The figure's description, what the paper claims for it, and what this study found (when given)."""
    caption = f"{description} The paper claims: {paper_claims_text(key)}."
    finding = findings.get(key, "").strip()
    return f"{caption} This study found: {finding}" if finding else caption


def _figure_keys(findings: Mapping[str, str] | None) -> dict[FigureKey, str]:
    """The findings keyed by `FigureKey`; an unknown key is the caller's bug, refused by name."""
    valid = {key.value for key in FigureKey}
    unknown = sorted(str(key) for key in (findings or {}) if key not in valid)
    if unknown:
        raise ValueError(f"findings for unknown figure(s) {unknown}; the figures are {sorted(valid)}")
    return {FigureKey(key): finding for key, finding in (findings or {}).items()}


def write_figures(
    points_by_group: dict[GroupKey, list[PointSummary]],
    analysis: dict[GroupKey, list[PointRecallAnalysis]],
    directory: Path,
    findings: Mapping[str, str] | None = None,
) -> list[FigureInfo]:
    """Write every figure there is data for into `directory`; stale files of skipped figures are removed.

    `findings` maps a `FigureKey` (or its value) to one sentence on what this study found, added to that
    figure's caption after the paper's claim.
    """
    directory.mkdir(parents=True, exist_ok=True)
    found = _figure_keys(findings)
    written: list[FigureInfo] = []

    def emit(key: FigureKey, title: str, description: str, draw: Callable[[], Figure] | None) -> None:
        path = directory / f"{key.value}.png"
        if draw is None:
            path.unlink(missing_ok=True)
            return
        _save(draw(), path)
        written.append(FigureInfo(key, title, _caption(key, description, found)))

    emit(
        FigureKey.CLEAN_ACCURACY,
        "Clean test accuracy",
        "Test accuracy without noise, one panel per architecture, dataset and family, one line per schedule. This "
        "is the baseline for the robustness figures: a drop here means capacity was lost, not only robustness. "
        + _reading(),
        lambda: plot_against_remaining(
            curves_by_schedule(points_by_group, lambda point: point.clean_accuracy),
            ylabel="test accuracy", legend_title="schedule", title="Clean test accuracy vs remaining weights",
        ),
    )
    sigmas = noise_sigmas(points_by_group)
    sigma_colors = dict(zip(sigmas, _line_colors(len(sigmas)), strict=True))  # the same σ, the same colour

    def noise_panels(stat_of: Callable[[PointSummary, float], Stat | None], shown: Sequence[float],
                     higher_is_better: bool, value_range: tuple[float, float]) -> dict[Panel, list[PlotLine]]:
        return {
            group: [PlotLine(_sigma_label(sigma), points, lambda point, s=sigma: stat_of(point, s), sigma_colors[sigma],
                          higher_is_better, value_range) for sigma in shown]
            for group, points in points_by_group.items()
        }

    emit(
        FigureKey.ACCURACY_UNDER_NOISE,
        "Accuracy under weight noise",
        "Test accuracy with Gaussian noise of standard deviation σ added to the weights, one panel per group, one "
        "line per σ. " + _reading(),
        (lambda: plot_against_remaining(
            noise_panels(lambda point, sigma: point.noise_accuracy.get(sigma), sigmas, True, FRACTION),
            ylabel="accuracy under noise", legend_title="weight noise",
            title="Accuracy under weight noise vs remaining weights",
        )) if sigmas else None,
    )
    positive_sigmas = [sigma for sigma in sigmas if sigma > 0]
    emit(
        FigureKey.DELTA_LOSS_UNDER_NOISE,
        "Loss increase under weight noise (ΔL)",
        "Increase of the test loss when the weights are perturbed (loss under noise − clean loss), one panel per "
        "group, one line per σ > 0. Lower is better: a lower, flatter curve means a flatter minimum. "
        + _reading(higher_is_better=False),
        (lambda: plot_against_remaining(
            noise_panels(lambda point, sigma: point.noise_delta_loss.get(sigma), positive_sigmas, False, UNBOUNDED),
            ylabel="ΔL (loss increase)", legend_title="weight noise",
            title="Loss increase under weight noise vs remaining weights",
        )) if positive_sigmas else None,
    )
    emit(
        FigureKey.MIN_CLASS_RECALL,
        "Minimum class recall",
        "Recall of the worst-recognised class, one panel per architecture, dataset and family, one line per "
        "schedule: does the worst class suffer as models get sparser even where overall accuracy holds up? "
        + _reading(),
        lambda: plot_against_remaining(
            curves_by_schedule(points_by_group, lambda point: point.min_class_recall),
            ylabel="minimum class recall", legend_title="schedule",
            title="Minimum class recall vs remaining weights",
        ),
    )
    budgets = adversarial_budgets(points_by_group)
    emit(
        FigureKey.ADVERSARIAL_ACCURACY,
        "Robust accuracy under adversarial attacks",
        "Test accuracy under L∞ attacks (paper Fig. 3): one panel per attack and group, one line per budget ε in "
        "pixel units (inputs in [0, 1]), on the same seeded sample of test examples for every model. An example "
        "counts when the model classifies it correctly both clean and attacked. FGSM: one signed-gradient step; "
        "FFGSM: FGSM from a random start; BIM: iterated FGSM; PGD: BIM from a random start; APGD: PGD with an "
        "adaptive step size and momentum. " + _reading(),
        (lambda: _plot_adversarial(points_by_group, budgets)) if budgets else None,
    )
    has_corruption = any(point.corruption_accuracy for points in points_by_group.values() for point in points)
    emit(
        FigureKey.CORRUPTED_ACCURACY,
        "Accuracy on corrupted data",
        "Test accuracy on corrupted images (paper Fig. 2, 5, 7): MNIST-C at each corruption's published "
        "severity, CIFAR-10-C/-100-C at the chosen severities, the mean over corruptions (identity, the clean "
        "set, left out), beside the clean accuracy; one panel per group. Every model sees the same cached "
        "corrupted sample (random corruptions: the mean over several noise draws). " + _reading(),
        (lambda: _plot_corrupted_accuracy(points_by_group)) if has_corruption else None,
    )
    emit(
        FigureKey.CORRUPTION_BREAKDOWN,
        "Accuracy per corruption",
        "The corrupted-data accuracy of each corruption separately (paper Fig. 9-11), one panel per corruption "
        "and group, one line per severity: noise and blur change high frequencies, weather and digital "
        "corruptions do not. " + _reading(),
        (lambda: _plot_corruption_breakdown(points_by_group)) if has_corruption else None,
    )
    emit(
        FigureKey.CLASS_RECALL_CHANGES,
        "Class-recall changes against the dense base",
        f"{heatmap_layout(heatmap_transposed(analysis))}: change of the class's recall against the dense base "
        "of the same group, minus the change of overall accuracy (Hooker et al. 2020). Red: the class lost more "
        "than the model did on average; blue: less. Boxed cells marked * differ significantly (Welch t-test "
        f"over seeds, p Holm-adjusted over the point's classes < {SIGNIFICANCE_LEVEL:g}; the c4 verdict adjusts over "
        "the classes of all its points together). Grey: no data.",
        (lambda: plot_class_recall_heatmap(analysis)) if analysis else None,
    )
    return written
