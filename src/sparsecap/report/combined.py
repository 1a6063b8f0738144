"""Several study directories read as one: static sparsity in one study, post-training pruning in another.

Studies combine only when their results answer the same question: the same datasets, the same base nonzero
count for every (architecture, dataset) they share, the same settings for everything that decides a trial's
numbers beyond its place in the grid (`compared_settings`: training and test subsets, learning rate, stopping
rule, precision, masks' allocation, weight-noise draws, attack and corruption protocols where both measure
them, ...), and, where they share an architecture with batch norms, the same batch-norm statistics (a sparse
VGG can score 0.10 on running statistics and 0.83 on recomputed ones: mixed seeds would measure the setting,
not sparsity). Anything else is refused with the difference named. A trial present in two studies (the same
architecture, dataset, family, point, schedule and seed) would count one seed twice, so that is refused too.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sparsecap.errors import StudyDirectoryError
from sparsecap.models.architectures import architecture_family
from sparsecap.report.aggregate import StudyResults, load_study
from sparsecap.studies.spec import compared_settings
from sparsecap.training.config import BatchNormStatistics

TRIAL_KEY = ("architecture", "dataset", "family", "width", "depth", "schedule", "seed")


def _different_setting(first: StudyResults, other: StudyResults, labels: tuple[str, str]) -> str | None:
    """The first setting both studies record with different values, as a reason naming them by `labels`; None if
    none."""
    settings = [compared_settings(results.spec) for results in (first, other)]
    for key in sorted(settings[0].keys() & settings[1].keys()):
        if settings[0][key] != settings[1][key]:
            return f"different {key}: {labels[0]} has {settings[0][key]}, {labels[1]} has {settings[1][key]}"
    return None


def incompatibility(first: StudyResults, other: StudyResults, labels: tuple[str, str]) -> str | None:
    """What makes two studies' results incomparable, naming them by `labels` (`_labels`: their names, or their
    directories' where the names repeat), or None."""
    datasets = [sorted({str(trial["dataset"]) for trial in results.trials}) for results in (first, other)]
    if datasets[0] != datasets[1]:
        return f"different datasets: {labels[0]} has {', '.join(datasets[0])}, {labels[1]} has {', '.join(datasets[1])}"
    bases = [{(trial["architecture"], trial["dataset"]): trial["base_nonzero"] for trial in results.trials}
             for results in (first, other)]
    for key in sorted(bases[0].keys() & bases[1].keys()):
        if bases[0][key] != bases[1][key]:
            return (f"different bases for {key[0]} on {key[1]}: {labels[0]} keeps {bases[0][key]} nonzero weights, "
                    f"{labels[1]} keeps {bases[1][key]}")
    setting = _different_setting(first, other, labels)
    if setting is not None:
        return setting
    shared = {str(trial["architecture"]) for trial in first.trials} & {str(trial["architecture"]) for trial in other.trials}
    statistics = [BatchNormStatistics.recorded_in(results.spec.get("training") or {}).value
                  for results in (first, other)]
    if statistics[0] != statistics[1] and any(architecture_family(name).batch_norm for name in shared):
        return (f"different batch-norm statistics: {labels[0]} evaluates its CNNs on {statistics[0]} ones, "
                f"{labels[1]} on {statistics[1]} ones ([training] batch_norm_statistics)")
    return None


def _labels(studies: Sequence[StudyResults]) -> list[str]:
    """What tells the studies apart in trial ids: their names or, where one spec ran twice (a preset with
    different --set values, each into its own --out), their directories' names."""
    for labels in ([results.name for results in studies], [results.directory.name for results in studies]):
        if len(set(labels)) == len(labels):
            return labels
    raise StudyDirectoryError(
        f"the studies must differ in name or in directory name to be combined (trial ids are prefixed by one), "
        f"got names {', '.join(results.name for results in studies)} in "
        f"{', '.join(str(results.directory) for results in studies)}")


def combine_studies(studies: Sequence[StudyResults]) -> StudyResults:
    """One `StudyResults` holding every trial of the given studies, trial ids prefixed by their study's label
    (its name, or its directory's where names repeat)."""
    if len(studies) == 1:
        return studies[0]
    labels = _labels(studies)
    pairs = itertools.combinations(zip(labels, studies), 2)  # every pair: two may share what the first lacks
    for (first_label, first), (other_label, other) in pairs:
        problem = incompatibility(first, other, (first_label, other_label))
        if problem:
            raise StudyDirectoryError(f"cannot combine {first.directory} and {other.directory}: {problem}")
    seen: dict[tuple[Any, ...], str] = {}
    for label, results in zip(labels, studies):
        for trial in results.trials:
            key = tuple(trial[column] for column in TRIAL_KEY)
            if key in seen and seen[key] != label:
                raise StudyDirectoryError(f"{seen[key]} and {label} both hold trial {trial['trial_id']}: "
                                          f"give each trial in one study only")
            seen[key] = label
    labelled = list(zip(labels, studies))

    def prefixed(table: str) -> dict[str, Any]:
        return {f"{label}/{trial_id}": rows for label, results in labelled
                for trial_id, rows in getattr(results, table).items()}

    return StudyResults(
        directory=Path(" + ".join(str(results.directory) for results in studies)),
        metadata={
            "spec": {"name": " + ".join(labels), "training": studies[0].spec.get("training"),
                     "studies": {label: results.spec for label, results in labelled}},
            "versions": {label: results.versions for label, results in labelled},
        },
        trials=[{**trial, "trial_id": f"{label}/{trial['trial_id']}"}
                for label, results in labelled for trial in results.trials],
        class_recall=prefixed("class_recall"),
        weight_noise=prefixed("weight_noise"),
        adversarial=prefixed("adversarial"),
        corruption=prefixed("corruption"),
        damaged_checkpoints=prefixed("damaged_checkpoints"),
        unfinished_trials=tuple(f"{label}/{trial_id}" for label, results in labelled
                             for trial_id in results.unfinished_trials),
    )


def check_distinct(directories: Sequence[Path]) -> None:
    """Refuse a study directory named twice (a slip: each of its trials would count twice), by where it is."""
    seen: dict[Path, Path] = {}
    for directory in map(Path, directories):
        if directory.resolve() in seen:
            raise StudyDirectoryError(f"{seen[directory.resolve()]} and {directory} are the same study directory; "
                                      f"name each study once")
        seen[directory.resolve()] = directory


def load_studies(directories: Sequence[Path]) -> StudyResults:
    """Read one study directory, or several combined (each refused, with its reason, if it is not one)."""
    if not directories:
        raise StudyDirectoryError("no study directory given; expected one or more directories holding results.sqlite")
    check_distinct(directories)
    return combine_studies([load_study(Path(directory)) for directory in directories])
