"""The study measure 'accuracy on corrupted data': the protocol's inputs, cached per study, per model.

The corrupted inputs live in ``<study>/corruptions/`` (see `sparsecap.corruptions.protocol`): generated
by the first trial that needs them, then read (memory-mapped) by every other trial and every resumed
run. Frost is skipped, with a message, unless ``$SPARSECAP_FROST`` names a frost-picture directory.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from torch import nn

from sparsecap.corruptions.protocol import MANIFEST, prepare_inputs
from sparsecap.data import DatasetName, ImageDataset
from sparsecap.robustness.corrupted_data import corrupted_data_robustness
from sparsecap.studies.spec import StudySpec

CACHE_DIRECTORY = "corruptions"


def corruption_rows(
    spec: StudySpec, model: nn.Module, dataset: ImageDataset, study_directory: Path, show_progress: bool
) -> list[dict[str, Any]]:
    """The database rows (corruption, severity, draw, accuracy, loss) of one trained model."""
    config = spec.corruptions.protocol(dataset.info.name)
    cache = Path(study_directory) / CACHE_DIRECTORY
    existed = {path.name for path in cache.glob(f"*/{MANIFEST}")} if cache.is_dir() else set()
    inputs = prepare_inputs(cache, dataset.info.name.value, dataset.test_images, config, show_progress=show_progress)
    if inputs.directory.name not in existed:  # just generated: say once what was left out
        for name, reason in inputs.skipped.items():
            print(f"corruptions: {name} skipped for {dataset.info.name.value}: {reason}", file=sys.stderr)
    return [
        {"corruption": result.corruption, "severity": result.severity, "draw": result.draw,
         "accuracy": result.accuracy,
         "loss": result.loss if math.isfinite(result.loss) else None}
        for result in corrupted_data_robustness(model, inputs, dataset.test_labels, dataset.info.num_classes)
    ]


def prepare_corruption_inputs(spec: StudySpec, datasets: dict[DatasetName, ImageDataset], used: set[DatasetName],
                              storage: Path, show_progress: bool) -> None:
    """Generate the cached corrupted inputs of the `used` datasets before trials run in parallel processes,
    which would otherwise all generate them at once."""
    for name in used:
        prepare_inputs(storage / CACHE_DIRECTORY, name.value, datasets[name].test_images,
                       spec.corruptions.protocol(name), show_progress=show_progress)
