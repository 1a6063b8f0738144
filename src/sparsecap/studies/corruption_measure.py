"""The study measure 'accuracy on corrupted data': the protocol's inputs, cached per study, per model.

The corrupted inputs live in ``<storage>/corruptions/`` (the study directory unless `--storage` says
otherwise; see `sparsecap.corruptions.protocol`): generated before any trial where trials run in worker
processes or on Ray, else by the first trial that needs them, then read (memory-mapped) by every other trial
and every resumed run. Frost (in CIFAR-C's default set) is skipped, said once when the run starts, unless ``$SPARSECAP_FROST``
names a frost-picture directory; a corruption the spec names whose file is missing is refused instead.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from sparsecap.corruptions import frost, pessimal
from sparsecap.corruptions.protocol import prepare_inputs, unavailable_corruptions
from sparsecap.data import DatasetName, ImageDataset
from sparsecap.errors import CorruptionError
from sparsecap.robustness.corrupted_data import corrupted_data_robustness
from sparsecap.studies.spec import StudySpec

CACHE_DIRECTORY = "corruptions"


def corruption_rows(
    spec: StudySpec, model: nn.Module, dataset: ImageDataset, storage: Path, show_progress: bool
) -> list[dict[str, Any]]:
    """The database rows (corruption, severity, draw, accuracy, loss) of one trained model."""
    config = spec.corruptions.protocol(dataset.info.name)
    inputs = prepare_inputs(Path(storage) / CACHE_DIRECTORY, dataset.info.name.value, dataset.test_images,
                            config, show_progress=show_progress)
    return [
        {"corruption": result.corruption, "severity": result.severity, "draw": result.draw,
         "accuracy": result.accuracy,
         "loss": result.loss if math.isfinite(result.loss) else None}
        for result in corrupted_data_robustness(model, inputs, dataset.test_labels, dataset.info.num_classes)
    ]


def skipped_corruptions(spec: StudySpec) -> list[str]:
    """Before anything runs, what the corruption measure will leave out for want of a user-supplied file
    (frost pictures, the pessimal-noise matrix), one line each. A corruption the spec names is refused instead:
    it was asked for."""
    if not spec.corruptions.enabled:
        return []
    frost_directory, pessimal_matrix = frost.frost_directory(), pessimal.matrix_path()
    lines = []
    for dataset in spec.datasets:
        config = spec.corruptions.protocol(dataset)
        missing = unavailable_corruptions(config.corruptions, config.suite, frost_directory, pessimal_matrix)
        if missing and spec.corruptions.corruptions is not None:
            raise CorruptionError(f"[corruptions] on {dataset.value}: {'; '.join(missing.values())}; nothing was run")
        lines += [f"corruptions: {name} skipped for {dataset.value}: {reason}" for name, reason in missing.items()]
    return lines


def prepare_corruption_inputs(spec: StudySpec, datasets: dict[DatasetName, ImageDataset], used: set[DatasetName],
                              storage: Path, show_progress: bool) -> None:
    """Generate the cached corrupted inputs of the `used` datasets before trials run in parallel processes,
    which would otherwise all generate them at once."""
    for name in used:
        prepare_inputs(storage / CACHE_DIRECTORY, name.value, datasets[name].test_images,
                       spec.corruptions.protocol(name), show_progress=show_progress)
