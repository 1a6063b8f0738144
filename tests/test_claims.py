"""The claims: verdicts on real results databases with planted effects, each verdict able to fail."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from sparsecap.cli import main
from sparsecap.errors import StudyDirectoryError
from sparsecap.report import analyse, study_claims, write_report
from sparsecap.report.aggregate import GroupKey, PointRecallAnalysis, PointSummary, Stat, StudyResults, load_study
from sparsecap.report.claims import (
    CLAIMS,
    CLEAN_ACCURACY,
    CORRUPTED_ACCURACY,
    MIN_CLASS_RECALL,
    NOISE_ACCURACY,
    NOISE_DELTA_LOSS,
    POSTTRAIN,
    RECALL_MARGIN,
    ROBUST_ACCURACY,
    STATIC,
    ClaimVerdict,
    ConvergenceCount,
    Curve,
    Finding,
    Measure,
    Verdict,
    build_curve,
    combine,
    convergence_near_ten_percent,
    degrades_sooner,
    improves_with_sparsity,
    recall_not_inferior,
    rises_then_falls,
    trial_values,
    under_trained,
    vgg_fails_to_converge,
)
from sparsecap.report.class_recall import ClassRecallChange
from sparsecap.report.claims_format import claims_json, claims_markdown, claims_text, summary_line
from sparsecap.report.combined import load_studies
from sparsecap.report.statistics import welch_difference
from sparsecap.studies.database import StudyDatabase, TrialRecord

REMAINING = {128: 100.0, 256: 50.0, 512: 25.0, 1024: 12.5, 2048: 6.25, 4096: 3.125}
RISE_THEN_FALL = (0.80, 0.83, 0.86, 0.85, 0.80, 0.70)
DECLINE = (0.90, 0.895, 0.88, 0.86, 0.82, 0.75)
FLAT = (0.90,) * 6
JITTER = (-0.004, 0.002, 0.0, 0.004, -0.002)
"""Per-seed offsets: a spread small against the planted effects, so intervals separate where effects are real."""
NOISE_SIGMAS = (0.0, 0.1)


def _record(*, architecture: str = "mlp", family: str = "width", schedule: str = "static", width: int, depth: int = 1,
            remaining: float, seed: int, accuracy: float, noise_accuracy: float, delta_loss: float, min_recall: float,
            final_loss: float, status: str = "finished") -> TrialRecord:
    trial_id = f"{architecture}-mnist-w{width}-d{depth}-{schedule}-s{seed}"
    noise = [{"sigma": sigma, "draw": 0, "accuracy": accuracy if sigma == 0 else noise_accuracy, "loss": 0.3,
              "delta_loss": 0.0 if sigma == 0 else delta_loss} for sigma in NOISE_SIGMAS]
    return TrialRecord(
        trial_id=trial_id, architecture=architecture, dataset="mnist", family=family, width=width, depth=depth,
        schedule=schedule, allocation="uniform", seed=seed, status=status, total_weights=int(1000 * 100 / remaining),
        nonzero_weights=1000, base_nonzero=1000, remaining_percent=remaining, unmasked_parameters=10,
        disconnected_units=0, epochs=5, final_train_loss=final_loss, test_accuracy=accuracy, test_loss=0.3,
        min_class_recall=min_recall, train_seconds=1.0, checkpoint="", finished_at="2026-12-02T00:00:00Z",
        class_recall=tuple([min_recall] + [accuracy] * 9), weight_noise=tuple(noise),
    )


def write_study(directory: Path, curves: Mapping[str, Sequence[float]], *, seeds: int = 5,
                delta_loss: Sequence[float] | None = None, min_recall: Sequence[float] | None = None,
                final_loss: float = 0.005, jitter: Sequence[float] = JITTER, name: str = "planted",
                stop_loss: float = 0.01, architecture: str = "mlp", spec: Mapping[str, Any] | None = None) -> Path:
    """A study database whose clean accuracy (and accuracy under noise) per schedule follows `curves`; its
    recorded spec has `spec`'s keys besides the name and the stopping rule."""
    directory.mkdir(parents=True, exist_ok=True)
    database = StudyDatabase.create(directory)
    recorded = {**(spec or {}), "name": name}
    recorded["training"] = {"stop_loss": stop_loss, **recorded.get("training", {})}
    database.write_metadata({"spec": recorded})
    for schedule, curve in curves.items():
        for index, (width, remaining) in enumerate(REMAINING.items()):
            for seed in range(seeds):
                offset = jitter[seed % len(jitter)]
                database.record_trial(_record(
                    architecture=architecture, schedule=schedule, width=width, remaining=remaining, seed=seed, accuracy=curve[index] + offset,
                    noise_accuracy=curve[index] - 0.1 + offset,
                    delta_loss=(delta_loss[index] if delta_loss else 0.5) + offset,
                    min_recall=(min_recall[index] if min_recall else 0.85) + offset, final_loss=final_loss))
    return directory


def _verdicts(directory: Path, claim: str) -> list[ClaimVerdict]:
    return [entry for entry in study_claims(load_study(directory)) if entry.claim.key == claim]


def _only(directory: Path, claim: str) -> ClaimVerdict:
    (verdict,) = _verdicts(directory, claim)
    return verdict


def test_rise_then_fall_holds(tmp_path: Path) -> None:
    verdict = _only(write_study(tmp_path, {"static": RISE_THEN_FALL}), "golubeva")
    assert verdict.verdict is Verdict.HOLDS, verdict.finding
    assert "w=512" in verdict.finding.evidence  # the sweet spot, 86 %
    assert verdict.trained_to_rule


def test_monotone_decline_does_not_hold(tmp_path: Path) -> None:
    verdict = _only(write_study(tmp_path, {"static": DECLINE}), "golubeva")
    assert verdict.verdict is Verdict.FAILS, verdict.finding
    assert "no rise" in verdict.finding.reason


def test_pure_noise_with_two_seeds_is_inconclusive(tmp_path: Path) -> None:
    noise = (0.86, 0.84, 0.87, 0.85, 0.86, 0.84)
    verdict = _only(write_study(tmp_path, {"static": noise}, seeds=2, jitter=(-0.02, 0.02)), "golubeva")
    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.finding


def test_a_rise_without_a_fall_is_inconclusive(tmp_path: Path) -> None:
    verdict = _only(write_study(tmp_path, {"static": (0.80, 0.83, 0.86, 0.86, 0.86, 0.86)}), "golubeva")
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "no significant fall" in verdict.finding.reason


def test_c1_needs_both_the_accuracy_shape_and_a_lower_delta_loss(tmp_path: Path) -> None:
    lower = (0.5, 0.45, 0.40, 0.42, 0.5, 0.6)
    holds = _only(write_study(tmp_path / "a", {"static": RISE_THEN_FALL}, delta_loss=lower), "c1")
    assert holds.verdict is Verdict.HOLDS, holds.finding
    higher = (0.5, 0.55, 0.6, 0.65, 0.7, 0.8)  # ΔL grows with sparsity: the paper's claim reversed
    fails = _only(write_study(tmp_path / "b", {"static": RISE_THEN_FALL}, delta_loss=higher), "c1")
    assert fails.verdict is Verdict.FAILS, fails.finding


def test_posttrain_falling_two_points_earlier_holds_c5(tmp_path: Path) -> None:
    static = (0.90, 0.90, 0.90, 0.90, 0.80, 0.60)      # first falls at 6.25 %
    posttrain = (0.90, 0.90, 0.80, 0.60, 0.40, 0.20)   # two points earlier, at 25 %
    verdict = _only(write_study(tmp_path, {"static": static, "posttrain": posttrain}), "c5")
    assert verdict.verdict is Verdict.HOLDS, verdict.finding
    assert "posttrain first falls below its base at w=512" in verdict.finding.evidence
    assert "static first falls below its base at w=2048" in verdict.finding.evidence
    reversed_schedules = _only(write_study(tmp_path / "reversed", {"static": posttrain, "posttrain": static}), "c5")
    assert reversed_schedules.verdict is Verdict.FAILS


def test_c5_across_two_studies_and_refusal_of_incompatible_ones(tmp_path: Path) -> None:
    static = write_study(tmp_path / "static", {"static": (0.90, 0.90, 0.90, 0.90, 0.80, 0.60)}, name="static-study")
    posttrain = write_study(tmp_path / "posttrain", {"posttrain": (0.90, 0.90, 0.80, 0.60, 0.40, 0.20)},
                            name="posttrain-study")
    (verdict,) = [entry for entry in study_claims(load_studies([static, posttrain])) if entry.claim.key == "c5"]
    assert verdict.verdict is Verdict.HOLDS
    other_rule = write_study(tmp_path / "other", {"posttrain": FLAT}, name="other", stop_loss=0.1)
    with pytest.raises(StudyDirectoryError, match="different training.stop_loss: static-study has 0.01, other has 0.1"):
        load_studies([static, other_rule])
    with pytest.raises(StudyDirectoryError, match="both hold trial"):
        load_studies([static, write_study(tmp_path / "copy", {"static": FLAT}, name="copy")])


def test_two_runs_of_one_spec_are_told_apart_by_their_directories(tmp_path: Path) -> None:
    static = write_study(tmp_path / "static", {"static": (0.90, 0.90, 0.90, 0.90, 0.80, 0.60)}, name="quick")
    posttrain = write_study(tmp_path / "posttrain", {"posttrain": (0.90, 0.90, 0.80, 0.60, 0.40, 0.20)}, name="quick")
    combined = load_studies([static, posttrain])
    assert combined.name == "static + posttrain"
    assert {trial["trial_id"].split("/")[0] for trial in combined.trials} == {"static", "posttrain"}
    again = write_study(tmp_path / "again" / "static", {"posttrain": FLAT}, name="quick")
    with pytest.raises(StudyDirectoryError, match="must differ in name or in directory name to be combined .*got "
                                                  "names quick, quick in"):
        load_studies([static, again])
    smaller = write_study(tmp_path / "smaller", {"posttrain": FLAT}, name="quick", spec={"train_examples": 500})
    with pytest.raises(StudyDirectoryError, match="different train_examples: static has None, smaller has 500"):
        load_studies([static, smaller])  # named by their directories, as their names are alike


def test_a_study_named_twice_is_refused_as_such_by_claims_and_report(tmp_path: Path) -> None:
    """`claims st st` or `report st ./st`: the same directory, however spelt, is one study named twice; the report
    must say so rather than ask for the --out that a combination of studies needs."""
    static = write_study(tmp_path / "static", {"static": FLAT}, name="quick")
    spelt_otherwise = tmp_path / "static" / ".." / "static"
    for read in (lambda: load_studies([static, spelt_otherwise]), lambda: write_report(static, spelt_otherwise)):
        with pytest.raises(StudyDirectoryError, match=f"{static} and {spelt_otherwise} are the same study directory"):
            read()


def test_studies_of_cnns_evaluated_on_other_batch_norm_statistics_are_refused_together(tmp_path: Path) -> None:
    def study(name: str, schedule: str, architecture: str, training: dict[str, str] | None) -> Path:
        return write_study(tmp_path / name, {schedule: FLAT}, name=name, architecture=architecture,
                           spec={"training": training or {}})

    recomputed = study("recomputed", "static", "vgg", {"batch_norm_statistics": "recomputed"})
    running = study("running", "posttrain", "vgg", None)  # no key: the study ran before the setting, on running ones
    with pytest.raises(StudyDirectoryError, match="different batch-norm statistics: recomputed evaluates its CNNs "
                                                  "on recomputed ones, running on running ones"):
        load_studies([recomputed, running])
    also_recomputed = study("also-recomputed", "posttrain", "vgg", {"batch_norm_statistics": "recomputed"})
    assert len(load_studies([recomputed, also_recomputed]).trials) == 2 * len(load_study(recomputed).trials)
    mlp = study("mlp", "posttrain", "mlp", None)  # it shares no architecture with batch norms
    assert len(load_studies([recomputed, mlp]).trials) == 2 * len(load_study(recomputed).trials)
    # Every pair is compared, not each study with the first alone: the MLP study shares nothing with either.
    with pytest.raises(StudyDirectoryError, match=r"cannot combine \S*recomputed and \S*running: different batch-norm"):
        load_studies([mlp, recomputed, running])
    # Nor each study with its neighbour alone: the conflicting two may be first and last.
    with pytest.raises(StudyDirectoryError, match=r"cannot combine \S*recomputed and \S*running: different batch-norm"):
        load_studies([recomputed, mlp, running])


def _set_in_trials(study: Path, assignment: str) -> Path:
    with sqlite3.connect(study / "results.sqlite") as connection:
        connection.execute(f"UPDATE trials SET {assignment}")
    return study


def test_studies_on_other_datasets_are_refused_together(tmp_path: Path) -> None:
    """A static curve on MNIST and a posttrain one on Fashion-MNIST would make c5 compare datasets, not schedules."""
    static = write_study(tmp_path / "static", {"static": FLAT}, name="static")
    fashion = _set_in_trials(write_study(tmp_path / "fashion", {"posttrain": FLAT}, name="fashion"),
                             "dataset = 'fashion-mnist'")
    with pytest.raises(StudyDirectoryError, match="different datasets: static has mnist, fashion has fashion-mnist"):
        load_studies([static, fashion])


def test_studies_with_other_dense_bases_are_refused_together(tmp_path: Path) -> None:
    """Remaining weights are a share of the base's nonzero count: two bases put the same % at other capacities."""
    static = write_study(tmp_path / "static", {"static": FLAT}, name="static")
    bigger = _set_in_trials(write_study(tmp_path / "bigger", {"posttrain": FLAT}, name="bigger"), "base_nonzero = 2000")
    with pytest.raises(StudyDirectoryError, match="different bases for mlp on mnist: static keeps 1000 nonzero "
                                                  "weights, bigger keeps 2000"):
        load_studies([static, bigger])


def test_studies_that_trained_or_measured_otherwise_are_refused_together_and_how_they_ran_is_not_compared(
        tmp_path: Path) -> None:
    def study(name: str, schedule: str, **spec: Any) -> Path:
        return write_study(tmp_path / name, {schedule: FLAT}, name=name, spec=spec)

    static = study("static", "static", training={"learning_rate": 0.01}, weight_noise={"sigmas": [0.0, 0.1]})
    refused = [
        ("faster", {"training": {"learning_rate": 0.1}}, "different training.learning_rate: static has 0.01, faster has 0.1"),
        ("bf16", {"training": {"precision": "bfloat16"}}, "different training.precision: static has float32, bf16 has bfloat16"),
        ("wider", {"weight_noise": {"sigmas": [0.0, 0.2]}},
         "different weight_noise.sigmas: static has [0.0, 0.1], wider has [0.0, 0.2]"),
        ("erk", {"allocation": "erk"}, "different allocation: static has uniform, erk has erk"),
    ]
    for name, spec, reason in refused:
        with pytest.raises(StudyDirectoryError, match=re.escape(reason)):
            load_studies([static, study(name, "posttrain", **spec)])
    cosine = {"learning_rate_schedule": "cosine", "max_epochs": 30}
    with pytest.raises(StudyDirectoryError, match="different training.max_epochs: cosine has 30, longer has 60"):
        load_studies([study("cosine", "static", training=cosine),
                      study("longer", "posttrain", training={**cosine, "max_epochs": 60})])
    # The engine, stacking and compiling change float rounding only; a measure in one study only is no conflict;
    # under a constant rate max_epochs only caps training (capped trials are flagged under-trained).
    alike = study("alike", "posttrain", training={"engine": "sparse", "seeds_together": True, "compile": True,
                                                  "max_epochs": 7},
                  weight_noise={"sigmas": [0.0, 0.1]}, adversarial={"enabled": True, "steps": 10})
    assert len(load_studies([static, alike]).trials) == 2 * len(load_study(static).trials)
    attacked = study("attacked", "static-again", adversarial={"enabled": True, "steps": 20})
    with pytest.raises(StudyDirectoryError, match="different adversarial.steps: alike has 10, attacked has 20"):
        load_studies([alike, attacked])


def test_under_trained_curves_are_flagged(tmp_path: Path) -> None:
    verdict = _only(write_study(tmp_path, {"static": RISE_THEN_FALL}, final_loss=0.4), "golubeva")
    assert verdict.verdict is Verdict.HOLDS  # the same curve, but trained only part of the way
    assert not verdict.trained_to_rule and verdict.under_trained == verdict.trials == 30
    assert "UNDER-TRAINED" in claims_text([verdict])


def test_min_recall_non_inferior_holds_and_a_drop_fails(tmp_path: Path) -> None:
    holds = _only(write_study(tmp_path / "flat", {"static": FLAT}), "c4")
    assert holds.verdict is Verdict.HOLDS, holds.finding
    dropping = (0.85, 0.84, 0.80, 0.75, 0.70, 0.60)
    fails = _only(write_study(tmp_path / "drop", {"static": FLAT}, min_recall=dropping), "c4")
    assert fails.verdict is Verdict.FAILS, fails.finding


def _depth_study(directory: Path, architecture: str, diverged: bool, seeds: int = 3) -> None:
    directory.mkdir()
    database = StudyDatabase.create(directory)
    database.write_metadata({"spec": {"name": directory.name, "training": {"stop_loss": 0.01}}})
    for depth, remaining in ((11, 100.0), (16, 10.0)):
        for seed in range(seeds):
            failed = diverged and depth == 16
            database.record_trial(_record(
                architecture=architecture, family="depth", width=64, depth=depth, remaining=remaining, seed=seed,
                accuracy=0.1 if failed else 0.9, noise_accuracy=0.8, delta_loss=0.5, min_recall=0.8,
                final_loss=math.nan if failed else 0.005, status="diverged" if failed else "finished"))


def test_c6_vgg_failing_to_converge_where_resnet_converges(tmp_path: Path) -> None:
    _depth_study(tmp_path / "vgg", "vgg", diverged=True)
    _depth_study(tmp_path / "resnet", "resnet", diverged=False)
    (verdict,) = [entry for entry in study_claims(load_studies([tmp_path / "vgg", tmp_path / "resnet"]))
                  if entry.claim.key == "c6"]
    assert verdict.verdict is Verdict.HOLDS, verdict.finding
    assert (verdict.trials, verdict.under_trained, verdict.diverged) == (6, 0, 0)  # the trials near 10 % it counted
    _depth_study(tmp_path / "vgg-ok", "vgg", diverged=False, seeds=5)
    (converged,) = [entry for entry in study_claims(load_studies([tmp_path / "vgg-ok", tmp_path / "resnet"]))
                    if entry.claim.key == "c6"]
    assert converged.verdict is Verdict.FAILS, converged.finding  # 0 of 5 failed: binomial p = 0.031
    assert "VGG converges in most trials" in converged.finding.reason


@pytest.mark.parametrize(("vgg", "others", "verdict"), [
    (ConvergenceCount(2, 1), ConvergenceCount(2, 1), Verdict.INCONCLUSIVE),  # alike, but 2 trials show nothing
    (ConvergenceCount(3, 0), ConvergenceCount(3, 0), Verdict.INCONCLUSIVE),  # 0 of 3: binomial p = 0.125
    (ConvergenceCount(5, 0), ConvergenceCount(3, 0), Verdict.FAILS),         # 0 of 5: p = 0.031
    (ConvergenceCount(3, 2), ConvergenceCount(5, 5), Verdict.FAILS),         # ResNet/MLP fail in most too
    (ConvergenceCount(5, 5), ConvergenceCount(5, 0), Verdict.HOLDS),
])
def test_c6_does_not_hold_only_on_evidence_against(vgg: ConvergenceCount, others: ConvergenceCount,
                                                   verdict: Verdict) -> None:
    finding = vgg_fails_to_converge(vgg, others)
    assert finding.verdict is verdict, finding


def test_a_point_left_with_one_seed_is_not_the_sweet_spot(tmp_path: Path) -> None:
    study = write_study(tmp_path, {"static": RISE_THEN_FALL})
    with sqlite3.connect(study / "results.sqlite") as connection:  # w=256: 4 of 5 seeds failed, one lucky
        connection.execute("UPDATE trials SET status = 'failed' WHERE width = 256 AND seed > 0")
        connection.execute("UPDATE trials SET test_accuracy = 0.95 WHERE width = 256 AND seed = 0")
    verdict = _only(study, "golubeva")
    assert verdict.verdict is Verdict.HOLDS, verdict.finding
    assert "sweet spot w=512" in verdict.finding.evidence  # not w=256's untestable 95 %


def test_a_significant_gain_below_the_margin_does_not_hold_for_accuracy_or_delta_loss(tmp_path: Path) -> None:
    small_rise = (0.900, 0.904, 0.905, 0.904, 0.90, 0.90)  # +0.5 pp at most: significant, under the 1 pp margin
    small_drop = (0.50, 0.48, 0.47, 0.48, 0.49, 0.50)     # ΔL 6 % below the base's: under the 10 % margin
    study = write_study(tmp_path, {"static": small_rise}, delta_loss=small_drop, jitter=(-0.0001, 0.0, 0.0001))
    (curves,) = analyse(load_study(study)).curves.values()
    assert all(finding.verdict is Verdict.FAILS for finding in (
        rises_then_falls(curves[CLEAN_ACCURACY]), improves_with_sparsity(curves[NOISE_DELTA_LOSS])))
    assert curves[CLEAN_ACCURACY].sweet_spot.significant and curves[NOISE_DELTA_LOSS].sweet_spot.significant


def test_a_significant_rise_below_the_margin_never_holds_however_noisy_the_seeds(tmp_path: Path) -> None:
    """The same +0.8 pp rise, under the 1 pp margin: precise seeds show it does not hold, noisier ones cannot tell;
    more noise must never turn "does not hold" into "holds"."""
    curve = (0.900, 0.904, 0.908, 0.904, 0.900, 0.896)
    precise = _only(write_study(tmp_path / "precise", {"static": curve}, jitter=(-0.001, 0.0, 0.001)), "golubeva")
    noisy = _only(write_study(tmp_path / "noisy", {"static": curve}, jitter=(-0.003, 0.0, 0.003)), "golubeva")
    assert precise.verdict is Verdict.FAILS, precise.finding
    assert noisy.verdict is Verdict.INCONCLUSIVE and "by no more than the margin" in noisy.finding.reason, noisy.finding


def _keep_one_seed(study: Path, widths: Sequence[int], **values: float) -> Path:
    """At `widths`, every seed but seed 0 failed, and seed 0 scored `values`."""
    with sqlite3.connect(study / "results.sqlite") as connection:
        for width in widths:
            connection.execute("UPDATE trials SET status = 'failed' WHERE width = ? AND seed > 0", (width,))
            for column, value in values.items():
                connection.execute(f"UPDATE trials SET {column} = ? WHERE width = ? AND seed = 0", (value, width))
    return study


def test_a_claim_about_every_point_is_inconclusive_where_a_point_could_not_be_tested(tmp_path: Path) -> None:
    decline = _keep_one_seed(write_study(tmp_path / "decline", {"static": DECLINE}), [256, 512], test_accuracy=0.95)
    verdict = _only(decline, "golubeva")
    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.finding
    assert "w=256, w=512 could not be tested (1 finished seed)" in verdict.finding.reason
    recall = _keep_one_seed(write_study(tmp_path / "recall", {"static": FLAT}), [256], min_class_recall=0.40)
    non_inferior = _only(recall, "c4")
    assert non_inferior.verdict is Verdict.INCONCLUSIVE and "w=256 could not be tested" in non_inferior.finding.reason


def test_a_verdict_resting_on_the_seeds_that_survived_divergence_is_flagged(tmp_path: Path) -> None:
    study = write_study(tmp_path, {"static": RISE_THEN_FALL})
    with sqlite3.connect(study / "results.sqlite") as connection:
        connection.execute("UPDATE trials SET status = 'diverged' WHERE width = 512 AND seed IN (0, 2, 4)")
    verdict = _only(study, "golubeva")
    assert (verdict.diverged, verdict.flags, verdict.trained_to_rule) == (3, ["diverged seeds left out"], False)
    assert "diverged: 3 trial(s), left out of the statistics" in verdict.training_text
    assert "[DIVERGED SEEDS LEFT OUT]" in claims_text([verdict])
    assert "1 verdict(s) with diverged seeds left out" in claims_text([verdict])


def test_c5_names_curves_that_cross(tmp_path: Path) -> None:
    static, posttrain = (0.90, 0.90, 0.90, 0.85, 0.80, 0.70), (0.90, 0.92, 0.85, 0.80, 0.70, 0.60)
    verdict = _only(write_study(tmp_path, {"static": static, "posttrain": posttrain}), "c5")
    assert verdict.verdict is Verdict.INCONCLUSIVE
    assert "significantly worse than static at one point and better at another" in verdict.finding.reason


def test_c5_is_mixed_where_posttrain_is_worse_but_static_falls_below_its_base_first(tmp_path: Path) -> None:
    static = (0.90, 0.85, 0.85, 0.85, 0.85, 0.85)       # 5 points below its base from 50 %
    posttrain = (0.86, 0.855, 0.80, 0.75, 0.70, 0.65)   # a weaker base, kept at 50 %, below it from 25 %
    verdict = _only(write_study(tmp_path, {"static": static, "posttrain": posttrain}), "c5")
    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.finding
    assert "static is the first to fall significantly below its base" in verdict.finding.reason
    assert "static first falls below its base at w=256" in verdict.finding.evidence


def test_c4_is_judged_before_the_collapse_only(tmp_path: Path) -> None:
    clean = (0.90, 0.90, 0.90, 0.60, 0.50, 0.40)  # collapses at w=1024 (12.5 %)
    recall_after_collapse = (0.85, 0.85, 0.85, 0.50, 0.40, 0.30)
    study = write_study(tmp_path / "collapse", {"static": clean}, min_recall=recall_after_collapse)
    with sqlite3.connect(study / "results.sqlite") as connection:  # the sparsest point scatters: not significant
        for seed, accuracy in enumerate((0.05, 0.95, 0.10, 0.90, 0.30)):
            connection.execute("UPDATE trials SET test_accuracy = ? WHERE width = 4096 AND seed = ?", (accuracy, seed))
    verdict = _only(study, "c4")
    assert verdict.verdict is Verdict.HOLDS, verdict.finding
    assert verdict.finding.evidence.endswith(  # the points its verdict leaves out are named
        "; left out, at or past the collapse of clean accuracy: w=1024, w=2048, w=4096")
    dip = (0.90, 0.895, 0.895, 0.895, 0.895, 0.895)  # significant, but 0.5 pp: no collapse, every point judged
    falling = (0.85, 0.80, 0.75, 0.70, 0.60, 0.50)
    judged = _only(write_study(tmp_path / "dip", {"static": dip}, min_recall=falling, jitter=(-0.0001, 0.0, 0.0001)),
                   "c4")
    assert judged.verdict is Verdict.FAILS, judged.finding
    assert "left out" not in judged.finding.evidence


def test_one_seed_or_no_base_is_inconclusive_with_the_reason(tmp_path: Path) -> None:
    one_seed = _only(write_study(tmp_path / "one", {"static": RISE_THEN_FALL}, seeds=1), "golubeva")
    assert one_seed.verdict is Verdict.INCONCLUSIVE and "too few seeds" in one_seed.finding.reason
    no_base = tmp_path / "no-base"
    write_study(no_base, {"static": RISE_THEN_FALL})
    with sqlite3.connect(no_base / "results.sqlite") as connection:
        connection.execute("DELETE FROM trials WHERE width = 128")
    verdict = _only(no_base, "golubeva")
    assert verdict.verdict is Verdict.INCONCLUSIVE and "no dense base point" in verdict.finding.reason


def _overflow(directory: Path, widths: Sequence[int], seed: int = 0) -> Path:
    """Seed `seed`'s noisy loss overflowed at `widths`, as a study records it: ΔL +inf."""
    with sqlite3.connect(directory / "results.sqlite") as connection:
        connection.executemany("UPDATE weight_noise SET loss = ?, delta_loss = ? WHERE sigma > 0 AND trial_id = ?",
                               [(math.inf, math.inf, f"mlp-mnist-w{width}-d1-static-s{seed}") for width in widths])
    return directory


def test_an_overflow_recorded_as_null_by_earlier_versions_reads_as_infinite(tmp_path: Path) -> None:
    study = write_study(tmp_path, {"static": RISE_THEN_FALL})
    with sqlite3.connect(study / "results.sqlite") as connection:
        connection.execute("UPDATE weight_noise SET loss = NULL, delta_loss = NULL "
                           "WHERE sigma > 0 AND trial_id = 'mlp-mnist-w512-d1-static-s0'")
    (curves,) = analyse(load_study(study)).curves.values()
    assert curves[NOISE_DELTA_LOSS].point_at(512, 1).interval.mean == math.inf


def test_a_point_whose_loss_overflowed_under_noise_is_worse_not_missing_a_seed(tmp_path: Path) -> None:
    """One overflowed seed per improving point: dropping it as a missing seed would leave c1's ΔL part holding, yet
    one overflow among five seeds is no proof either way (a rank test), while five of five are."""
    lower = (0.5, 0.45, 0.40, 0.42, 0.5, 0.6)
    study = _overflow(write_study(tmp_path / "sparse", {"static": RISE_THEN_FALL}, delta_loss=lower), [256, 512, 1024])
    (curves,) = analyse(load_study(study)).curves.values()
    delta_loss = curves[NOISE_DELTA_LOSS]
    overflowed = delta_loss.point_at(512, 1)
    assert (overflowed.interval.mean, overflowed.interval.n, overflowed.versus_base.estimate) == (math.inf, 5, math.inf)
    assert not overflowed.significant and not overflowed.interval.defined and math.isnan(overflowed.versus_base.low)
    finding = improves_with_sparsity(delta_loss)
    assert finding.verdict is Verdict.INCONCLUSIVE, finding
    assert NOISE_DELTA_LOSS.show(overflowed.versus_base.estimate, signed=True) == "+∞"
    (written,) = [curve for curve in claims_json(analyse(load_study(study)))["measures"]
                  if curve["measure"] == NOISE_DELTA_LOSS.label]
    row = json.loads(json.dumps(written, allow_nan=False))["points"][2]
    assert (row["point"], row["mean"], row["ci_low"]) == ("w=512", "Infinity", None)
    assert row["p_value"] == pytest.approx(overflowed.versus_base.p_value) and 0.05 < row["p_value"] < 1
    higher = (0.5, 0.55, 0.6, 0.65, 0.7, 0.8)  # ΔL grows with sparsity
    base = _overflow(write_study(tmp_path / "base", {"static": RISE_THEN_FALL}, delta_loss=higher), [128], seed=3)
    (curves,) = analyse(load_study(base)).curves.values()
    assert improves_with_sparsity(curves[NOISE_DELTA_LOSS]).verdict is Verdict.INCONCLUSIVE  # one base seed overflowed
    every = write_study(tmp_path / "every", {"static": RISE_THEN_FALL}, delta_loss=higher)
    for seed in range(5):
        _overflow(every, [128], seed=seed)
    (curves,) = analyse(load_study(every)).curves.values()
    finding = improves_with_sparsity(curves[NOISE_DELTA_LOSS])
    assert finding.verdict is Verdict.HOLDS and "−∞ (by rank: a loss overflowed), Holm p = 0.037" in finding.evidence


def test_claims_command_prints_the_table_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = write_study(tmp_path / "study", {"static": RISE_THEN_FALL, "posttrain": DECLINE})
    assert main(["claims", str(directory)]) == 0
    text = capsys.readouterr().out
    assert "golubeva" in text and "HOLDS" in text and "DOES NOT HOLD" in text
    assert main(["claims", str(directory), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    golubeva = [row for row in data["claims"] if row["claim"] == "golubeva" and row["scope"].endswith("static")]
    points = golubeva[0]["curves"][0]["points"]
    assert [point["sweet_spot"] for point in points].count(True) == 1 and points[0]["base"]
    assert main(["claims", str(directory), "--markdown"]) == 0
    assert capsys.readouterr().out.count("\n| c") >= 7


def test_claims_of_a_directory_that_is_not_a_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["claims", str(tmp_path)]) == 2
    assert "no results database" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    StudyDatabase.create(empty)
    assert main(["claims", str(empty)]) == 2
    assert "holds no finished trials" in capsys.readouterr().err


def test_markdown_cells_keep_the_table_intact(tmp_path: Path) -> None:
    analysis = analyse(load_study(write_study(tmp_path, {"static": RISE_THEN_FALL})))
    verdicts = analysis.claims
    text = claims_markdown(analysis)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| claim |")]
    assert not text.startswith("**Incomplete")  # a hand-made record plans nothing
    assert len(rows) == len(verdicts)
    assert all(row.replace("\\|", "").count("|") == 7 for row in rows)  # six cells: no stray pipe


def test_a_dynamic_schedule_is_compared_with_static_beyond_the_paper(tmp_path: Path) -> None:
    static = (0.90, 0.90, 0.90, 0.80, 0.60, 0.40)   # first falls at 12.5 %
    moving = (0.90, 0.90, 0.90, 0.90, 0.88, 0.70)   # holds on longer
    verdicts = study_claims(load_study(write_study(tmp_path, {"static": static, "rigl": moving})))
    (verdict,) = [entry for entry in verdicts if entry.claim.key == "rigl vs static"]
    assert verdict.verdict is Verdict.HOLDS, verdict.finding
    assert "static first falls below its base at w=1024" in verdict.finding.evidence
    (c5,) = [entry for entry in verdicts if entry.claim.key == "c5"]
    assert c5.verdict is Verdict.INCONCLUSIVE and "posttrain" in c5.finding.reason


def test_a_long_claim_key_keeps_its_own_column_in_the_terminal_table(tmp_path: Path) -> None:
    """"posttrain-finetune vs static" is longer than the 9 columns of "c1", "golubeva": no key runs into its verdict."""
    verdicts = study_claims(load_study(write_study(tmp_path, {"static": FLAT, "posttrain-finetune": FLAT})))
    lines = claims_text(verdicts).splitlines()
    (row,) = [line for line in lines if line.startswith("posttrain-finetune vs static")]
    verdict_column = len("posttrain-finetune vs static  ")
    assert row[:verdict_column] == "posttrain-finetune vs static  " and row[verdict_column:].startswith(
        ("HOLDS", "DOES NOT HOLD", "INCONCLUSIVE"))
    assert row.endswith("   mlp · mnist · width family")  # the key names the schedules: the scope need not
    assert all(line[verdict_column:].startswith(("HOLDS", "DOES NOT HOLD", "INCONCLUSIVE"))
               for line in lines if line.startswith(("c1 ", "c4 ", "golubeva ")))


def test_a_comparison_counts_the_trials_of_both_schedules_once(tmp_path: Path) -> None:
    directory = write_study(tmp_path, {"static": FLAT, "posttrain": FLAT}, final_loss=0.4)
    assert (_only(directory, "c5").trials, _only(directory, "c5").under_trained) == (60, 60)
    (c1,) = [entry for entry in _verdicts(directory, "c1") if entry.scope.endswith("static")]
    assert c1.trials == 30  # accuracy and ΔL curves of one group: the same 30 trials


def test_c5_compares_collapses_only_where_both_schedules_were_trained(tmp_path: Path) -> None:
    directory = write_study(tmp_path, {"static": (0.90, 0.90, 0.90, 0.90, 0.90, 0.60), "posttrain": FLAT})
    with sqlite3.connect(directory / "results.sqlite") as connection:  # posttrain left out at 3.125 %
        connection.execute("DELETE FROM trials WHERE schedule = 'posttrain' AND width = 4096")
    verdict = _only(directory, "c5")
    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.finding  # static's collapse is where posttrain never ran
    assert "static never falls significantly below its base at the points both" in verdict.finding.evidence


def test_few_seeds_far_apart_show_intervals_only_within_what_an_accuracy_can_be(tmp_path: Path) -> None:
    """Two seeds at 10 % and 90 % make a t-interval of about ±500 pp; accuracies and their differences are
    shown within [0, 100] and [−100, +100] pp."""
    collapse = (0.95, 0.95, 0.95, 0.95, 0.95, 0.50)
    directory = write_study(tmp_path, {"static": collapse, "posttrain": collapse}, seeds=2, jitter=(-0.4, 0.4))
    curves = [curve for by_measure in analyse(load_study(directory)).curves.values() for curve in by_measure.values()
              if curve.measure.percent]
    for curve in curves:
        for point in curve.points:
            assert 0.0 <= point.interval.low <= point.interval.mean <= point.interval.high <= 1.0, point
            if point.versus_base.testable:
                assert -1.0 <= point.versus_base.low <= point.versus_base.high <= 1.0, point
    widest = min(point.versus_base.low for curve in curves for point in curve.points if point.versus_base.testable)
    assert widest == -1.0  # the cut applied, not merely never needed


@pytest.mark.parametrize(("curve", "seeds", "said"), [
    ((0.90, 0.90, 0.90, 0.60, 0.50, 0.40), 5, "clean accuracy first falls below the base at w=1024 (12.5% remaining)"),
    (FLAT, 5, "clean accuracy never falls significantly below the base within the sparsities studied"),
    ((0.90, 0.90, 0.90, 0.60, 0.50, 0.40), 1, "no collapse can be located: too few seeds: the base has 1 finished"),
])
def test_the_collapse_is_located_by_a_test_and_never_claimed_absent_without_one(tmp_path: Path, curve, seeds,
                                                                                said) -> None:
    (collapse,) = analyse(load_study(write_study(tmp_path, {"static": curve}, seeds=seeds))).collapses
    assert collapse.text.startswith(said), collapse.text


def test_the_summary_line_counts_verdicts_in_plain_english() -> None:
    def verdict(kind: Verdict) -> ClaimVerdict:
        return ClaimVerdict(CLAIMS[0], "a group", Finding(kind, "planted"), trials=5, under_trained=0)

    assert summary_line([verdict(Verdict.HOLDS)] + [verdict(Verdict.FAILS)] * 3) == (
        "1 holds, 3 do not hold, 0 inconclusive")
    assert summary_line([verdict(Verdict.HOLDS)] * 2 + [verdict(Verdict.FAILS)]) == (
        "2 hold, 1 does not hold, 0 inconclusive")
    flagged = [ClaimVerdict(CLAIMS[0], "a group", Finding(Verdict.HOLDS, "planted"), trials=5, under_trained=2),
               ClaimVerdict(CLAIMS[0], "a group", Finding(Verdict.FAILS, "planted"), trials=5, under_trained=1,
                            diverged=1)]
    assert summary_line(flagged) == ("1 holds, 1 does not hold, 0 inconclusive; 2 verdict(s) on under-trained models; "
                                     "1 verdict(s) with diverged seeds left out")


def test_the_summary_line_tells_untested_claims_from_inconclusive_evidence(tmp_path: Path) -> None:
    """A width study of one schedule without attacks or corruptions cannot test c2, c3, c5, c6: inconclusive for
    want of data, which the count says; an inconclusive verdict that weighed trials is not untested."""
    verdicts = study_claims(load_study(write_study(tmp_path, {"static": FLAT})))
    assert sorted(entry.claim.key for entry in verdicts if entry.untested) == ["c2", "c3", "c5", "c6"]
    assert all(entry.trials == 0 for entry in verdicts if entry.untested)
    assert summary_line(verdicts) == "1 holds, 2 do not hold, 4 inconclusive (4 of them untested: no data for c2, c3, c5, c6)"
    weighed = ClaimVerdict(CLAIMS[0], "a group", Finding(Verdict.INCONCLUSIVE, "intervals too wide"), trials=5,
                           under_trained=0)
    assert not weighed.untested
    assert summary_line([weighed, *verdicts]).endswith("5 inconclusive (4 of them untested: no data for c2, c3, c5, c6)")


GROUP = GroupKey("mlp", "mnist", "width", "static")


def _summary(remaining: float, width: int, group: GroupKey = GROUP, depth: int = 1) -> PointSummary:
    empty = Stat.of([])
    return PointSummary(group=group, width=width, depth=depth, remaining_percent=remaining, seeds=(0, 1, 2),
                        n_diverged=0, clean_accuracy=empty, min_class_recall=empty, path_fraction_log10=empty,
                        n_severed=0, min_effective_width_fraction=empty)


def _curve(measure: Measure, seeds_by_point: Sequence[Sequence[float]], schedule: str = "static") -> Curve:
    """A curve straight from per-seed values, dense base first, at 100, 50, 25, ... % remaining (widths 1, 2, 4...)."""
    group = GroupKey("mlp", "mnist", "width", schedule)
    points = [_summary(100.0 / 2 ** index, 2 ** index, group) for index in range(len(seeds_by_point))]
    values = {(point.width, 1): list(seeds) for point, seeds in zip(points, seeds_by_point)}
    return build_curve(group, measure, points, values)


BASE_80 = [0.80, 0.80, 0.80]
PEAK_87 = [0.86, 0.87, 0.88]


def test_the_fall_after_the_sweet_spot_is_holm_corrected_over_the_sparser_points() -> None:
    """Each of two sparser points falls 3.5 pp below the sweet spot at Welch p = 0.035: one such fall is evidence,
    two are what chance gives (Holm p = 0.07); uncorrected, a long width list would manufacture a fall."""
    falling = [0.82, 0.835, 0.85]
    assert welch_difference(falling, PEAK_87).p_value == pytest.approx(0.0348, abs=1e-4)
    one = rises_then_falls(_curve(CLEAN_ACCURACY, [BASE_80, PEAK_87, falling]))
    assert one.verdict is Verdict.HOLDS, one
    two = rises_then_falls(_curve(CLEAN_ACCURACY, [BASE_80, PEAK_87, falling, falling]))
    assert two.verdict is Verdict.INCONCLUSIVE and "no significant fall" in two.reason, two


def test_a_significant_fall_within_the_margin_is_no_fall() -> None:
    """0.5 pp below the sweet spot, significant with seeds this precise, but under the 1 pp margin."""
    finding = rises_then_falls(_curve(CLEAN_ACCURACY, [BASE_80, [0.869, 0.870, 0.871], [0.864, 0.865, 0.866]]))
    assert finding.verdict is Verdict.INCONCLUSIVE, finding
    assert "falls significantly, but by no more than the margin" in finding.reason


def test_a_significant_delta_loss_gain_whose_estimate_is_within_the_margin_does_not_hold() -> None:
    """ΔL 0.03 below a base of 0.5 (margin 0.05): significant (p = 0.035) and the interval reaches a gain of 0.055,
    but the estimate is within the margin: inconclusive, neither holds nor does not hold."""
    finding = improves_with_sparsity(_curve(NOISE_DELTA_LOSS, [[0.5] * 3, [0.46, 0.47, 0.48]]))
    assert finding.verdict is Verdict.INCONCLUSIVE and "by no more than the margin" in finding.reason, finding


def test_the_delta_loss_margin_is_a_tenth_of_the_bases_value() -> None:
    """A base ΔL of 2.0 makes the margin 0.2: a precise 0.15 gain is under it (does not hold), though above 0.1."""
    curve = _curve(NOISE_DELTA_LOSS, [[2.0] * 3, [1.849, 1.85, 1.851]])
    assert curve.margin == pytest.approx(0.2)
    finding = improves_with_sparsity(curve)
    assert finding.verdict is Verdict.FAILS, finding


def test_a_trial_stopped_at_exactly_the_stop_loss_is_under_trained() -> None:
    """Training stops once the loss is below stop_loss, so a last loss equal to it ran out of epochs."""
    assert under_trained({"status": "finished", "final_train_loss": 0.01}, 0.01)
    assert not under_trained({"status": "finished", "final_train_loss": 0.0099}, 0.01)
    assert not under_trained({"status": "diverged", "final_train_loss": 5.0}, 0.01)


HIGH_RECALL = [0.850, 0.851, 0.849]


def test_recall_non_inferiority_needs_the_interval_not_the_estimate_above_the_margin() -> None:
    """A mean 0.7 pp below the base is within the 2 pp margin, but with seeds this spread the interval reaches far
    below it: inconclusive, not holds."""
    finding = recall_not_inferior(_curve(MIN_CLASS_RECALL, [HIGH_RECALL, [0.80, 0.85, 0.88]]), None, [])
    assert finding.verdict is Verdict.INCONCLUSIVE and "too wide" in finding.reason, finding


def test_a_recall_mean_beyond_the_margin_without_significance_is_no_fall() -> None:
    """3 pp below the base, beyond the 2 pp margin, but with seeds this spread no evidence of a fall: inconclusive."""
    curve = _curve(MIN_CLASS_RECALL, [HIGH_RECALL, [0.70, 0.84, 0.92]])
    assert not curve.points[1].significant and curve.points[1].versus_base.estimate < -RECALL_MARGIN
    assert recall_not_inferior(curve, None, []).verdict is Verdict.INCONCLUSIVE


def test_a_significant_recall_drop_within_the_margin_is_non_inferior() -> None:
    """1.5 pp below the base, significant, its interval above −2 pp: non-inferior, not a fall."""
    curve = _curve(MIN_CLASS_RECALL, [HIGH_RECALL, [0.835, 0.836, 0.834]])
    assert curve.points[1].significant and curve.points[1].versus_base.low > -RECALL_MARGIN
    assert recall_not_inferior(curve, None, []).verdict is Verdict.HOLDS


def _recall_change(class_index: int, change: float, p_value: float) -> ClassRecallChange:
    return ClassRecallChange(class_index, change, p_value, p_value, p_value < 0.05, 3, 3)


def test_the_hooker_test_of_c4_is_holm_corrected_and_counts_only_classes_that_lose() -> None:
    """Two classes at p = 0.03 each are no evidence after Holm (0.06); a class that gains disproportionately is
    not hurt, however significant."""
    curve = _curve(MIN_CLASS_RECALL, [HIGH_RECALL, HIGH_RECALL])
    base, point = _summary(100.0, 1), _summary(50.0, 2)

    def verdict(*changes: ClassRecallChange) -> Verdict:
        return recall_not_inferior(curve, None, [PointRecallAnalysis(point, base, list(changes))]).verdict

    assert verdict(_recall_change(0, -0.05, 0.03), _recall_change(1, -0.05, 0.03)) is Verdict.HOLDS
    assert verdict(_recall_change(0, -0.05, 0.03)) is Verdict.FAILS
    assert verdict(_recall_change(0, 0.05, 0.001), _recall_change(1, 0.0, 0.9)) is Verdict.HOLDS


def _jittered(*means: float) -> list[list[float]]:
    return [[mean - 0.001, mean, mean + 0.001] for mean in means]


def test_c5_holds_where_both_schedules_collapse_at_the_same_point() -> None:
    """Posttrain 2 pp worse than static at 50 % and never better; both collapse at 12.5 %: it does not fall later."""
    static = _curve(CLEAN_ACCURACY, _jittered(0.90, 0.915, 0.90, 0.70), STATIC)
    posttrain = _curve(CLEAN_ACCURACY, _jittered(0.90, 0.895, 0.90, 0.70), POSTTRAIN)
    finding = degrades_sooner(posttrain, static)
    assert finding.verdict is Verdict.HOLDS, finding


def test_c5_does_not_hold_where_only_static_falls_below_its_base() -> None:
    """Static collapses at 12.5 %; posttrain's seeds there scatter, so it never falls significantly, and nowhere do
    the schedules differ: static degrades first."""
    static = _curve(CLEAN_ACCURACY, _jittered(0.90, 0.90, 0.90, 0.60), STATIC)
    posttrain = _curve(CLEAN_ACCURACY, [*_jittered(0.90, 0.90, 0.90), [0.3, 0.9, 0.6]], POSTTRAIN)
    finding = degrades_sooner(posttrain, static)
    assert finding.verdict is Verdict.FAILS and "static falls below its base at a denser point" in finding.reason, \
        finding


def test_combining_parts_holds_only_when_every_part_holds() -> None:
    """c1 holds only when accuracy rises then falls and ΔL improves; one part not holding decides against."""
    curve = _curve(CLEAN_ACCURACY, [BASE_80])
    holds, fails, unsure = (Finding(verdict, "planted") for verdict in Verdict)
    assert combine([(curve, holds), (curve, holds)]).verdict is Verdict.HOLDS
    assert combine([(curve, holds), (curve, unsure)]).verdict is Verdict.INCONCLUSIVE
    assert combine([(curve, unsure), (curve, fails)]).verdict is Verdict.FAILS


def test_c6_fisher_test_is_one_sided() -> None:
    """5 of 6 VGG trials failing against 1 of 6 others: one-sided Fisher p = 0.040 (two-sided 0.080)."""
    assert vgg_fails_to_converge(ConvergenceCount(6, 5), ConvergenceCount(6, 1)).verdict is Verdict.HOLDS
    # Half of VGG's trials failing is not "most", however few of the others' did.
    assert vgg_fails_to_converge(ConvergenceCount(10, 5), ConvergenceCount(10, 0)).verdict is Verdict.INCONCLUSIVE


def test_c6_counts_under_trained_trials_near_ten_percent_as_not_converged() -> None:
    """A trial that ran out of max_epochs above stop_loss did not converge, as a diverged one did not."""
    group = GroupKey("vgg", "cifar10", "depth", STATIC)
    trials = [{"architecture": "vgg", "dataset": "cifar10", "family": "depth", "schedule": STATIC, "width": 64,
               "depth": 16, "seed": seed, "status": "finished", "final_train_loss": loss}
              for seed, loss in enumerate((0.5, 0.5, 0.005))]
    results = StudyResults(Path("."), {"spec": {"training": {"stop_loss": 0.01}}}, trials, {}, {})
    points = [_summary(100.0, 64, group, depth=11), _summary(10.0, 64, group, depth=16)]
    assert convergence_near_ten_percent(results, group, points) == ConvergenceCount(3, 2, 2)


def test_a_trials_summary_measures_leave_out_the_clean_conditions() -> None:
    """c1-c3 average over σ > 0, ε > 0 and the corruptions but identity (the clean test set), draws first."""
    trial = {"trial_id": "t", "test_accuracy": 0.9, "min_class_recall": 0.8}
    noise = [{"sigma": sigma, "draw": draw, "accuracy": accuracy, "delta_loss": 0.0 if sigma == 0 else 0.5 + draw}
             for sigma, draw, accuracy in ((0.0, 0, 0.9), (0.1, 0, 0.6), (0.1, 1, 0.7), (0.2, 0, 0.4))]
    adversarial = [{"attack": "pgd", "epsilon": epsilon, "robust_accuracy": accuracy}
                   for epsilon, accuracy in ((0.0, 0.9), (0.1, 0.5), (0.3, 0.2))]
    corruption = [{"corruption": name, "severity": 1, "draw": draw, "accuracy": accuracy}
                  for name, draw, accuracy in (("identity", 0, 0.9), ("shot_noise", 0, 0.6), ("shot_noise", 1, 0.8),
                                               ("stripe", 0, 0.5))]
    results = StudyResults(Path("."), {}, [trial], {}, {"t": noise}, {"t": adversarial}, {"t": corruption})
    values = trial_values(results, trial)
    assert values[NOISE_ACCURACY] == pytest.approx((0.65 + 0.4) / 2)
    assert values[NOISE_DELTA_LOSS] == pytest.approx((1.0 + 0.5) / 2)
    assert values[ROBUST_ACCURACY] == pytest.approx(0.35)
    assert values[CORRUPTED_ACCURACY] == pytest.approx((0.7 + 0.5) / 2)


def test_a_rise_that_does_not_separate_from_the_base_is_no_rise_however_steep_the_fall() -> None:
    """The sweet spot's +6 pp is within its seeds' spread (Holm p = 0.12): a clear fall after it shows nothing."""
    curve = _curve(CLEAN_ACCURACY, [BASE_80, [0.82, 0.86, 0.90], [0.599, 0.600, 0.601]])
    assert not curve.sweet_spot.significant
    finding = rises_then_falls(curve)
    assert finding.verdict is Verdict.INCONCLUSIVE and "does not separate" in finding.reason, finding


@pytest.mark.parametrize("gap", [-0.003, 0.003])
def test_c5_counts_a_gap_between_the_schedules_only_beyond_the_margin(tmp_path: Path, gap: float) -> None:
    """Posttrain 0.3 pp below (or above) static at one point, with seeds so close that the gap is significant:
    a gap within the 1 pp margin decides neither way, as for every other claim."""
    flat = (0.90,) * 6
    posttrain = tuple(0.90 + gap * (index == 2) for index in range(6))
    verdict = _only(write_study(tmp_path, {"static": flat, "posttrain": posttrain}, jitter=(-0.0001, 0.0, 0.0001)),
                    "c5")
    assert verdict.verdict is Verdict.INCONCLUSIVE, verdict.finding
    assert "by no more than the margin (1.00 pp)" in verdict.finding.reason
    assert "within the margin at w=512" in verdict.finding.evidence


def test_the_json_rows_are_the_curves_numbers_and_round_trip_infinities(tmp_path: Path) -> None:
    """Every JSON row holds its point's mean, interval, difference, raw and Holm p, seed count and sweet spot as
    computed; an overflowed base makes the others' ΔL difference −∞, which must come back as -inf, not +inf."""
    study = write_study(tmp_path, {"static": RISE_THEN_FALL}, delta_loss=(0.5, 0.55, 0.6, 0.65, 0.7, 0.8), seeds=3)
    for seed in range(3):
        _overflow(study, [128], seed=seed)
    analysis = analyse(load_study(study))
    data = json.loads(json.dumps(claims_json(analysis), allow_nan=False))
    (curves,) = analysis.curves.values()
    written = {curve["measure"]: curve["points"] for curve in data["measures"]}
    assert set(written) == {measure.label for measure in curves}
    for measure, curve in curves.items():
        for row, point in zip(written[measure.label], curve.points, strict=True):
            numbers = {"mean": point.interval.mean, "ci_low": point.interval.low, "ci_high": point.interval.high}
            if not point.is_base:
                numbers |= {"difference_from_base": point.versus_base.estimate, "p_value": point.versus_base.p_value,
                            "difference_ci_low": point.versus_base.low, "holm_p_value": point.adjusted_p,
                            "difference_ci_high": point.versus_base.high}
            for key, value in numbers.items():
                read = math.nan if row[key] is None else float(row[key])
                assert read == pytest.approx(value, nan_ok=True), (measure.label, point.label, key)
            assert (row["point"], row["seeds"], row["base"]) == (point.label, point.interval.n, point.is_base)
            assert row["sweet_spot"] is (point is curve.sweet_spot)
    delta_loss = curves[NOISE_DELTA_LOSS].point_at(512, 1)
    assert delta_loss.versus_base.estimate == -math.inf
    [row] = [row for row in written[NOISE_DELTA_LOSS.label] if row["point"] == "w=512"]
    assert (row["mean"], row["difference_from_base"]) == (pytest.approx(0.6 + sum(JITTER[:3]) / 3), "-Infinity")
    assert any(row["sweet_spot"] for rows in written.values() for row in rows)


def test_combined_studies_keep_each_trials_tables_under_its_prefixed_id(tmp_path: Path) -> None:
    """Every per-trial table is keyed like the trials: an unprefixed class recall would match no trial, and the
    class-recall comparison of the combined report would silently vanish."""
    static = write_study(tmp_path / "static", {"static": RISE_THEN_FALL}, name="static-study")
    posttrain = write_study(tmp_path / "posttrain", {"posttrain": DECLINE}, name="posttrain-study")
    combined = load_studies([static, posttrain])
    ids = {trial["trial_id"] for trial in combined.trials}
    assert len(ids) == len(combined.trials) == 2 * len(load_study(static).trials)
    for table in (combined.class_recall, combined.weight_noise):
        assert set(table) == ids
    assert [group.schedule for group in analyse(combined).recall] == ["posttrain", "static"]


def test_a_pipe_in_a_cell_is_escaped_not_a_new_column(tmp_path: Path) -> None:
    """Scopes and reasons are free text: a '|' in one must stay inside its cell."""
    analysis = analyse(load_study(write_study(tmp_path, {"static": RISE_THEN_FALL})))
    piped = dataclasses.replace(analysis, claims=[dataclasses.replace(entry, scope=f"{entry.scope} | a\nb")
                                                  for entry in analysis.claims])
    rows = [line for line in claims_markdown(piped).splitlines()
            if line.startswith("| c") and not line.startswith("| claim |")]
    assert rows and all(row.replace("\\|", "").count("|") == 7 and "\\| a b |" in row for row in rows)


def test_a_best_point_significantly_worse_while_another_interval_is_open_is_said_so() -> None:
    """ΔL of the best sparse point is precisely above the base's; a second point is so noisy its interval still
    allows a gain of the margin: inconclusive (not every interval excludes the gain), and the reason says the
    best point is worse, not that it fails to separate."""
    curve = _curve(NOISE_DELTA_LOSS, [[0.50, 0.50, 0.50], [0.60, 0.61, 0.62], [0.10, 0.90, 1.40]])
    finding = improves_with_sparsity(curve)
    assert finding.verdict is Verdict.INCONCLUSIVE, finding
    assert finding.reason == ("even the best sparse point is significantly worse than the base, but the interval at "
                              f"{curve.points[2].where} does not rule out a gain of the margin")
    fall = rises_then_falls(_curve(CLEAN_ACCURACY, [BASE_80, [0.77, 0.771, 0.772], [0.50, 0.75, 0.90]]))
    assert fall.verdict is Verdict.INCONCLUSIVE and fall.reason.startswith("even the best sparse point is "), fall
    noisy = improves_with_sparsity(_curve(NOISE_DELTA_LOSS, [[0.50, 0.50, 0.50], [0.30, 0.55, 0.80]]))
    assert noisy.reason == "the best sparse point does not separate from the base", noisy


def test_c4_shows_the_point_that_decides_it() -> None:
    """The first significantly inferior point is the one named and shown, not another with a wider interval."""
    curve = _curve(MIN_CLASS_RECALL, [HIGH_RECALL, [0.70, 0.701, 0.699], [0.40, 0.85, 0.95]])
    finding = recall_not_inferior(curve, None, [])
    assert finding.verdict is Verdict.FAILS, finding
    assert finding.reason.endswith(f"at {curve.points[1].where}, before clean accuracy collapses")
    assert finding.evidence.startswith(f"inferior {curve.points[1].where}: -15.00 pp [-15.23 pp, -14.77 pp]")


def test_c4_says_nothing_where_the_base_never_predicts_some_class() -> None:
    """A minimum recall of 0 at the base cannot fall: zero-width intervals at the floor are no non-inferiority."""
    finding = recall_not_inferior(_curve(MIN_CLASS_RECALL, [[0.0] * 3, [0.0] * 3, [0.0] * 3]), None, [])
    assert finding.verdict is Verdict.INCONCLUSIVE and "minimum class recall is 0 in every seed" in finding.reason


def test_a_combined_report_lists_each_studys_versions_as_text(tmp_path: Path) -> None:
    """Each study's versions on one line of the Versions table, not as the JSON the database holds."""
    directories = [write_study(tmp_path / name, {schedule: FLAT}, name=name)
                   for name, schedule in (("static", "static"), ("posttrain", "posttrain"))]
    for directory in directories:
        StudyDatabase.create(directory).write_metadata({"versions": {"torch": "2.13.0", "sparsecap": "0.1.0"}})
    html = write_report(*directories, out=tmp_path / "both").read_text(encoding="utf-8")
    table = html[html.index('<table id="versions-table">'):]
    table = table[:table.index("</table>")]
    assert table.count("sparsecap 0.1.0, torch 2.13.0") == 2 and "{" not in table


def test_c5_shows_the_closest_comparison_where_the_schedules_do_not_separate() -> None:
    """No point differs significantly: the evidence still shows the comparison nearest to deciding (lowest Holm p),
    so a reader can see how far from a verdict the schedules are."""
    static = _curve(CLEAN_ACCURACY, [[0.90, 0.91, 0.89], [0.90, 0.91, 0.89], [0.86, 0.88, 0.84]], STATIC)
    posttrain = _curve(CLEAN_ACCURACY, [[0.90, 0.91, 0.89], [0.80, 0.95, 0.88], [0.85, 0.87, 0.83]], POSTTRAIN)
    finding = degrades_sooner(posttrain, static)
    assert finding.reason == "the two schedules do not separate", finding
    gaps = [welch_difference(posttrain.points[index].values, static.points[index].values) for index in (1, 2)]
    closest = 1 + min(range(2), key=lambda index: gaps[index].p_value)
    assert f"; closest (smallest unadjusted p) at {posttrain.points[closest].where}, posttrain − static: " in finding.evidence
    assert finding.evidence.count("closest (smallest unadjusted p) at") == 1
