"""The report: aggregation, the class-recall test, figures, the HTML page, and the page in a real browser."""

from __future__ import annotations

import math
import os
import re
from html import unescape
from pathlib import Path

import numpy as np
import pytest

from sparsecap.errors import StudyDirectoryError
from sparsecap.report import write_report
from sparsecap.report.aggregate import (
    Stat,
    StudyResults,
    class_recall_analysis,
    corruption_per_trial,
    find_unfinished_trials,
    incomplete_warning,
    load_study,
    summarise_points,
)
from sparsecap.report.class_recall import normalised_recall_changes
from sparsecap.studies import load_spec
from sparsecap.studies.database import StudyDatabase, TrialRecord
from sparsecap.studies.trials import expand
from tests.study_helpers import write_spec

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHROMIUM = Path("/usr/bin/chromium")
EXPECTED_FIGURES = [
    "accuracy_under_noise.png",
    "delta_loss_under_noise.png",
    "min_class_recall.png",
    "clean_accuracy.png",
    "class_recall_changes.png",
]
SIGMAS = (0.0, 0.05, 0.2)
WIDTHS = {64: 100.0, 128: 40.0, 256: 15.0}  # width -> remaining weights (%) at a fixed nonzero count
N_CLASSES = 10
SCHEDULES = ("static", "posttrain")


def _record(
    *, schedule: str, width: int, seed: int, status: str = "finished", **overrides: object
) -> TrialRecord:
    remaining = WIDTHS.get(width, 5.0)
    sparsity = 1 - remaining / 100
    accuracy = 0.9 - 0.1 * sparsity + 0.01 * seed
    recalls = [min(1.0, accuracy + 0.02 * (c - 4.5) - (0.15 * sparsity if c == 3 else 0.0)) for c in range(N_CLASSES)]
    noise = [
        {
            "sigma": sigma,
            "draw": draw,
            "accuracy": accuracy - sigma * (1 + sparsity) - 0.005 * draw,
            "loss": 0.3 + sigma * (1 + sparsity),
            "delta_loss": sigma * (1 + sparsity) + 0.001 * draw,
        }
        for sigma in SIGMAS
        for draw in range(2)
    ]
    fields: dict[str, object] = dict(
        trial_id=f"mlp-mnist-width-{schedule}-w{width}-s{seed}",
        architecture="mlp",
        dataset="mnist",
        family="width",
        width=width,
        depth=2,
        schedule=schedule,
        allocation="uniform",
        seed=seed,
        status=status,
        total_weights=int(10_000 * 100 / remaining),
        nonzero_weights=10_000,
        base_nonzero=10_000,
        remaining_percent=remaining,
        unmasked_parameters=100,
        disconnected_units=0,
        epochs=2,
        final_train_loss=0.2,
        test_accuracy=accuracy,
        test_loss=0.3,
        min_class_recall=min(recalls),
        train_seconds=1.0,
        checkpoint=f"checkpoints/{schedule}-{width}-{seed}.safetensors",
        finished_at="2025-01-01T00:00:00Z",
        epoch_losses=(0.5, 0.2),
        class_recall=tuple(recalls),
        weight_noise=tuple(noise),
    )
    fields.update(overrides)
    return TrialRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def study_directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("study")
    database = StudyDatabase.create(directory)
    database.write_metadata(
        {
            "spec": {"name": "width <study> & co", "family": "width", "seeds": [0, 1], "sigmas": list(SIGMAS)},
            "spec_hash": "abc123",
            "versions": {"sparsecap": "0.1.0", "torch": "2.13.0"},
        }
    )
    for schedule in SCHEDULES:
        for width in WIDTHS:
            for seed in (0, 1):
                database.record_trial(_record(schedule=schedule, width=width, seed=seed))
    # A diverged trial: no usable metrics at all.
    database.record_trial(
        _record(
            schedule="static",
            width=256,
            seed=2,
            status="diverged",
            final_train_loss=math.nan,
            test_accuracy=None,
            test_loss=math.nan,
            min_class_recall=None,
            class_recall=(),
            weight_noise=({"sigma": 0.05, "draw": 0, "accuracy": 0.1, "loss": None, "delta_loss": None},),
        )
    )
    return directory


@pytest.fixture(scope="module")
def report_page(study_directory: Path) -> Path:
    return write_report(study_directory)


def test_report_writes_valid_figures_referenced_by_the_page(study_directory: Path, report_page: Path) -> None:
    assert report_page == study_directory / "report" / "index.html"
    html = report_page.read_text(encoding="utf-8")
    for name in EXPECTED_FIGURES:
        path = report_page.parent / name
        assert path.is_file(), name
        data = path.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE), name
        assert f'src="{name}"' in html
    assert len(re.findall(r"<img ", html)) == len(EXPECTED_FIGURES)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html, flags=re.S)
    line_figures = [caption for caption in captions if "Class-recall changes" not in caption]
    assert len(line_figures) == len(EXPECTED_FIGURES) - 1
    assert all("95% CI over seeds" in caption and "The paper claims: " in caption for caption in line_figures)
    [delta_loss] = [caption for caption in captions if "(ΔL)" in caption]
    assert "ΔL grows more slowly for sparser models" in delta_loss and "lowest mean" in delta_loss


def test_page_escapes_text_and_summarises_trials(report_page: Path) -> None:
    html = report_page.read_text(encoding="utf-8")
    assert "<study>" not in html
    assert "width &lt;study&gt; &amp; co" in html
    assert "13 trial(s) recorded: 12 finished, 1 diverged" in html
    assert "&quot;spec_hash&quot;" not in html  # the spec is shown, not the whole metadata
    assert "torch" in html and "2.13.0" in html
    assert len(re.findall(r'<tr class="point-row">', html)) == 2 * len(WIDTHS) + 2 * (len(WIDTHS) - 1)
    # Per-point statistics: 2 groups x (clean accuracy, accuracy and ΔL under noise, min class recall) x points.
    assert len(re.findall(r'<tr class="statistic-row">', html)) == 2 * 4 * len(WIDTHS)
    assert html.index('id="claims-table"') < html.index("<h2>Figures</h2>")  # the answer comes first
    assert "http://" not in html and "https://" not in html


def test_aggregation_averages_draws_then_seeds_and_skips_diverged(study_directory: Path) -> None:
    points = summarise_points(load_study(study_directory))
    assert [group.schedule for group in points] == ["posttrain", "static"]
    static = next(group for group in points if group.schedule == "static")
    sparsest = points[static][-1]
    assert (sparsest.width, sparsest.remaining_percent) == (256, 15.0)
    assert sparsest.seeds == (0, 1) and sparsest.n_diverged == 1
    sparsity = 0.85
    expected = [0.9 - 0.1 * sparsity + 0.01 * seed - 0.05 * (1 + sparsity) - 0.0025 for seed in (0, 1)]
    stat = sparsest.noise_accuracy[0.05]
    assert stat.n == 2
    assert stat.mean == pytest.approx(sum(expected) / 2)
    assert stat.std == pytest.approx(abs(expected[0] - expected[1]) / math.sqrt(2))
    assert points[static][0].is_base and points[static][0].label == "w=64"


def test_class_recall_changes_hand_computed() -> None:
    base_accuracy = [0.80, 0.82, 0.78]
    base_recalls = [[0.80, 0.90, 0.70], [0.82, 0.91, 0.73], [0.78, 0.89, 0.67]]
    model_accuracy = [0.70, 0.71, 0.69]
    # class 0 loses far more than accuracy does (gap -0.30 vs 0.00): clearly significant;
    # class 1 moves just like accuracy (gap ~0.10 on both sides): clearly not significant.
    model_recalls = [[0.40, 0.81, 0.60], [0.42, 0.79, 0.61], [0.38, 0.80, 0.59]]
    changes = normalised_recall_changes(model_recalls, model_accuracy, base_recalls, base_accuracy)
    assert [change.class_index for change in changes] == [0, 1, 2]
    # (0.40 - 0.80) - (0.70 - 0.80) = -0.30
    assert changes[0].change == pytest.approx(-0.30)
    assert changes[0].significant is True and changes[0].p_value < 0.001
    # (0.80 - 0.90) - (0.70 - 0.80) = 0.00
    assert changes[1].change == pytest.approx(0.0, abs=1e-12)
    assert changes[1].significant is False and changes[1].p_value > 0.5
    assert changes[1].label == "no" and changes[0].label == "yes"
    # (0.60 - 0.70) - (-0.10) = 0.00
    assert changes[2].change == pytest.approx(0.0, abs=1e-12)


def test_class_recall_significance_is_holm_adjusted_over_the_points_classes() -> None:
    """One class of 20 at p = 0.038 is what chance gives among 20 tests: no star once adjusted."""
    classes = 20
    base = [[0.8 + shift] + [0.8] * (classes - 1) for shift in (0.00, 0.02, -0.02)]
    model = [[0.7 + shift] + [0.7] * (classes - 1) for shift in (-0.05, -0.03, -0.07)]
    changes = normalised_recall_changes(model, [0.7] * 3, base, [0.8] * 3)
    assert changes[0].p_value == pytest.approx(0.0376, abs=1e-4) and changes[0].adjusted_p == pytest.approx(
        classes * changes[0].p_value)
    assert changes[0].significant is False
    alone = normalised_recall_changes([row[:1] for row in model], [0.7] * 3, [row[:1] for row in base], [0.8] * 3)
    assert alone[0].adjusted_p == alone[0].p_value and alone[0].significant is True  # one test: as before


def test_class_recall_change_is_na_with_one_seed() -> None:
    changes = normalised_recall_changes([[0.5, 0.9]], [0.7], [[0.8, 0.8], [0.9, 0.9]], [0.8, 0.9])
    # class 0: (0.5 - 0.85) - (0.7 - 0.85) = -0.2
    assert changes[0].change == pytest.approx(-0.2)
    assert all(change.significant is None and change.p_value is None for change in changes)
    assert changes[0].label == "n/a"


@pytest.mark.parametrize("recall", [0.1135, 0.7, 0.1])
def test_class_recall_of_seeds_that_all_agree_is_no_change(recall: float) -> None:
    """7 and 5 identical seeds: their means differ in the last bit, which is no evidence of anything."""
    change = normalised_recall_changes([[recall]] * 7, [0.0] * 7, [[recall]] * 5, [0.0] * 5)[0]
    assert change.p_value == 1.0 and change.significant is False and change.label == "no"


@pytest.mark.parametrize("noisy_side", ["model", "base"])
def test_class_recall_gaps_equal_but_for_float_rounding_are_no_change(noisy_side: str) -> None:
    """Recall minus accuracy is 0.2 in every seed of both, computed as 0.3 − 0.1, 0.5 − 0.3 and 0.7 − 0.5 on
    either side: the last bits differ, which is no evidence of anything."""
    noisy = ([[0.3], [0.5], [0.7]], [0.1, 0.3, 0.5])
    exact = ([[0.2]] * 3, [0.0] * 3)
    model, base = (noisy, exact) if noisy_side == "model" else (exact, noisy)
    change = normalised_recall_changes(*model, *base)[0]
    assert change.p_value == 1.0 and change.significant is False


def test_empty_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(StudyDirectoryError, match="results database"):
        write_report(tmp_path)
    assert not (tmp_path / "results.sqlite").exists()


def test_no_finished_trials_raises(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    database.record_trial(_record(schedule="static", width=64, seed=0, status="diverged"))
    database.record_trial(_record(schedule="static", width=64, seed=1, status="failed"))
    with pytest.raises(StudyDirectoryError, match="no finished trials"):
        write_report(tmp_path)


def test_a_study_whose_every_trial_diverged_says_so(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    for seed in (0, 1):
        database.record_trial(_record(schedule="static", width=64, seed=seed, status="diverged"))
    with pytest.raises(StudyDirectoryError, match=r"all 2 trial\(s\) .* diverged .* learning_rate"):
        write_report(tmp_path)


def test_report_without_metadata_base_or_noise(tmp_path: Path) -> None:
    """No metadata, no dense base (so no class-recall figure), no weight noise, an all-diverged point."""
    database = StudyDatabase.create(tmp_path)
    database.record_trial(_record(schedule="static", width=128, seed=0, weight_noise=()))
    database.record_trial(_record(schedule="static", width=512, seed=0, status="diverged", weight_noise=()))
    page = write_report(tmp_path)
    html = page.read_text(encoding="utf-8")
    assert tmp_path.name in html
    written = sorted(path.name for path in page.parent.glob("*.png"))
    assert written == ["clean_accuracy.png", "min_class_recall.png"]
    assert "No weight-noise results were recorded." in html


@pytest.mark.slow
def test_page_renders_in_chromium(report_page: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: run `apt-get install chromium` to run the browser test")
        pytest.skip(f"{CHROMIUM} is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(report_page.resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => ({src: i.getAttribute('src'),"
                " complete: i.complete, width: i.naturalWidth}))"
            )
            assert len(images) == len(EXPECTED_FIGURES)
            for image in images:
                assert image["complete"] and image["width"] > 0, image
            assert page.locator("#results-table tbody tr.point-row").count() == 2 * len(WIDTHS)
            assert page.locator("#class-recall-table tbody tr.point-row").count() == 2 * (len(WIDTHS) - 1)
            claims = page.locator("#claims-table")
            assert claims.is_visible()
            verdicts = page.locator("#claims-table td.verdict").all_inner_texts()
            assert verdicts and set(verdicts) <= {"holds", "does not hold", "inconclusive"}
            readable = page.evaluate(
                "() => { const t = document.querySelector('#claims-table');"
                " return {font: parseFloat(getComputedStyle(t.querySelector('td')).fontSize),"
                " width: t.getBoundingClientRect().width, view: document.documentElement.clientWidth}; }")
            assert readable["font"] >= 12 and readable["width"] <= readable["view"], readable  # no sideways scrolling
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "report.png").read_bytes().startswith(PNG_SIGNATURE)


def test_adversarial_figure_and_caption_only_with_adversarial_rows(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    for width in WIDTHS:
        for seed in (0, 1):
            rows = tuple(
                {"attack": attack, "epsilon": epsilon, "robust_accuracy": 0.8 - epsilon - 0.1 * seed - width / 1000,
                 "success_rate": 0.1 + epsilon, "examples": 100}
                for attack in ("fgsm", "pgd")
                for epsilon in (0.1, 0.3)
            )
            database.record_trial(_record(schedule="static", width=width, seed=seed, adversarial=rows))
    assert len(database.rows("adversarial")) == len(WIDTHS) * 2 * 4
    points = summarise_points(load_study(tmp_path))
    [static] = points.values()
    stat = static[0].adversarial_accuracy[("pgd", 0.3)]
    assert (static[0].width, stat.n) == (64, 2)
    assert stat.mean == pytest.approx(0.8 - 0.3 - 0.05 - 0.064)
    assert stat.std == pytest.approx(0.1 / math.sqrt(2))
    page = write_report(tmp_path)
    html = page.read_text(encoding="utf-8")
    data = (page.parent / "adversarial_accuracy.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert 'src="adversarial_accuracy.png"' in html and "Robust accuracy under adversarial attacks." in html
    assert "Adversarial attacks (L∞ budgets in pixel units): FGSM at ε 0.1, 0.3; PGD at ε 0.1, 0.3." in html


def test_no_adversarial_figure_without_adversarial_rows(report_page: Path) -> None:
    html = report_page.read_text(encoding="utf-8")
    assert "adversarial_accuracy" not in html and "Adversarial attacks (L∞" not in html
    assert "no attack was run (enable [adversarial])" in html  # c3's verdict says why it is inconclusive
    assert not (report_page.parent / "adversarial_accuracy.png").exists()


def test_the_results_table_shows_connectivity_over_seeds(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    kept_paths = {(64, 0): 0.0, (64, 1): 0.0, (256, 0): -3.0, (256, 1): -3.5, (256, 2): -math.inf}
    for (width, seed), log_fraction in kept_paths.items():
        severed = log_fraction == -math.inf
        database.record_trial(_record(
            schedule="static", width=width, seed=seed, path_fraction_log10=log_fraction,
            min_effective_width_fraction=0.0 if severed else 1.0 - (width > 64) * (0.5 + seed / 10),
            layer_connectivity=({"layer": "network.hidden1", "units": width, "effective_units": width // 2},),
        ))
    assert database.rows("layer_connectivity")[0] == {
        "trial_id": "mlp-mnist-width-static-w64-s0", "layer_index": 0, "layer": "network.hidden1", "units": 64,
        "effective_units": 32}
    [(base, sparse)] = summarise_points(load_study(tmp_path)).values()
    assert (base.path_fraction_log10.mean, base.n_severed, base.min_effective_width_fraction.mean) == (0.0, 0, 1.0)
    assert (sparse.path_fraction_log10.mean, sparse.path_fraction_log10.n, sparse.n_severed) == (-3.25, 2, 1)
    assert sparse.min_effective_width_fraction.mean == pytest.approx((0.5 + 0.4 + 0.0) / 3)
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "log₁₀ kept paths" in html and "min effective width" in html
    assert "-3.25 ± 0.35 (1 seed(s) keep no path)" in html


def _study_with_losses(directory: Path, stop_loss: float, runs: dict[tuple[int, int], tuple[int, float]]) -> Path:
    """Finished trials, (width, seed) -> (epochs, final training loss), under a recorded stop_loss."""
    directory.mkdir()
    database = StudyDatabase.create(directory)
    database.write_metadata({"spec": {"name": "losses", "training": {"stop_loss": stop_loss, "max_epochs": 20}}})
    for (width, seed), (epochs, loss) in runs.items():
        database.record_trial(_record(schedule="static", width=width, seed=seed, epochs=epochs, final_train_loss=loss,
                                      epoch_losses=(loss,) * epochs))
    return directory


def test_the_page_counts_the_trials_max_epochs_ended_before_the_stopping_rule(tmp_path: Path) -> None:
    """A loss equal to stop_loss has not met the rule (training stops below it); epochs are averaged per point."""
    runs = {(64, 0): (7, 0.05), (64, 1): (9, 0.08), (256, 0): (20, 0.3), (256, 1): (20, 0.1)}
    directory = _study_with_losses(tmp_path / "short", 0.1, runs)
    [(base, sparse)] = summarise_points(load_study(directory)).values()
    assert (base.epochs.mean, base.n_under_trained, sparse.epochs.mean, sparse.n_under_trained) == (8.0, 0, 20.0, 2)
    html = write_report(directory).read_text(encoding="utf-8")
    assert [row[6:8] for row in _results_cells(html, "results-table")] == [["8.0 ± 1.4", "0"], ["20.0 ± 0.0", "2"]]
    banner = unescape(html.split('id="under-trained"', 1)[1].split("</div>", 1)[0])
    assert ("2 of 4 finished trials are under-trained: max_epochs ended them after 20 epochs with a training loss "
            "not below stop_loss (0.1).") in banner
    met = _study_with_losses(tmp_path / "met", 0.31, runs)
    html = write_report(met).read_text(encoding="utf-8")
    assert 'id="under-trained"' not in html and "Under-trained models" not in html


def test_the_page_says_where_the_trials_ran(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    for seed, device in ((0, "cpu"), (1, "cpu"), (2, "cuda:0")):
        database.record_trial(_record(schedule="static", width=128, seed=seed, device=device, threads=1,
                                      device_name="NVIDIA H200" if device != "cpu" else "AMD EPYC",
                                      torch_version="2.13.0", cuda_version=None if device == "cpu" else "12.8"))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    table = html.split('id="placements-table"')[1].split("</table>")[0]
    assert table.count("<tr>") == 3  # the header and two placements
    assert "AMD EPYC" in table and "NVIDIA H200" in table and "12.8" in table
    assert "<td>2</td>" in table and "<td>1</td>" in table


def test_a_page_of_trials_without_placements_says_so(tmp_path: Path) -> None:
    StudyDatabase.create(tmp_path).record_trial(_record(schedule="static", width=128, seed=0))
    assert "Where the trials ran was not recorded" in write_report(tmp_path).read_text(encoding="utf-8")


def test_unfinished_trials_are_the_planned_ones_failed_or_unrecorded_in_the_grids_order(tmp_path):
    spec = load_spec(str(write_spec(tmp_path)))
    planned = [trial.trial_id for trial in expand(spec)]
    trials = [{"trial_id": planned[3], "status": "failed"}, {"trial_id": planned[0], "status": "finished"},
              {"trial_id": planned[1], "status": "diverged"}]  # a diverged trial is a result: its loss blew up
    assert find_unfinished_trials(spec.resolved(), trials) == (planned[2], *planned[3:])
    for unreadable in (None, {"name": "from a later version", "widths": "all of them"}):
        assert find_unfinished_trials(unreadable, trials) == (planned[3],)  # the plan unknown: only the failed


def _trial(trial_id: str, seed: int, status: str = "finished", **values: object) -> dict[str, object]:
    """A trial row as the database returns it, at one point (w=128, 40 % remaining)."""
    return {"trial_id": trial_id, "architecture": "mlp", "dataset": "mnist", "family": "width", "schedule": "static",
            "width": 128, "depth": 2, "seed": seed, "status": status, "remaining_percent": 40.0, "test_accuracy": 0.8,
            "min_class_recall": 0.5, "path_fraction_log10": -1.0, "min_effective_width_fraction": 0.5, **values}


def _corruption_rows(draws_of: dict[tuple[str, int], list[float]]) -> list[dict[str, object]]:
    return [{"corruption": name, "severity": severity, "draw": draw, "accuracy": accuracy, "loss": 1.0}
            for (name, severity), draws in draws_of.items() for draw, accuracy in enumerate(draws)]


def test_a_points_statistics_rest_on_its_finished_seeds_with_draws_averaged_first() -> None:
    """Failed and diverged trials stay out of every mean (diverged ones counted, failed ones not); corrupted
    accuracy is averaged over draws, then identity (the clean set) is left out of the means over corruptions."""
    trials = [_trial("a", 0, test_accuracy=0.8), _trial("b", 1, test_accuracy=0.6, path_fraction_log10=-math.inf),
              _trial("c", 2, "diverged", test_accuracy=0.1), _trial("d", 3, "failed", test_accuracy=0.2)]
    adversarial = {trial_id: [{"attack": "pgd", "epsilon": 0.1, "robust_accuracy": value}]
                   for trial_id, value in (("a", 0.3), ("b", 0.1), ("c", 0.9), ("d", 0.9))}
    corruption = {
        "a": _corruption_rows({("identity", 1): [0.9], ("fog", 1): [0.5, 0.7], ("fog", 2): [0.4], ("snow", 1): [0.3],
                               ("snow", 2): [0.2]}),
        "b": _corruption_rows({("identity", 1): [0.8], ("fog", 1): [0.4], ("fog", 2): [0.2], ("snow", 1): [0.1],
                               ("snow", 2): [0.0]}),
        "d": _corruption_rows({("fog", 1): [0.0], ("fog", 2): [0.0], ("snow", 1): [0.0], ("snow", 2): [0.0]}),
    }
    results = StudyResults(Path("."), {}, trials, {}, {}, adversarial, corruption)
    [[point]] = summarise_points(results).values()
    assert point.seeds == (0, 1) and point.n_diverged == 1 and point.n_severed == 1
    assert (point.clean_accuracy.mean, point.clean_accuracy.n) == (pytest.approx(0.7), 2)
    assert point.clean_accuracy.std == pytest.approx(0.2 / math.sqrt(2))
    assert (point.path_fraction_log10.mean, point.path_fraction_log10.n) == (-1.0, 1)  # the severed seed apart
    assert point.adversarial_accuracy[("pgd", 0.1)].mean == pytest.approx(0.2)
    accuracy = {key: stat.mean for key, stat in point.corruption_accuracy.items()}
    assert accuracy == pytest.approx({("identity", 1): 0.85, ("fog", 1): 0.5, ("fog", 2): 0.3, ("snow", 1): 0.2,
                                      ("snow", 2): 0.1})
    # Per seed: a (0.6, 0.4, 0.3, 0.2) and b (0.4, 0.2, 0.1, 0.0) over fog 1, fog 2, snow 1, snow 2.
    means = {key: stat.mean for key, stat in point.corruption_mean.items()}
    assert means == pytest.approx({None: (0.375 + 0.175) / 2, 1: (0.45 + 0.25) / 2, 2: (0.3 + 0.1) / 2})


def test_per_severity_means_only_where_every_corruption_has_the_same_severities() -> None:
    """MNIST-C's corruptions each have their own published severity: a mean 'at severity 3' would be fog alone."""
    accuracy, means = corruption_per_trial(_corruption_rows({("fog", 3): [0.6, 0.4], ("snow", 5): [0.2]}))
    assert accuracy == pytest.approx({("fog", 3): 0.5, ("snow", 5): 0.2})
    assert means == pytest.approx({None: 0.35})
    assert corruption_per_trial(_corruption_rows({("identity", 1): [0.9]})) == ({("identity", 1): 0.9}, {})


def _results_cells(html: str, table_id: str) -> list[list[str]]:
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="(?:point|statistic)-row">(.*?)</tr>', table, flags=re.S)
    return [[unescape(cell) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)] for row in rows]


def test_the_results_table_shows_the_aggregated_numbers(report_page: Path) -> None:
    """The static group's sparsest point: 2 finished seeds (accuracy 0.815, 0.825), 1 diverged, noise per σ."""
    html = report_page.read_text(encoding="utf-8")
    sparsest = _results_cells(html, "results-table")[-1]
    sparsity = 0.85
    accuracies = [0.9 - 0.1 * sparsity + 0.01 * seed for seed in (0, 1)]
    std = abs(accuracies[0] - accuracies[1]) / math.sqrt(2)
    noisy = {sigma: [accuracy - sigma * (1 + sparsity) - 0.0025 for accuracy in accuracies] for sigma in SIGMAS}
    assert sparsest[:9] == ["w=256", "256", "2", "15", "2", "1", "2.0 ± 0.0", "2", f"{np.mean(accuracies):.3f} ± {std:.3f}"]
    assert sparsest[-len(SIGMAS):] == [f"{np.mean(values):.3f} ± {std:.3f}" for values in noisy.values()]


def test_statistics_intervals_read_low_to_high_and_recall_colours_follow_the_sign(report_page: Path) -> None:
    """Every mean lies within its printed interval, every difference within its own; a negative class-recall
    change is drawn as a loss (neg), a positive one as a gain (pos)."""
    html = report_page.read_text(encoding="utf-8")
    number = r"([-+−]?\d+(?:\.\d+)?)"
    checked = 0
    for cells in _results_cells(html, "statistics-table"):
        for cell in cells[3:5]:
            found = re.fullmatch(rf"{number}(?: pp)? \[{number}(?: pp)?, {number}(?: pp)?\]", cell.replace("%", ""))
            if found:
                mean, low, high = (float(value.replace("−", "-")) for value in found.groups())
                assert low <= mean <= high, cell
                checked += 1
    assert checked > 20
    table = html.split('id="class-recall-table"', 1)[1].split("</table>", 1)[0]
    signs = re.findall(r'<td class="([^"]*)" title="[^"]*">([-+])(\d\.\d+)', table)
    assert any(sign == "-" for _, sign, _ in signs) and any(sign == "+" for _, sign, _ in signs)
    for classes, sign, size in signs:
        if float(size) >= 5e-4:
            assert ("neg" if sign == "-" else "pos") in classes.split(), (classes, sign, size)


def test_loading_keeps_every_class_recall_in_class_order(study_directory: Path) -> None:
    """The heatmap and the recall table read these vectors: no class may be lost, the last included."""
    results = load_study(study_directory)
    for width in WIDTHS:
        recorded = _record(schedule="static", width=width, seed=1).class_recall
        assert results.class_recall[f"mlp-mnist-width-static-w{width}-s1"] == pytest.approx(list(recorded))


def test_class_recall_changes_are_each_point_against_its_dense_base(study_directory: Path) -> None:
    """Class 3 loses 0.15 × sparsity more than the model does (negative: a loss), the other classes move with
    accuracy (0); a swap of model and base would flip every sign."""
    results = load_study(study_directory)
    analysis = class_recall_analysis(results, summarise_points(results))
    assert [group.schedule for group in analysis] == ["posttrain", "static"]
    for entries in analysis.values():
        assert [(entry.point.width, entry.base.width) for entry in entries] == [(128, 64), (256, 64)]
        for entry in entries:
            sparsity = 1 - entry.point.remaining_percent / 100
            expected = [-0.15 * sparsity if index == 3 else 0.0 for index in range(N_CLASSES)]
            assert [change.change for change in entry.changes] == pytest.approx(expected, abs=1e-9)


def test_a_seed_missing_its_last_classes_still_reports_every_class() -> None:
    """One entry per class of the longest recall vector: the seed without class 2 only leaves that class."""
    changes = normalised_recall_changes([[0.5, 0.6, 0.7], [0.5, 0.6]], [0.6, 0.6], [[0.8, 0.8, 0.8]] * 2, [0.8, 0.8])
    assert [change.class_index for change in changes] == [0, 1, 2]
    assert [change.n_model for change in changes] == [2, 2, 1]
    assert changes[2].change == pytest.approx((0.7 - 0.6) - (0.8 - 0.8))


def test_an_infinite_mean_is_shown_with_its_sign() -> None:
    """A ΔL whose loss overflowed reads ∞; one that overflowed the other way must not read as the same."""
    assert Stat.of([math.inf, 0.5]).format() == "∞" and Stat.of([-math.inf, 0.5]).format() == "−∞"
    assert Stat.of([0.5]).format() == "0.500" and Stat.of([0.5, 0.7]).format() == "0.600 ± 0.141"
    assert Stat.of([None, math.nan]).format() == "—"


def test_the_incomplete_warning_counts_the_failed_the_unrun_and_the_rest(tmp_path: Path) -> None:
    """Four recorded trials, one failed, one planned trial never run: 2 of 5 lack a result, 3 have one."""
    trials = [{"trial_id": name, "status": status} for name, status in
              (("a", "finished"), ("b", "failed"), ("c", "diverged"), ("d", "finished"))]
    results = StudyResults(tmp_path, {"spec": {"name": "half"}}, trials, {}, {}, unfinished_trials=("b", "e"))
    warning = incomplete_warning(results)
    assert warning is not None and warning.startswith(
        "half is incomplete: 2 of its 5 planned trial(s) have no result (1 failed, 1 not run; e.g. b), so its "
        "figures and verdicts rest on the 3 that have one")
    assert incomplete_warning(StudyResults(tmp_path, {}, trials[:1], {}, {})) is None


def test_text_from_the_trials_is_escaped_in_table_cells(tmp_path: Path) -> None:
    """A device name is whatever the machine reports: it must show as text, never as markup."""
    StudyDatabase.create(tmp_path).record_trial(_record(schedule="static", width=128, seed=0, device="cuda:0",
                                                        device_name="<b>GPU</b> & co", threads=1))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    assert "<b>GPU" not in html and "<td class=\"text\">&lt;b&gt;GPU&lt;/b&gt; &amp; co</td>" in html


def test_statistics_table_marks_the_dense_base_and_bolds_the_significant_p_values(report_page: Path) -> None:
    html = report_page.read_text(encoding="utf-8")
    table = html.split('id="statistics-table"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="statistic-row">(.*?)</tr>', table, flags=re.S)
    bases = [cells for cells in _results_cells(html, "statistics-table") if cells[0].endswith(" (dense base)")]
    assert len(bases) == sum(cells[1] == "100" for cells in _results_cells(html, "statistics-table")) > 0
    assert all(cells[0].endswith("· w=64 (dense base)") and cells[4] == "—" for cells in bases)
    marked = 0
    for row in rows:
        css, p_text = re.search(r'<td(?: class="([^"]*)")?>([^<]*)</td>$', row).groups()
        significant = p_text != "—" and float(p_text) < 0.05
        assert (css == "sig") == significant, row
        marked += significant
    assert marked > 0


def test_the_summary_counts_trials_of_another_status(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    database.record_trial(_record(schedule="static", width=128, seed=0))
    database.record_trial(_record(schedule="static", width=128, seed=1, status="failed", error="boom",
                                  test_accuracy=None, class_recall=(), weight_noise=()))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    summary = unescape(html.split('id="summary">', 1)[1].split("</p>", 1)[0])
    assert summary.startswith("2 trial(s) recorded: 1 finished, 0 diverged, 1 with another status.")


def test_a_point_whose_every_seed_keeps_no_path_says_so(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    for width, log_fraction in ((64, 0.0), (256, -math.inf)):
        for seed in (0, 1):
            database.record_trial(_record(schedule="static", width=width, seed=seed, path_fraction_log10=log_fraction,
                                          min_effective_width_fraction=1.0 if log_fraction == 0 else 0.0))
    cells = _results_cells(write_report(tmp_path).read_text(encoding="utf-8"), "results-table")
    assert [row[10] for row in cells] == ["0.00 ± 0.00", "no path kept"]


def test_claims_trained_to_the_rule_are_not_flagged_under_trained(tmp_path: Path) -> None:
    runs = {(64, 0): (7, 0.05), (64, 1): (9, 0.08), (256, 0): (20, 0.3), (256, 1): (20, 0.1)}
    for stop_loss, flagged in ((0.1, True), (0.31, False)):
        html = write_report(_study_with_losses(tmp_path / str(stop_loss), stop_loss, runs)).read_text(encoding="utf-8")
        table = html.split('id="claims-table"', 1)[1].split("</table>", 1)[0]
        assert ('class="text wrap under-trained"' in table) is flagged


def test_a_group_without_a_dense_base_is_named_in_the_class_recall_section(tmp_path: Path) -> None:
    database = StudyDatabase.create(tmp_path)
    for seed in (0, 1):
        database.record_trial(_record(schedule="static", width=128, seed=seed))
    html = unescape(write_report(tmp_path).read_text(encoding="utf-8"))
    assert "No class-recall comparison for: " in html and 'id="class-recall-table"' not in html


def test_a_class_recall_change_below_rounding_is_not_coloured(tmp_path: Path) -> None:
    """A change that shows as +0.000 is neither a loss nor a gain."""
    database = StudyDatabase.create(tmp_path)
    for seed in (0, 1):
        base = _record(schedule="static", width=64, seed=seed)
        database.record_trial(base)
        recalls = list(base.class_recall)
        recalls[0] += 0.0002
        recalls[1] = min(1.0, recalls[1]) - 0.05
        database.record_trial(_record(schedule="static", width=128, seed=seed, test_accuracy=base.test_accuracy,
                                      class_recall=tuple(recalls), min_class_recall=min(recalls)))
    html = write_report(tmp_path).read_text(encoding="utf-8")
    table = html.split('id="class-recall-table"', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r'<td class="([^"]*)" title="[^"]*">([-+]\d\.\d+)', table)
    assert cells[0][1] == "+0.000" and cells[0][0].split() in ([], ["sig"])
    assert cells[1][1] == "-0.050" and "neg" in cells[1][0].split()
