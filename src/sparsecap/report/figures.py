"""The report's figures: one panel per (architecture, dataset, family, schedule) group.

All metric-versus-remaining-weights figures go through one function (`plot_against_remaining`), and
the panel grid is shared with the class-recall heatmap, so a new architecture or family needs no code
here. Figures are built as `matplotlib.figure.Figure` objects rendered by the Agg canvas, leaving
pyplot's global state alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from sparsecap.report.aggregate import (
    GroupKey,
    PointRecallAnalysis,
    PointSummary,
    Stat,
    adversarial_budgets,
    noise_sigmas,
)

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


@dataclass(frozen=True)
class Line:
    """One line of a panel: a label and how to read its statistic off a point."""

    label: str
    stat_of: StatOf
    color: object = None
    """A matplotlib colour; None picks one from the line's position."""


@dataclass(frozen=True)
class FigureInfo:
    """A written figure and what the page should say about it."""

    filename: str
    title: str
    caption: str


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
    axis.set_xscale("log")
    axis.set_xlim(high * 1.2, low / 1.2)  # inverted: dense on the left, sparse on the right
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


def _draw_lines(axis: Axes, points: Sequence[PointSummary], lines: Sequence[Line]) -> bool:
    """Mean line with a ±1 std band and markers for each line; False if nothing could be drawn."""
    drew = False
    for line, default_color in zip(lines, _line_colors(len(lines)), strict=True):
        color = line.color if line.color is not None else default_color
        xs, means, stds = [], [], []
        for point in points:
            stat = line.stat_of(point)
            if stat is None or not stat.present or not (point.remaining_percent > 0):
                continue
            xs.append(point.remaining_percent)
            means.append(stat.mean)
            stds.append(stat.std if math.isfinite(stat.std) else 0.0)
        if not xs:
            continue
        order = np.argsort(xs)
        x, mean, std = (np.asarray(values)[order] for values in (xs, means, stds))
        axis.plot(x, mean, marker="o", markersize=4, color=color, label=line.label, linewidth=1.6)
        axis.fill_between(x, mean - std, mean + std, color=color, alpha=0.18, linewidth=0)
        drew = True
    return drew


def _no_data(axis: Axes, message: str = "no data") -> None:
    axis.text(0.5, 0.5, message, transform=axis.transAxes, ha="center", va="center", color="0.4")
    axis.set_xticks([])
    axis.set_yticks([])


def plot_against_remaining(
    points_by_group: Mapping[Panel, Sequence[PointSummary]],
    lines: Sequence[Line] | Callable[[Panel], Sequence[Line]],
    *,
    ylabel: str,
    title: str,
    path: Path,
    legend_title: str | None = None,
    max_columns: int = MAX_COLUMNS,
    panel_size: tuple[float, float] = PANEL_SIZE,
) -> None:
    """One panel per group (or other panel key): each line's mean ± std over seeds against remaining weights (%).

    `lines` may depend on the panel (a function of its key).
    """
    groups = list(points_by_group)
    figure, axes = _panel_grid(len(groups), panel_size, max_columns=max_columns)
    legend_handles: dict[str, object] = {}
    most_lines = 0
    for axis, group in zip(axes, groups, strict=True):
        points = points_by_group[group]
        panel_lines = lines(group) if callable(lines) else lines
        most_lines = max(most_lines, len(panel_lines))
        axis.set_title(group.label, fontsize=9)
        if not _draw_lines(axis, points, panel_lines):
            _no_data(axis)
            continue
        _format_remaining_axis(axis, points)
        axis.set_ylabel(ylabel)
        for handle, label in zip(*axis.get_legend_handles_labels(), strict=True):
            legend_handles.setdefault(label, handle)
    figure.suptitle(title, fontsize=11)
    if most_lines > 1 and legend_handles:
        figure.legend(
            list(legend_handles.values()),
            list(legend_handles),
            loc="outside right center",
            title=legend_title,
            fontsize=8,
            title_fontsize=8,
        )
    _save(figure, path)


MANY_CLASSES = 20
"""Above this many classes the heatmap is transposed (points as rows, classes as columns), one panel a row."""


def plot_class_recall_heatmap(
    analysis: dict[GroupKey, list[PointRecallAnalysis]], *, path: Path
) -> None:
    """One heatmap panel per group of classes × compressed points; significant cells boxed and starred."""
    groups = list(analysis)
    n_classes = max(len(entry.changes) for entries in analysis.values() for entry in entries)
    n_points = max(len(entries) for entries in analysis.values())
    transposed = n_classes > MANY_CLASSES
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
    class_step = 1 if n_classes <= MANY_CLASSES else max(1, round(n_classes / 25))
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
        "Class recall change vs dense base, net of the accuracy change (boxed/* = Welch p < 0.05)", fontsize=10
    )
    _save(figure, path)


ADVERSARIAL_PANEL_SIZE = (4.2, 3.4)


def _epsilon_label(epsilon: float) -> str:
    """'ε = 0.1', or 'ε = 8/255' for budgets on the 1/255 grid CIFAR budgets are quoted on."""
    in_255ths = epsilon * 255
    if epsilon > 0 and abs(in_255ths - round(in_255ths)) < 1e-6 and abs(epsilon * 100 - round(epsilon * 100)) > 1e-6:
        return f"ε = {round(in_255ths)}/255"
    return f"ε = {epsilon:g}"


def _plot_adversarial(
    points_by_group: dict[GroupKey, list[PointSummary]], budgets: dict[str, list[float]], path: Path
) -> None:
    """Robust accuracy: a row of panels (one per attack) per group, a line per budget, same colour per budget."""
    epsilons = sorted({epsilon for values in budgets.values() for epsilon in values})
    colors = dict(zip(epsilons, _line_colors(len(epsilons)), strict=True))
    panels = {AttackPanel(group, attack): points for group, points in points_by_group.items() for attack in budgets}

    def lines(panel: Panel) -> list[Line]:
        assert isinstance(panel, AttackPanel)
        return [
            Line(
                _epsilon_label(epsilon),
                lambda point, key=(panel.attack, epsilon): point.adversarial_accuracy.get(key),
                colors[epsilon],
            )
            for epsilon in budgets[panel.attack]
        ]

    plot_against_remaining(
        panels, lines, ylabel="robust accuracy", legend_title="L∞ budget",
        title="Robust accuracy under adversarial attacks vs remaining weights", path=path,
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


def _plot_corrupted_accuracy(points_by_group: dict[GroupKey, list[PointSummary]], path: Path) -> None:
    """Paper Fig. 2: clean accuracy and the mean accuracy over corruptions (per severity where uniform)."""
    severities = _corruption_severities(points_by_group)
    colors = dict(zip(severities, _line_colors(len(severities)), strict=True))

    def lines(panel: Panel) -> list[Line]:
        points = points_by_group[panel]  # type: ignore[index]
        keys = {key for point in points for key in point.corruption_mean}
        levels = sorted(key for key in keys if key is not None)
        result = [Line("clean", lambda point: point.clean_accuracy, "0.3")]
        if levels:
            result += [Line(f"severity {level}, mean over corruptions",
                            lambda point, key=level: point.corruption_mean.get(key), colors.get(level))
                       for level in levels]
        else:
            result.append(Line("mean over corruptions", lambda point: point.corruption_mean.get(None), "C3"))
        return result

    plot_against_remaining(
        points_by_group, lines, ylabel="accuracy", legend_title="test data",
        title="Accuracy on corrupted data vs remaining weights", path=path,
    )


def _plot_corruption_breakdown(points_by_group: dict[GroupKey, list[PointSummary]], path: Path) -> None:
    """Paper Fig. 9-11: a panel per corruption (and group), a line per severity, same colour per severity."""
    severities = _corruption_severities(points_by_group)
    colors = dict(zip(severities, _line_colors(len(severities)), strict=True))

    def levels(points: list[PointSummary], corruption: str) -> tuple[int, ...]:
        return tuple(sorted({level for point in points for name, level in point.corruption_accuracy if name == corruption}))

    panels = {
        CorruptionPanel(group, name, levels(points, name)): points
        for group, points in points_by_group.items()
        for name in dict.fromkeys(name for point in points for name, _ in point.corruption_accuracy)
    }

    def lines(panel: Panel) -> list[Line]:
        assert isinstance(panel, CorruptionPanel)
        return [Line(f"severity {level}", lambda point, key=(panel.corruption, level): point.corruption_accuracy.get(key),
                     colors[level]) for level in panel.severities]

    plot_against_remaining(
        panels, lines, ylabel="accuracy", legend_title="severity",
        title="Accuracy per corruption vs remaining weights", path=path,
        max_columns=CORRUPTION_COLUMNS, panel_size=CORRUPTION_PANEL_SIZE,
    )


def _sigma_label(sigma: float) -> str:
    return f"σ = {sigma:g}"


def write_figures(
    points_by_group: dict[GroupKey, list[PointSummary]],
    analysis: dict[GroupKey, list[PointRecallAnalysis]],
    directory: Path,
) -> list[FigureInfo]:
    """Write every figure there is data for into `directory`; stale files of skipped figures are removed."""
    directory.mkdir(parents=True, exist_ok=True)
    sigmas = noise_sigmas(points_by_group)
    written: list[FigureInfo] = []

    def emit(info: FigureInfo, draw: Callable[[Path], None] | None) -> None:
        path = directory / info.filename
        if draw is None:
            path.unlink(missing_ok=True)
            return
        draw(path)
        written.append(info)

    sigma_colors = dict(zip(sigmas, _line_colors(len(sigmas)), strict=True))  # the same σ, the same colour
    accuracy_lines = [
        Line(_sigma_label(sigma), lambda point, s=sigma: point.noise_accuracy.get(s), sigma_colors[sigma])
        for sigma in sigmas
    ]
    emit(
        FigureInfo(
            "accuracy_under_noise.png",
            "Accuracy under weight noise",
            "Test accuracy with Gaussian noise of standard deviation σ added to the weights, against the "
            "share of weights that remain (log scale; dense base on the left, wider and sparser models to "
            "the right; the top axis names each point's width or depth). Lines are means over seeds, bands "
            "±1 std. Look for whether the curves for larger σ fall as models get sparser (sparsity makes "
            "the network fragile) or stay flat/rise (the same number of nonzero weights keeps robustness).",
        ),
        (lambda path: plot_against_remaining(
            points_by_group, accuracy_lines, ylabel="accuracy under noise", legend_title="weight noise",
            title="Accuracy under weight noise vs remaining weights", path=path,
        )) if sigmas else None,
    )
    delta_lines = [
        Line(_sigma_label(sigma), lambda point, s=sigma: point.noise_delta_loss.get(s), sigma_colors[sigma])
        for sigma in sigmas
        if sigma > 0
    ]
    emit(
        FigureInfo(
            "delta_loss_under_noise.png",
            "Loss increase under weight noise (ΔL)",
            "Increase of the test loss when the weights are perturbed (loss under noise − clean loss), one "
            "line per σ > 0, mean ± std over seeds. A flatter, lower curve means a flatter minimum. Look "
            "for ΔL growing towards the sparse (right) end: the same perturbation hurts sparse models more.",
        ),
        (lambda path: plot_against_remaining(
            points_by_group, delta_lines, ylabel="ΔL (loss increase)", legend_title="weight noise",
            title="Loss increase under weight noise vs remaining weights", path=path,
        )) if delta_lines else None,
    )
    emit(
        FigureInfo(
            "min_class_recall.png",
            "Minimum class recall",
            "Recall of the worst-recognised class (mean ± std over seeds). Look for whether the worst class "
            "suffers as models get sparser even where overall accuracy holds up.",
        ),
        lambda path: plot_against_remaining(
            points_by_group, [Line("min class recall", lambda point: point.min_class_recall)],
            ylabel="minimum class recall", title="Minimum class recall vs remaining weights", path=path,
        ),
    )
    emit(
        FigureInfo(
            "clean_accuracy.png",
            "Clean test accuracy",
            "Test accuracy without noise (mean ± std over seeds). This is the baseline for the robustness "
            "figures: a drop here means capacity was lost, not only robustness.",
        ),
        lambda path: plot_against_remaining(
            points_by_group, [Line("clean accuracy", lambda point: point.clean_accuracy)],
            ylabel="test accuracy", title="Clean test accuracy vs remaining weights", path=path,
        ),
    )
    budgets = adversarial_budgets(points_by_group)
    emit(
        FigureInfo(
            "adversarial_accuracy.png",
            "Robust accuracy under adversarial attacks",
            "Test accuracy under L∞ attacks (paper Fig. 3): one panel per attack and group, one line per budget "
            "ε in pixel units (inputs in [0, 1]), mean ± std over seeds, on the same seeded sample of test "
            "examples for every model. An example counts when the model classifies it correctly both clean "
            "and attacked. FGSM: one signed-gradient step; FFGSM: FGSM from a random start; BIM: iterated "
            "FGSM; PGD: BIM from a random start; APGD: PGD with an adaptive step size and momentum. Look for "
            "whether robust accuracy falls as models get sparser (to the right) at a fixed number of "
            "nonzero weights, and whether that holds for the stronger attacks.",
        ),
        (lambda path: _plot_adversarial(points_by_group, budgets, path)) if budgets else None,
    )
    has_corruption = any(point.corruption_accuracy for points in points_by_group.values() for point in points)
    emit(
        FigureInfo(
            "corrupted_accuracy.png",
            "Accuracy on corrupted data",
            "Test accuracy on corrupted images (paper Fig. 2, 5, 7): MNIST-C at each corruption's published "
            "severity, CIFAR-10-C/-100-C at the chosen severities, the mean over corruptions (identity, the clean "
            "set, left out), beside the clean accuracy; mean ± std over seeds. Every model sees the same cached "
            "corrupted sample (random corruptions: the mean over several noise draws). Look for whether the gap "
            "between clean and corrupted accuracy widens as models get sparser at a fixed number of weights.",
        ),
        (lambda path: _plot_corrupted_accuracy(points_by_group, path)) if has_corruption else None,
    )
    emit(
        FigureInfo(
            "corruption_breakdown.png",
            "Accuracy per corruption",
            "The corrupted-data accuracy of each corruption separately (paper Fig. 9-11), one line per severity, "
            "mean ± std over seeds. Look for the corruptions whose accuracy falls with sparsity while others "
            "stay flat: noise and blur, which change high frequencies, against weather and digital ones.",
        ),
        (lambda path: _plot_corruption_breakdown(points_by_group, path)) if has_corruption else None,
    )
    emit(
        FigureInfo(
            "class_recall_changes.png",
            "Class-recall changes against the dense base",
            "Per class (rows) and compressed point (columns): change of the class's recall against the "
            "dense base of the same group, minus the change of overall accuracy (Hooker et al. 2020). Red: "
            "the class lost more than the model did on average; blue: less. Boxed cells marked * differ "
            "significantly (Welch t-test over seeds, p < 0.05). Grey: no data. Look for classes that are "
            "disproportionately hurt, and whether they grow in number with sparsity.",
        ),
        (lambda path: plot_class_recall_heatmap(analysis, path=path)) if analysis else None,
    )
    return written
