"""The report's figures: sweet spot, shared y range, schedules as lines of one panel, 95% CI bands, captions,
axis labels, the class-recall heatmap's layout."""

from __future__ import annotations

import dataclasses
import math
import re
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from scipy import stats

from sparsecap.report import analyse
from sparsecap.report import figures as figures_module
from sparsecap.report.aggregate import (
    GroupKey,
    PointRecallAnalysis,
    PointSummary,
    Stat,
    StudyResults,
    adversarial_budgets,
    load_study,
    summarise_points,
)
from sparsecap.report.claims import CLEAN_ACCURACY
from sparsecap.report.class_recall import normalised_recall_changes
from sparsecap.report.figures import (
    DIVERGED_HEIGHT,
    OVERFLOW_HEIGHT,
    FigureKey,
    PlotLine,
    curves_by_schedule,
    paper_claims_text,
    plot_against_remaining,
    plot_class_recall_heatmap,
    schedule_colors,
    shared_y_limits,
    symlog_threshold,
    sweet_spot,
    write_figures,
)
from sparsecap.report.page import _statistics_html
from sparsecap.report.statistics import UNBOUNDED
from tests.test_claims import RISE_THEN_FALL, _recall_change, write_study

NO_VALUE = Stat.of([])


def _point(group: GroupKey, width: int, remaining: float, accuracies: list[float]) -> PointSummary:
    return PointSummary(
        group=group, width=width, depth=2, remaining_percent=remaining, seeds=tuple(range(len(accuracies))),
        n_diverged=0, clean_accuracy=Stat.of(accuracies), min_class_recall=Stat.of(a - 0.2 for a in accuracies),
        path_fraction_log10=NO_VALUE, n_severed=0, min_effective_width_fraction=NO_VALUE,
    )


def _curve(means: dict[float, float], *, higher_is_better: bool = True, seeds: int = 2) -> PlotLine:
    """`seeds` equal seeds per point: remaining % -> mean, listed dense to sparse as the report lists them."""
    group = GroupKey("mlp", "mnist", "width", "static")
    points = [_point(group, 64 * 2**index, remaining, [mean] * seeds)
              for index, (remaining, mean) in enumerate(means.items())]
    return PlotLine("static", points, lambda point: point.clean_accuracy, higher_is_better=higher_is_better)


def _spot(curve: PlotLine) -> float | None:
    best = sweet_spot(curve)
    return None if best is None else best[0].remaining_percent


def test_the_sweet_spot_is_the_best_sparser_point_never_the_base() -> None:
    means = {100.0: 0.95, 40.0: 0.90, 15.0: 0.92, 5.0: 0.85}
    assert _spot(_curve(means)) == 15.0  # the base's 0.95 is higher, but the base is not a candidate
    assert _spot(_curve(means, higher_is_better=False)) == 5.0  # ΔL: the lowest
    assert _spot(_curve({100.0: 0.9, 40.0: 0.8, 15.0: 0.8})) == 40.0  # a tie goes to the densest
    assert _spot(_curve({100.0: 0.9})) is None
    assert _spot(_curve({100.0: 0.9, 40.0: math.nan, 15.0: 0.7})) == 15.0  # a point without a value is skipped


def test_the_star_needs_two_finished_seeds_at_the_point_and_at_the_base() -> None:
    group = GroupKey("mlp", "mnist", "width", "static")
    lucky = [_point(group, 64, 100.0, [0.90, 0.91]), _point(group, 128, 40.0, [0.99]),
             _point(group, 256, 15.0, [0.80, 0.82])]
    assert _spot(PlotLine("static", lucky, lambda point: point.clean_accuracy)) == 15.0  # not 40 %'s lone 0.99
    for untestable in (_curve({100.0: 0.9, 40.0: 0.95}, seeds=1), _curve({100.0: 0.9, 40.0: 0.95, 15.0: 0.7}, seeds=1)):
        assert sweet_spot(untestable) is None
        figure = plot_against_remaining({group: [untestable]}, ylabel="acc", title="t")
        assert "*" not in [line.get_marker() for line in figure.axes[0].get_lines()]
        assert "sweet spot" not in [text.get_text() for text in figure.legends[0].get_texts()]
    one_seed_base = PlotLine("static", [_point(group, 64, 100.0, [0.9]), *lucky[1:]], lambda point: point.clean_accuracy)
    assert sweet_spot(one_seed_base) is None  # nothing can be tested against a base of one seed


def test_the_star_marks_the_sweet_spot_of_the_claims_and_the_statistics_table(tmp_path: Path) -> None:
    study = write_study(tmp_path, {"static": RISE_THEN_FALL})
    with sqlite3.connect(study / "results.sqlite") as connection:  # w=256: 4 of 5 seeds failed, one lucky
        connection.execute("UPDATE trials SET status = 'failed' WHERE width = 256 AND seed > 0")
        connection.execute("UPDATE trials SET test_accuracy = 0.95 WHERE width = 256 AND seed = 0")
    analysis = analyse(load_study(study))
    [curve] = [curve for curves in curves_by_schedule(analysis.points_by_group, lambda point: point.clean_accuracy)
               .values() for curve in curves]
    [claimed] = [curves[CLEAN_ACCURACY].sweet_spot for curves in analysis.curves.values()]
    starred, _ = sweet_spot(curve)
    assert (starred.label, claimed.label) == ("w=512", "w=512")
    figure = plot_against_remaining({GROUP: [curve]}, ylabel="acc", title="t")
    [star] = [line for line in figure.axes[0].get_lines() if line.get_marker() == "*"]
    assert list(star.get_xdata()) == [claimed.remaining_percent]
    table = _statistics_html(analysis.curves)
    starred_rows = re.findall(rf"<td[^>]*>{re.escape(CLEAN_ACCURACY.label)} · (w=\d+)[^<]*★ sweet spot</td>", table)
    assert starred_rows == ["w=512"]


GROUP = GroupKey("mlp", "mnist", "width", "static")
POSTTRAIN = GroupKey("mlp", "mnist", "width", "posttrain")
SEEDS = {100.0: [0.90, 0.92, 0.94], 40.0: [0.80, 0.86, 0.83], 15.0: [0.70]}


def _seeded_curve() -> PlotLine:
    points = [_point(GROUP, 64 * 2**index, remaining, values) for index, (remaining, values) in enumerate(SEEDS.items())]
    return PlotLine("static", points, lambda point: point.clean_accuracy)


def _t_interval(values: list[float]) -> tuple[float, float]:
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return float(np.mean(values) - half), float(np.mean(values) + half)


def test_shared_y_limits_cover_every_interval_and_every_panel_uses_them() -> None:
    other = PlotLine("dense only", [_point(GROUP, 64, 100.0, [0.30, 0.31])], lambda point: point.clean_accuracy)
    low, high = shared_y_limits([_seeded_curve(), other])
    lowest, highest = _t_interval([0.30, 0.31])[0], _t_interval(SEEDS[100.0])[1]  # one end from each curve
    padding = 0.05 * (highest - lowest)
    assert (low, high) == pytest.approx((lowest - padding, highest + padding))
    figure = plot_against_remaining({GROUP: [_seeded_curve()], POSTTRAIN: [other]}, ylabel="acc", title="t")
    first, second = figure.axes[:2]
    assert first.get_ylim() == pytest.approx((low, high)) and second.get_ylim() == pytest.approx((low, high))
    assert shared_y_limits([PlotLine("empty", [], lambda point: point.clean_accuracy)]) is None


def test_bands_of_accuracies_stay_within_0_and_1_and_those_of_delta_loss_do_not() -> None:
    scattered = [_point(GROUP, 64, 100.0, [0.10, 0.90]), _point(GROUP, 128, 50.0, [0.92, 0.94])]  # ±5 at the base
    accuracy = PlotLine("static", scattered, lambda point: point.clean_accuracy)
    assert shared_y_limits([accuracy]) == pytest.approx((-0.05, 1.05))  # [0, 1], padded by 5 %
    axis = plot_against_remaining({GROUP: [accuracy]}, ylabel="acc", title="t").axes[0]
    [band] = [collection for collection in axis.collections if isinstance(collection, PolyCollection)]
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    assert ys.min() == pytest.approx(0.0) and ys.max() == pytest.approx(1.0)
    unbounded = PlotLine("ΔL", scattered, lambda point: point.clean_accuracy, value_range=UNBOUNDED)
    low, high = shared_y_limits([unbounded])
    assert (low, high) == pytest.approx(_widened(_t_interval([0.10, 0.90])))


def test_a_delta_loss_that_dwarfs_the_rest_gets_a_symmetric_log_axis_and_ordinary_ones_a_linear_axis() -> None:
    def delta_loss(means: list[float]) -> PlotLine:
        points = [_point(GROUP, 64 * 2**index, 100.0 / 2**index, [mean]) for index, mean in enumerate(means)]
        return PlotLine("σ = 0.2", points, lambda point: point.clean_accuracy, value_range=UNBOUNDED)

    broken = delta_loss([0.8, 1.4, -0.3, 3.0, 1e5])  # a VGG at 1/256 of its weights: 1e5 against about 1
    assert symlog_threshold([broken]) == 1.0  # the median |mean|, 1.4, to its power of ten
    axis = plot_against_remaining({GROUP: [broken]}, ylabel="ΔL", title="t").axes[0]
    assert axis.get_yscale() == "symlog" and axis.get_ylabel() == "ΔL, log scale beyond ±1"
    low, high = axis.get_ylim()
    assert -0.3 > low > -1.0 and 1e5 < high < 3e5  # padded by 5 % of the drawn span (linearly: -5,000 below)
    ordinary = delta_loss([0.01, 0.05, 0.2, 0.6, 1.9])
    assert symlog_threshold([ordinary]) is None
    assert plot_against_remaining({GROUP: [ordinary]}, ylabel="ΔL", title="t").axes[0].get_yscale() == "linear"
    accuracy = PlotLine("static", broken.points, broken.stat_of)  # bounded to [0, 1]: never a log axis
    assert symlog_threshold([accuracy]) is None


def test_a_point_whose_every_seed_diverged_is_marked_on_the_bottom_edge() -> None:
    collapsed = dataclasses.replace(_point(GROUP, 128, 40.0, []), n_diverged=2)
    curve = PlotLine("static", [_point(GROUP, 64, 100.0, [0.9, 0.92]), collapsed, _point(GROUP, 256, 15.0, [0.5, 0.6])],
                  lambda point: point.clean_accuracy)
    figure = plot_against_remaining({GROUP: [curve]}, ylabel="acc", title="t")
    [marker] = [line for line in figure.axes[0].get_lines() if line.get_marker() == "x"]
    assert list(marker.get_xdata()) == [40.0] and list(marker.get_ydata()) == [DIVERGED_HEIGHT]
    [mean_line] = [line for line in figure.axes[0].get_lines() if line.get_label() == "static"]
    assert list(mean_line.get_xdata()) == [15.0, 100.0]  # no value at 40 %: the line passes it by
    assert "every seed diverged" in [text.get_text() for text in figure.legends[0].get_texts()]


def test_a_point_where_only_some_seeds_diverged_is_drawn_not_marked_as_all_diverged() -> None:
    """One of three seeds diverged: the point still has a mean from the survivors, and a ✕ would tell the reader
    (and claim c6) that the whole point collapsed."""
    partly = dataclasses.replace(_point(GROUP, 128, 40.0, [0.80, 0.82]), n_diverged=1)
    curve = PlotLine("static", [_point(GROUP, 64, 100.0, [0.9, 0.92]), partly], lambda point: point.clean_accuracy)
    figure = plot_against_remaining({GROUP: [curve]}, ylabel="acc", title="t")
    assert [line for line in figure.axes[0].get_lines() if line.get_marker() == "x"] == []
    [mean_line] = [line for line in figure.axes[0].get_lines() if line.get_label() == "static"]
    assert list(mean_line.get_xdata()) == [40.0, 100.0]
    assert "every seed diverged" not in [text.get_text() for text in figure.legends[0].get_texts()]


def test_the_log_x_axis_gets_at_least_three_round_ticks() -> None:
    """From 100 % to 15 % only one power of ten (100) lies on the axis: a lone tick leaves the log axis unreadable,
    so the ticks step down to 1-2-5 mantissas."""
    axis = plot_against_remaining({GROUP: [_curve({100.0: 0.9, 15.0: 0.8})]}, ylabel="acc", title="t").axes[0]
    assert list(axis.get_xticks()) == pytest.approx([20.0, 50.0, 100.0])
    assert [label.get_text() for label in axis.get_xticklabels()] == ["20", "50", "100"]


def test_a_point_whose_loss_overflowed_is_marked_on_the_top_edge_and_keeps_the_axis_finite() -> None:
    overflowed = _point(GROUP, 128, 40.0, [0.4, math.inf])
    curve = PlotLine("static", [_point(GROUP, 64, 100.0, [0.5, 0.6]), overflowed, _point(GROUP, 256, 15.0, [0.3, 0.35])],
                  lambda point: point.clean_accuracy, higher_is_better=False, value_range=UNBOUNDED)
    figure = plot_against_remaining({GROUP: [curve]}, ylabel="ΔL", title="t")
    [marker] = [line for line in figure.axes[0].get_lines() if line.get_marker() == "^"]
    assert list(marker.get_xdata()) == [40.0] and list(marker.get_ydata()) == [OVERFLOW_HEIGHT]
    [mean_line] = [line for line in figure.axes[0].get_lines() if line.get_label() == "static"]
    assert list(mean_line.get_xdata()) == [15.0, 100.0]
    assert all(map(math.isfinite, figure.axes[0].get_ylim()))
    assert "infinite: a loss overflowed under noise" in [text.get_text() for text in figure.legends[0].get_texts()]


def _widened(limits: tuple[float, float]) -> tuple[float, float]:
    padding = 0.05 * (limits[1] - limits[0])
    return limits[0] - padding, limits[1] + padding


def test_bands_are_95_percent_t_intervals_and_one_seed_shows_the_mean_alone() -> None:
    figure = plot_against_remaining({GROUP: [_seeded_curve()]}, ylabel="acc", title="t")
    axis = figure.axes[0]
    [band] = [collection for collection in axis.collections if isinstance(collection, PolyCollection)]
    ys = np.concatenate([path.vertices[:, 1] for path in band.get_paths()])
    xs = np.concatenate([path.vertices[:, 0] for path in band.get_paths()])
    expected = [*_t_interval(SEEDS[100.0]), *_t_interval(SEEDS[40.0])]
    assert ys.min() == pytest.approx(min(expected)) and ys.max() == pytest.approx(max(expected))
    assert xs.min() == pytest.approx(40.0)  # the one-seed point at 15 % has no band
    [mean_line] = [line for line in axis.get_lines() if line.get_label() == "static"]
    assert list(mean_line.get_xdata()) == [15.0, 40.0, 100.0]
    assert mean_line.get_ydata()[0] == pytest.approx(0.70)


def test_a_curve_of_one_point_draws_without_warnings() -> None:
    """A study of one width: matplotlib warned (on the user's terminal) of singular limits as the axis turned log."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        axis = plot_against_remaining({GROUP: [_curve({100.0: 0.9})]}, ylabel="acc", title="t").axes[0]
    assert axis.get_xscale() == "log" and axis.get_xlim() == pytest.approx((120.0, 100.0 / 1.2))


def test_the_base_is_marked_on_a_dotted_line_and_the_sweet_spot_starred() -> None:
    axis = plot_against_remaining({GROUP: [_seeded_curve()]}, ylabel="acc", title="t").axes[0]
    dotted = [line for line in axis.get_lines() if line.get_linestyle() == ":"]
    assert [list(line.get_xdata()) for line in dotted] == [[100.0, 100.0]]
    markers = {line.get_marker(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}
    assert markers["s"] == ([100.0], [pytest.approx(0.92)])
    assert markers["*"] == ([40.0], [pytest.approx(0.83)])


def test_the_schedules_of_one_setting_are_lines_of_one_panel() -> None:
    cifar = GroupKey("mlp", "cifar10", "width", "static")
    points_by_group = {
        group: [_point(group, 64, 100.0, [0.9, 0.91]), _point(group, 256, 15.0, [0.8, 0.82])]
        for group in (GROUP, POSTTRAIN, cifar)
    }
    panels = curves_by_schedule(points_by_group, lambda point: point.clean_accuracy)
    assert [panel.label for panel in panels] == ["mlp · cifar10 · width family", "mlp · mnist · width family"]
    mnist = list(panels.values())[1]
    assert [curve.label for curve in mnist] == ["posttrain", "static"]
    colors = schedule_colors(["static", "posttrain"])
    assert [curve.color for curve in mnist] == [colors["posttrain"], colors["static"]] and len(set(colors.values())) == 2
    figure = plot_against_remaining(panels, ylabel="acc", title="t", legend_title="schedule")
    labels = [line.get_label() for line in figure.axes[1].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["posttrain", "static"]
    assert [text.get_text() for text in figure.legends[0].get_texts()] == [
        "static", "posttrain", "dense base (100 %)", "sweet spot"]


def test_captions_state_the_claim_the_finding_and_the_interval(tmp_path: Path) -> None:
    points_by_group = {GROUP: [_point(GROUP, 64, 100.0, [0.9, 0.91]), _point(GROUP, 256, 15.0, [0.8, 0.82])]}
    figures = write_figures(points_by_group, {}, tmp_path, findings={"clean_accuracy": "Accuracy fell by 9 pp."})
    captions = {info.key: info.caption for info in figures}
    assert set(captions) == {FigureKey.CLEAN_ACCURACY, FigureKey.MIN_CLASS_RECALL}
    assert all("95% CI over seeds" in caption and "± std" not in caption for caption in captions.values())
    assert captions[FigureKey.CLEAN_ACCURACY].endswith(
        f"The paper claims: {paper_claims_text(FigureKey.CLEAN_ACCURACY)}. This study found: Accuracy fell by 9 pp.")
    assert "This study found" not in captions[FigureKey.MIN_CLASS_RECALL]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clean_accuracy.png", "min_class_recall.png"]
    with pytest.raises(ValueError, match=r"unknown figure\(s\) \['clean'\]; the figures are \[.*'clean_accuracy'"):
        write_figures(points_by_group, {}, tmp_path, findings={"clean": "x"})


def test_each_row_labels_its_y_axis_on_its_first_panel_with_data() -> None:
    empty = PlotLine("static", [], lambda point: point.clean_accuracy)
    panels = {GroupKey("mlp", "mnist", "width", schedule): [curve]
              for schedule, curve in zip("abcd", [empty, _seeded_curve(), _seeded_curve(), _seeded_curve()])}
    figure = plot_against_remaining(panels, ylabel="acc", title="t")  # two columns: rows (a, b) and (c, d)
    assert [axis.get_ylabel() for axis in figure.axes[:4]] == ["", "acc", "acc", ""]


def _recall_analysis(n_classes: int) -> dict[GroupKey, list[PointRecallAnalysis]]:
    """Two compressed points of one group, each with `n_classes` classes' recall changes over 2 seeds."""
    base = _point(GROUP, 64, 100.0, [0.9, 0.91])
    recalls = [[0.9] * n_classes, [0.92] * n_classes]
    return {GROUP: [PointRecallAnalysis(_point(GROUP, width, remaining, [0.8, 0.82]), base,
                                        normalised_recall_changes(recalls, [0.8, 0.82], recalls, [0.9, 0.91]))
                    for width, remaining in ((128, 40.0), (256, 15.0))]}


@pytest.mark.parametrize("n_classes", [10, 21])
def test_the_heatmap_caption_names_the_rows_and_columns_drawn(tmp_path: Path, n_classes: int) -> None:
    analysis = _recall_analysis(n_classes)
    axis = plot_class_recall_heatmap(analysis).axes[0]
    drawn = {(n_classes, 2): ("Per class (rows) and compressed point (columns)", axis.get_ylabel()),
             (2, n_classes): ("Per compressed point (rows) and class (columns)", axis.get_xlabel())}
    layout, class_axis_label = drawn[axis.get_images()[0].get_array().shape]
    [info] = [info for info in write_figures({}, analysis, tmp_path) if info.key is FigureKey.CLASS_RECALL_CHANGES]
    assert info.caption.startswith(f"{layout}:") and class_axis_label == "class"


def _lines(figure: Figure) -> dict[tuple[str, str], dict[float, float]]:
    """(panel title, line label) -> remaining % -> plotted mean, for every mean line of a figure."""
    return {(axis.get_title(), line.get_label()): dict(zip(line.get_xdata(), line.get_ydata(), strict=True))
            for axis in figure.axes for line in axis.get_lines() if not line.get_label().startswith("_")}


def test_every_line_plots_the_aggregated_means_of_its_own_sigma_budget_and_severity(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each σ, ε and (corruption, severity) line carries its own numbers: a line closed over the loop's last key
    would draw the last σ's values under every label."""
    def trial(remaining: float, width: int, seed: int) -> dict[str, object]:
        return {"trial_id": f"{width}-{seed}", "architecture": "mlp", "dataset": "mnist", "family": "width",
                "schedule": "static", "width": width, "depth": 2, "seed": seed, "status": "finished",
                "remaining_percent": remaining, "test_accuracy": 0.9 - 0.01 * seed, "min_class_recall": 0.5 + seed / 10}

    trials = [trial(remaining, width, seed) for width, remaining in ((64, 100.0), (128, 40.0)) for seed in (0, 1)]
    noise = {t["trial_id"]: [{"sigma": sigma, "draw": 0, "accuracy": 0.8 - sigma - 0.01 * t["seed"],
                              "delta_loss": sigma * t["width"] / 64 + 0.1 * t["seed"]} for sigma in (0.0, 0.1, 0.2)]
             for t in trials}
    adversarial = {t["trial_id"]: [{"attack": "pgd", "epsilon": epsilon,
                                    "robust_accuracy": 0.6 - epsilon - t["seed"] / 50} for epsilon in (0.1, 0.3)]
                   for t in trials}
    corruption = {t["trial_id"]: [{"corruption": name, "severity": severity, "draw": 0, "loss": 1.0,
                                   "accuracy": 0.7 - 0.1 * severity - shift - t["seed"] / 100}
                                  for name, shift in (("fog", 0.0), ("snow", 0.05)) for severity in (1, 2)]
                  for t in trials}
    points_by_group = summarise_points(StudyResults(Path("."), {}, trials, {}, noise, adversarial, corruption))
    figures: dict[str, Figure] = {}
    save = figures_module._save
    monkeypatch.setattr(figures_module, "_save", lambda figure, path: (figures.setdefault(path.stem, figure),
                                                                         save(figure, path)))
    write_figures(points_by_group, {}, tmp_path)
    [points] = points_by_group.values()

    def means(stat_of: Callable[[PointSummary], Stat | None]) -> dict[float, float]:
        return {point.remaining_percent: pytest.approx(stat_of(point).mean) for point in points}

    title = points[0].group.label
    expected = {
        "clean_accuracy": {("mlp · mnist · width family", "static"): means(lambda point: point.clean_accuracy)},
        "min_class_recall": {("mlp · mnist · width family", "static"): means(lambda point: point.min_class_recall)},
        "accuracy_under_noise": {(title, f"σ = {sigma:g}"): means(lambda point, s=sigma: point.noise_accuracy[s])
                                 for sigma in (0.0, 0.1, 0.2)},
        "delta_loss_under_noise": {(title, f"σ = {sigma:g}"): means(lambda point, s=sigma: point.noise_delta_loss[s])
                                   for sigma in (0.1, 0.2)},
        "adversarial_accuracy": {
            (f"{title}\nPGD", f"ε = {epsilon:g}"):
                means(lambda point, e=epsilon: point.adversarial_accuracy[("pgd", e)])
            for epsilon in (0.1, 0.3)},
        "corrupted_accuracy": {(title, "clean"): means(lambda point: point.clean_accuracy)} | {
            (title, f"severity {level}, mean over corruptions"): means(lambda point, s=level: point.corruption_mean[s])
            for level in (1, 2)},
        "corruption_breakdown": {
            (f"{title}\n{name}", f"severity {level}"):
                means(lambda point, key=(name, level): point.corruption_accuracy[key])
            for name in ("fog", "snow") for level in (1, 2)},
    }
    assert set(figures) == set(expected)
    for stem, lines in expected.items():
        assert _lines(figures[stem]) == lines, stem


def test_error_bars_span_the_interval_cut_to_0_and_1_however_lopsided() -> None:
    """Seeds 0.80 and 0.98: the t-interval reaches far past 1, cut to [0, 1] around a mean of 0.89; bars drawn as
    distances from the mean must end there, not mirror the two distances."""
    curve = PlotLine("static", [_point(GROUP, 64, 100.0, [0.80, 0.98]), _point(GROUP, 128, 40.0, [0.85, 0.87])],
                  lambda point: point.clean_accuracy)
    axis = plot_against_remaining({GROUP: [curve]}, ylabel="acc", title="t").axes[0]
    [bars] = [collection for collection in axis.collections if isinstance(collection, LineCollection)]
    ends = {float(segment[0][0]): sorted(float(y) for y in segment[:, 1]) for segment in bars.get_segments()}
    assert ends == {100.0: [0.0, 1.0], 40.0: pytest.approx(list(_t_interval([0.85, 0.87])))}
    assert axis.get_xscale() == "log" and axis.get_xlim()[0] > 100.0 > 40.0 > axis.get_xlim()[1]  # dense on the left


def test_the_heatmap_draws_each_cells_change_with_its_sign() -> None:
    """Class 0 of the sparse point loses 0.1 more than accuracy (a loss, drawn red, below the colour scale's
    centre), class 1 gains 0.05: the image holds exactly the changes, classes as rows and points as columns."""
    base = _point(GROUP, 64, 100.0, [0.9, 0.91])
    model = _point(GROUP, 128, 40.0, [0.8, 0.82])
    changes = normalised_recall_changes([[0.7, 0.85], [0.72, 0.87]], [0.8, 0.82], [[0.9, 0.9], [0.91, 0.91]],
                                        [0.9, 0.91])
    figure = plot_class_recall_heatmap({GROUP: [PointRecallAnalysis(model, base, changes)]})
    [image] = figure.axes[0].get_images()
    drawn = np.asarray(image.get_array())
    assert drawn.shape == (2, 1) and drawn.ravel().tolist() == pytest.approx([-0.1, 0.05])
    assert image.norm(-0.1) < 0.5 < image.norm(0.05)


def _marked_heatmap_axis():
    """Three classes, two points; only class 2 of the first point (40 %) changed significantly."""
    base = _point(GROUP, 64, 100.0, [0.9, 0.91])
    first = [_recall_change(0, 0.02, 0.5), _recall_change(1, -0.01, 0.6), _recall_change(2, -0.1, 0.001)]
    second = [_recall_change(0, 0.05, 0.2), _recall_change(1, -0.03, 0.3), _recall_change(2, 0.0, 0.9)]
    analysis = {GROUP: [PointRecallAnalysis(_point(GROUP, 128, 40.0, [0.8, 0.82]), base, first),
                        PointRecallAnalysis(_point(GROUP, 256, 15.0, [0.7, 0.72]), base, second)]}
    return plot_class_recall_heatmap(analysis).axes[0]


def test_the_heatmap_boxes_exactly_the_significant_cells() -> None:
    """The box is how a reader finds the classes that lost significantly (claim c4) among the coloured cells."""
    axis = _marked_heatmap_axis()
    boxes = [(tuple(patch.get_xy()), patch.get_width(), patch.get_height(), patch.get_fill())
             for patch in axis.patches]
    assert boxes == [((-0.5, 1.5), 1, 1, False)]  # column 0 (the 40 % point), row 2 (class 2)


def test_the_heatmap_writes_each_change_on_its_own_cell() -> None:
    """Points as columns (x), classes as rows (y): a number on the wrong cell names the wrong class."""
    axis = _marked_heatmap_axis()
    assert axis.get_xlabel() == "compressed point (remaining weights)" and axis.get_ylabel() == "class"
    written = {text.get_position(): text.get_text() for text in axis.texts}
    assert written == {(0, 0): "+0.020", (0, 1): "-0.010", (0, 2): "-0.100*",
                       (1, 0): "+0.050", (1, 1): "-0.030", (1, 2): "+0.000"}
    [image] = axis.get_images()
    assert np.asarray(image.get_array())[2, 0] == pytest.approx(-0.1)  # the starred number's cell holds its value


def test_a_budget_on_the_hundredths_grid_is_labelled_as_a_decimal_not_in_255ths() -> None:
    """ε = 0.2 is 51/255 exactly, but a study that asked for 0.2 should see 0.2; 8/255 keeps its CIFAR name."""
    group = GroupKey("mlp", "mnist", "width", "static")
    points = [dataclasses.replace(_point(group, width, remaining, [0.9, 0.91]), adversarial_accuracy={
        ("pgd", 8 / 255): Stat.of([0.6, 0.62]), ("pgd", 0.2): Stat.of([0.3, 0.32])})
        for width, remaining in ((64, 100.0), (128, 40.0))]
    points_by_group = {group: points}
    figure = figures_module._plot_adversarial(points_by_group, adversarial_budgets(points_by_group))
    labels = [line.get_label() for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["ε = 8/255", "ε = 0.2"]
    assert [text.get_text() for text in figure.legends[0].get_texts()][:2] == ["ε = 8/255", "ε = 0.2"]
