"""Read a study's results database and reduce it to per-point statistics over seeds.

A *group* is one (architecture, dataset, family, schedule); a *point* is one (width, depth) of a group.
Only finished trials enter the statistics; diverged ones are counted. Per trial, weight-noise results
are first averaged over draws; then mean and sample standard deviation are taken over seeds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsecap.errors import SpecError, StudyDirectoryError
from sparsecap.report.class_recall import ClassRecallChange, normalised_recall_changes
from sparsecap.report.statistics import Interval, interval_of, mean_spread_count, observed_mean
from sparsecap.studies.checkpoints import kept_checkpoint_problems
from sparsecap.studies.database import DATABASE_FILE, DIVERGED, FAILED, FINISHED, STORAGE_KEY, StudyDatabase
from sparsecap.studies.spec import STUDY_FILE, parse_spec, spec_data_of_record
from sparsecap.studies.trials import expand
from sparsecap.training.divergence import DIVERGENCE_FACTOR


def stop_loss_of(results: StudyResults) -> float:
    training = results.spec.get("training")
    return float(training.get("stop_loss", 0.0)) if isinstance(training, dict) else 0.0


def under_trained(trial: dict[str, Any], stop_loss: float) -> bool:
    """Finished, yet its last epoch's loss is not below the stopping rule's: it ran out of epochs."""
    loss = trial.get("final_train_loss")
    return trial["status"] == FINISHED and loss is not None and float(loss) >= stop_loss


def under_trained_note(trials: Iterable[dict[str, Any]], stop_loss: float) -> str | None:
    """How many finished trials max_epochs ended before the stopping rule, and after how many epochs: said by
    `run` and on the page, since their points show how far training got rather than what sparsity does."""
    finished = [trial for trial in trials if trial["status"] == FINISHED]
    short = [trial for trial in finished if under_trained(trial, stop_loss)]
    if not short:
        return None
    epochs = sorted({int(trial["epochs"]) for trial in short})
    after = str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"
    return (f"{len(short)} of {len(finished)} finished trials are under-trained: max_epochs ended them after "
            f"{after} epoch{'' if epochs == [1] else 's'} with a training loss not below stop_loss ({stop_loss:g})")


def _number(value: Any) -> float:
    """A database value as a float, None becoming NaN."""
    if value is None:
        return math.nan
    return float(value)


@dataclass(frozen=True)
class Stat:
    """Mean and spread of one quantity over seeds (missing entries, None or NaN, are left out; an infinite one,
    a loss that overflowed, makes the mean infinite and the spread NaN)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        return cls(*mean_spread_count(values))

    @property
    def present(self) -> bool:
        return self.n > 0 and math.isfinite(self.mean)

    @property
    def interval(self) -> Interval:
        """The mean's 95% Student-t interval (undefined with one seed)."""
        return interval_of(self.mean, self.std, self.n)

    def format(self, digits: int = 3) -> str:
        if self.n and math.isinf(self.mean):
            return "∞" if self.mean > 0 else "−∞"
        if not self.present:
            return "—"
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def surviving_path_fraction(trial: dict[str, Any]) -> float | None:
    """A trial's log10 path fraction where any path survives; None for a severed mask (-inf), which is counted
    apart (`n_severed`): one severed seed would otherwise turn the point's mean into -inf."""
    value = trial.get("path_fraction_log10")
    return None if value == -math.inf else value


def is_dense(remaining_percent: float) -> bool:
    """All weights remain: the dense base model of its group."""
    return math.isclose(remaining_percent, 100.0, abs_tol=1e-6)


@dataclass(frozen=True, order=True)
class GroupKey:
    """The panel a point belongs to."""

    architecture: str
    dataset: str
    family: str
    schedule: str

    @property
    def label(self) -> str:
        return f"{self.architecture} · {self.dataset} · {self.family} family · {self.schedule}"


@dataclass(frozen=True)
class PointSummary:
    """One (width, depth) point of a group, over seeds."""

    group: GroupKey
    width: int
    depth: int
    remaining_percent: float
    seeds: tuple[int, ...]
    """Seeds of the finished trials."""
    n_diverged: int
    clean_accuracy: Stat
    min_class_recall: Stat
    path_fraction_log10: Stat
    """log10 of the kept fraction of input-to-output paths, over the seeds where any path survives."""
    n_severed: int
    """Finished seeds whose mask keeps no input-to-output path at all (log10 fraction -inf)."""
    min_effective_width_fraction: Stat
    epochs: Stat = Stat(math.nan, math.nan, 0)
    """Epochs trained, over the finished seeds."""
    n_under_trained: int = 0
    """Finished seeds that max_epochs ended before the stopping rule (`under_trained`)."""
    noise_accuracy: dict[float, Stat] = field(default_factory=dict)
    noise_delta_loss: dict[float, Stat] = field(default_factory=dict)
    adversarial_accuracy: dict[tuple[str, float], Stat] = field(default_factory=dict)
    """(attack, epsilon) -> robust accuracy over seeds."""
    corruption_accuracy: dict[tuple[str, int], Stat] = field(default_factory=dict)
    """(corruption, severity) -> accuracy on corrupted data (per trial the mean over draws), over seeds."""
    corruption_mean: dict[int | None, Stat] = field(default_factory=dict)
    """Mean accuracy over corruptions (identity left out): None -> over every evaluated severity; a severity
    -> at that severity (only where every corruption was evaluated at the same severities, as in CIFAR-C)."""

    @property
    def n_finished(self) -> int:
        return len(self.seeds)

    @property
    def is_base(self) -> bool:
        """The dense base model of its group (all weights remain)."""
        return is_dense(self.remaining_percent)

    @property
    def label(self) -> str:
        """'w=64' in a width family, 'd=3' in a depth family."""
        if self.group.family == "depth":
            return f"d={self.depth}"
        return f"w={self.width}"


@dataclass(frozen=True)
class PointRecallAnalysis:
    """The class-recall changes of one non-base point against the dense base of its group."""

    point: PointSummary
    base: PointSummary
    changes: list[ClassRecallChange]


@dataclass
class StudyResults:
    """Everything the report needs, read once from the database."""

    directory: Path
    metadata: dict[str, Any]
    trials: list[dict[str, Any]]
    class_recall: dict[str, list[float]]
    """trial_id -> recall per class index (NaN where a class is missing)."""
    weight_noise: dict[str, list[dict[str, Any]]]
    adversarial: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """trial_id -> its adversarial rows (attack, epsilon, robust_accuracy, ...)."""
    corruption: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """trial_id -> its corrupted-data rows (corruption, severity, draw, accuracy, loss)."""
    damaged_checkpoints: dict[str, str] = field(default_factory=dict)
    """trial_id -> what is wrong with its checkpoint (missing, or not the file that was written)."""
    unfinished_trials: tuple[str, ...] = ()
    """Planned trials without a result: recorded as failed, or with no record (a run was stopped before them)."""

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.metadata.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.directory.name)

    @property
    def versions(self) -> dict[str, Any]:
        versions = self.metadata.get("versions")
        return versions if isinstance(versions, dict) else {}

    def trials_with_status(self, status: str) -> list[dict[str, Any]]:
        return [trial for trial in self.trials if trial["status"] == status]


def find_unfinished_trials(recorded_spec: Any, trials: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The planned trials without a result, in the grid's order: those `trials` record as failed and those they
    lack. Where the record is not a spec this version reads, only the failed (nothing can be said of the plan)."""
    failed = [trial["trial_id"] for trial in trials if trial["status"] == FAILED]
    if not isinstance(recorded_spec, dict):
        return tuple(failed)
    try:
        spec = parse_spec(spec_data_of_record(recorded_spec), "recorded in the study")
    except SpecError:
        return tuple(failed)
    with_result = {trial["trial_id"] for trial in trials if trial["status"] != FAILED}
    return tuple(trial.trial_id for trial in expand(spec) if trial.trial_id not in with_result)


def incomplete_warning(results: StudyResults) -> str | None:
    """Said wherever verdicts are shown: a stopped run or failed trials leave figures and claims resting on part
    of the study."""
    unfinished = results.unfinished_trials
    if not unfinished:
        return None
    failed = len({trial["trial_id"] for trial in results.trials_with_status(FAILED)} & set(unfinished))
    with_result = len(results.trials) - failed
    kinds = ", ".join(f"{count} {kind}" for count, kind in ((failed, "failed"), (len(unfinished) - failed, "not run"))
                      if count)
    how = ("`sparsecap run DIRECTORY/study.json` for each study" if "studies" in results.spec
           else f"`sparsecap run {results.directory / STUDY_FILE}`")
    retried = ", which retries the failed (their errors are in the database's trials.error)" if failed else ""
    return (f"{results.name} is incomplete: {len(unfinished)} of its {len(unfinished) + with_result} planned "
            f"trial(s) have no result ({kinds}; e.g. {unfinished[0]}), so its figures and verdicts rest on the "
            f"{with_result} that have one; to finish it, rerun {how}{retried}")


def load_study(study_directory: Path) -> StudyResults:
    """Read a study directory's results database.

    Raises StudyDirectoryError when there is no database or it holds no finished trial.
    """
    directory = Path(study_directory)
    database_path = directory / DATABASE_FILE
    if not directory.is_dir():
        raise StudyDirectoryError(
            f"{directory} {'is not a directory' if directory.exists() else 'does not exist'}; expected a study "
            f"directory holding {DATABASE_FILE}"
        )
    database = StudyDatabase(directory)  # read-only: refuses, changing nothing, a missing or damaged database
    trials = database.rows("trials")
    if trials and all(trial["status"] == DIVERGED for trial in trials):
        raise StudyDirectoryError(
            f"all {len(trials)} trial(s) in {database_path} diverged (an epoch's training loss was non-finite "
            f"or above {DIVERGENCE_FACTOR:g} x ln(classes)), so there is nothing to summarise; rerun with a "
            f"smaller [training] learning_rate in a new --out directory"
        )
    if not any(trial["status"] == FINISHED for trial in trials):
        raise StudyDirectoryError(
            f"the results database {database_path} holds no finished trials "
            f"({len(trials)} trial(s) recorded); expected at least one trial with status '{FINISHED}'"
        )
    recall_rows: dict[str, dict[int, float]] = defaultdict(dict)
    for row in database.rows("class_recall"):
        recall_rows[row["trial_id"]][int(row["class_index"])] = _number(row["recall"])
    class_recall = {
        trial_id: [by_class.get(index, math.nan) for index in range(max(by_class) + 1)]
        for trial_id, by_class in recall_rows.items()
    }
    weight_noise: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in database.rows("weight_noise"):
        weight_noise[row["trial_id"]].append(row)
    adversarial: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in database.rows("adversarial"):
        adversarial[row["trial_id"]].append(row)
    corruption: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in database.rows("corruption"):
        corruption[row["trial_id"]].append(row)
    metadata = database.metadata()
    storage = Path(metadata.get(STORAGE_KEY) or directory)  # checkpoint paths are relative to it
    return StudyResults(
        directory=directory,
        metadata=metadata,
        trials=trials,
        damaged_checkpoints=kept_checkpoint_problems(trials, storage),
        unfinished_trials=find_unfinished_trials(metadata.get("spec"), trials),
        class_recall=dict(class_recall),
        weight_noise=dict(weight_noise),
        adversarial=dict(adversarial),
        corruption=dict(corruption),
    )


def group_key(trial: dict[str, Any]) -> GroupKey:
    return GroupKey(
        architecture=str(trial["architecture"]),
        dataset=str(trial["dataset"]),
        family=str(trial["family"]),
        schedule=str(trial["schedule"]),
    )


def model_of(trial: dict[str, Any]) -> tuple[int, int]:
    """The trial's (width, depth): its point on its group's curve."""
    return int(trial["width"]), int(trial["depth"])


def noise_per_sigma(rows: list[dict[str, Any]], column: str) -> dict[float, float]:
    """One trial's weight-noise column averaged over draws, per sigma (+inf where a draw's loss overflowed).

    A row is written only for an evaluated draw, so a NULL in it is an overflowed loss: studies recorded before
    sparsecap wrote +inf for one hold NULL there, and read the same."""
    by_sigma: dict[float, list[float]] = defaultdict(list)
    for row in rows:
        by_sigma[float(row["sigma"])].append(math.inf if row[column] is None else row[column])
    return {sigma: observed_mean(values) for sigma, values in by_sigma.items()}


CLEAN_CORRUPTION = "identity"
"""MNIST-C's identity is the clean test set: reported, but left out of the mean over corruptions."""


def robust_per_trial(rows: list[dict[str, Any]]) -> dict[tuple[str, float], float]:
    """One trial's robust accuracy per (attack, budget)."""
    return {(str(row["attack"]), float(row["epsilon"])): row["robust_accuracy"] for row in rows}


def corruption_per_trial(rows: list[dict[str, Any]]) -> tuple[dict[tuple[str, int], float], dict[int | None, float]]:
    """One trial's corrupted-data accuracy per (corruption, severity), averaged over draws, and its means.

    Means over corruptions leave out identity: None -> over every (corruption, severity); per severity only
    when all corruptions were evaluated at the same severities (CIFAR-C; not MNIST-C's published ones).
    """
    by_key: dict[tuple[str, int], list[float]] = defaultdict(list)
    for row in rows:
        by_key[(str(row["corruption"]), int(row["severity"]))].append(_number(row["accuracy"]))
    accuracy = {key: float(np.nanmean(values)) for key, values in by_key.items()}
    corrupted = {key: value for key, value in accuracy.items() if key[0] != CLEAN_CORRUPTION}
    if not corrupted:
        return accuracy, {}
    means: dict[int | None, float] = {None: float(np.mean(list(corrupted.values())))}
    severities_of: dict[str, set[int]] = defaultdict(set)
    for name, severity in corrupted:
        severities_of[name].add(severity)
    if len({frozenset(levels) for levels in severities_of.values()}) == 1:
        for severity in sorted(next(iter(severities_of.values()))):
            means[severity] = float(np.mean([value for (_, level), value in corrupted.items() if level == severity]))
    return accuracy, means


def summarise_points(results: StudyResults) -> dict[GroupKey, list[PointSummary]]:
    """Per group (sorted), its points sorted from dense (100 %) to sparsest.

    A point is listed when it has any trial; one whose trials all diverged has empty statistics.
    """
    by_point: dict[tuple[GroupKey, int, int], list[dict[str, Any]]] = defaultdict(list)
    for trial in results.trials:
        by_point[(group_key(trial), *model_of(trial))].append(trial)

    groups: dict[GroupKey, list[PointSummary]] = defaultdict(list)
    stop_loss = stop_loss_of(results)
    for (group, width, depth), trials in by_point.items():
        finished = sorted(
            (trial for trial in trials if trial["status"] == FINISHED), key=lambda trial: trial["seed"]
        )
        accuracy_per_trial = [
            noise_per_sigma(results.weight_noise.get(trial["trial_id"], []), "accuracy") for trial in finished
        ]
        delta_per_trial = [
            noise_per_sigma(results.weight_noise.get(trial["trial_id"], []), "delta_loss") for trial in finished
        ]
        sigmas = sorted({sigma for per_trial in accuracy_per_trial for sigma in per_trial})
        adversarial_per_trial = [robust_per_trial(results.adversarial.get(trial["trial_id"], [])) for trial in finished]
        budgets = list(dict.fromkeys(key for per_trial in adversarial_per_trial for key in per_trial))
        corruption_by_trial = [corruption_per_trial(results.corruption.get(trial["trial_id"], [])) for trial in finished]
        corruption_keys = list(dict.fromkeys(key for per_trial, _ in corruption_by_trial for key in per_trial))
        mean_keys = list(dict.fromkeys(key for _, means in corruption_by_trial for key in means))
        position_trials = finished or trials
        groups[group].append(
            PointSummary(
                group=group,
                width=width,
                depth=depth,
                remaining_percent=float(np.mean([trial["remaining_percent"] for trial in position_trials])),
                seeds=tuple(int(trial["seed"]) for trial in finished),
                n_diverged=sum(1 for trial in trials if trial["status"] == DIVERGED),
                clean_accuracy=Stat.of(trial["test_accuracy"] for trial in finished),
                min_class_recall=Stat.of(trial["min_class_recall"] for trial in finished),
                path_fraction_log10=Stat.of(surviving_path_fraction(trial) for trial in finished),
                n_severed=sum(1 for trial in finished if trial.get("path_fraction_log10") == -math.inf),
                min_effective_width_fraction=Stat.of(trial.get("min_effective_width_fraction") for trial in finished),
                epochs=Stat.of(trial.get("epochs") for trial in finished),
                n_under_trained=sum(under_trained(trial, stop_loss) for trial in finished),
                noise_accuracy={
                    sigma: Stat.of(per_trial.get(sigma) for per_trial in accuracy_per_trial) for sigma in sigmas
                },
                noise_delta_loss={
                    sigma: Stat.of(per_trial.get(sigma) for per_trial in delta_per_trial) for sigma in sigmas
                },
                adversarial_accuracy={
                    key: Stat.of(per_trial.get(key) for per_trial in adversarial_per_trial) for key in budgets
                },
                corruption_accuracy={
                    key: Stat.of(per_trial.get(key) for per_trial, _ in corruption_by_trial) for key in corruption_keys
                },
                corruption_mean={key: Stat.of(means.get(key) for _, means in corruption_by_trial) for key in mean_keys},
            )
        )
    return {
        group: sorted(points, key=lambda point: (-point.remaining_percent, point.width, point.depth))
        for group, points in sorted(groups.items())
    }


def noise_sigmas(points_by_group: dict[GroupKey, list[PointSummary]]) -> list[float]:
    """Every sigma that appears anywhere, ascending."""
    return sorted({sigma for points in points_by_group.values() for point in points for sigma in point.noise_accuracy})


def adversarial_budgets(points_by_group: dict[GroupKey, list[PointSummary]]) -> dict[str, list[float]]:
    """Every attack that appears anywhere (in the order recorded) with its budgets, ascending."""
    budgets: dict[str, set[float]] = {}
    for points in points_by_group.values():
        for point in points:
            for attack, epsilon in point.adversarial_accuracy:
                budgets.setdefault(attack, set()).add(epsilon)
    return {attack: sorted(epsilons) for attack, epsilons in budgets.items()}


def class_recall_analysis(
    results: StudyResults, points_by_group: dict[GroupKey, list[PointSummary]]
) -> dict[GroupKey, list[PointRecallAnalysis]]:
    """For each group with a dense base, every non-base point's class-recall changes against that base.

    Groups without a base point (remaining 100 %) or without class recalls are left out.
    """
    finished_by_point: dict[tuple[GroupKey, int, int], list[dict[str, Any]]] = defaultdict(list)
    for trial in results.trials_with_status(FINISHED):
        finished_by_point[(group_key(trial), *model_of(trial))].append(trial)

    def seeds_of(point: PointSummary) -> tuple[list[list[float]], list[float | None]]:
        trials = [
            trial
            for trial in finished_by_point.get((point.group, point.width, point.depth), [])
            if trial["trial_id"] in results.class_recall
        ]
        return [results.class_recall[trial["trial_id"]] for trial in trials], [
            trial["test_accuracy"] for trial in trials
        ]

    analysis: dict[GroupKey, list[PointRecallAnalysis]] = {}
    for group, points in points_by_group.items():
        bases = [point for point in points if point.is_base]
        if not bases:
            continue
        base = max(bases, key=lambda point: point.n_finished)
        base_recalls, base_accuracies = seeds_of(base)
        if not base_recalls:
            continue
        entries = []
        for point in points:
            if point.is_base:
                continue
            recalls, accuracies = seeds_of(point)
            if not recalls:
                continue
            changes = normalised_recall_changes(recalls, accuracies, base_recalls, base_accuracies)
            entries.append(PointRecallAnalysis(point=point, base=base, changes=changes))
        if entries:
            analysis[group] = entries
    return analysis
