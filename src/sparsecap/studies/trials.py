"""Expanding a spec into trials (no torch: `sparsecap presets` counts them without it)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from sparsecap.data import DatasetName
from sparsecap.studies.spec import Family, Schedule, StudySpec


@dataclass(frozen=True)
class Trial:
    architecture: str
    dataset: DatasetName
    family: Family
    width: int
    depth: int
    schedule: Schedule
    seed: int

    @property
    def trial_id(self) -> str:
        """Readable and stable: the same trial has the same id in every run and on every executor."""
        return (
            f"{self.architecture}-{self.dataset.value}-w{self.width}-d{self.depth}"
            f"-{self.schedule.value}-s{self.seed}"
        )


def expand(spec: StudySpec) -> list[Trial]:
    """Every trial of the grid, seeds innermost so early results already span the whole grid's first point."""
    return [
        Trial(architecture, dataset, spec.family, width, depth, schedule, seed)
        for architecture in spec.architectures
        for dataset, schedule in itertools.product(spec.datasets, spec.schedules)
        for width, depth, seed in itertools.product(spec.widths_for(schedule), spec.depths_for(architecture), spec.seeds)
    ]

