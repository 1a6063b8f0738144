"""Expanding a spec into trials, and the independent random streams each trial draws from."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

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
        for dataset, schedule, width, depth, seed in itertools.product(
            spec.datasets, spec.schedules, spec.widths, spec.depths_for(architecture), spec.seeds
        )
    ]


@dataclass(frozen=True)
class TrialGenerators:
    """One generator per source of randomness, so changing one (e.g. the mask) leaves the others alone."""

    initialization: torch.Generator
    mask: torch.Generator
    data_order: torch.Generator
    weight_noise: torch.Generator


def trial_generators(seed: int) -> TrialGenerators:
    streams = np.random.SeedSequence(seed).spawn(4)
    generators = [torch.Generator().manual_seed(int(stream.generate_state(1)[0])) for stream in streams]
    return TrialGenerators(*generators)
