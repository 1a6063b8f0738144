"""What every sparsity schedule is: a class that owns a model from its creation to its evaluation.

A schedule decides the mask (or the dense initialisation) a model starts from and how it is trained:
once (static), once then pruned (posttrain), in rounds with pruning between them (imp,
posttrain-finetune) or with a hook that moves the mask after optimiser steps (set, rigl). Training
itself is a `Fit` the schedule is handed, so the trainer knows nothing of masks and the same schedule
runs one seed at a time or several stacked. Every schedule ends with exactly the base's nonzero count,
shared over layers by the study's allocation (or ranked globally where the pruning scope says so).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch
from torch import nn

from sparsecap.sparsity.allocation import Allocation
from sparsecap.sparsity.engine import set_engine
from sparsecap.sparsity.engine_choice import Engine
from sparsecap.sparsity.initialization import initialize_
from sparsecap.sparsity.mask_granularity import MaskGranularity
from sparsecap.sparsity.pruning import magnitude_prune_
from sparsecap.sparsity.pruning_scope import PruningScope
from sparsecap.sparsity.schedule_config import DynamicConfig, Schedule
from sparsecap.training.step_hook import StepHook
from sparsecap.training.trainer import TrainingResult


@dataclass(frozen=True)
class ScheduleSettings:
    """What a schedule needs to know of its study."""

    capacity: int
    """The base's nonzero count every model ends with."""
    allocation: Allocation
    granularity: MaskGranularity
    scope: PruningScope
    dynamic: DynamicConfig
    max_epochs: int
    engine: Engine
    device_type: str
    """Where the model trains: `engine = "auto"` decides per device (`set_engine`)."""


class Fit(Protocol):
    """Train `models` (one per seed, same architecture) in place for at most `epochs` epochs, with the study's
    training settings, each from its own data order (which continues from call to call). A hook is
    allowed with one model only: stacked seeds live in one program until it returns."""

    def __call__(self, models: Sequence[nn.Module], epochs: int, on_step: StepHook | None = None,
                 on_epoch: Callable[[int], None] | None = None) -> list[TrainingResult]: ...


def concatenate(first: TrainingResult, second: TrainingResult) -> TrainingResult:
    """One result for two runs of one model in turn (a training round after another)."""
    return TrainingResult(first.epoch_losses + second.epoch_losses, first.diverged or second.diverged,
                          first.seconds + second.seconds)


def fit_survivors(fit: Fit, models: Sequence[nn.Module], results: Sequence[TrainingResult],
                  epochs: int) -> list[TrainingResult]:
    """Train again, for `epochs`, the models that have not diverged; each result extended by its new epochs."""
    extended = list(results)
    alive = [index for index, result in enumerate(results) if not result.diverged]
    if alive and epochs > 0:
        for index, extra in zip(alive, fit([models[index] for index in alive], epochs), strict=True):
            extended[index] = concatenate(extended[index], extra)
    return extended


class SparsitySchedule(ABC):
    """One schedule (see the module docstring); subclasses register themselves with `register_schedule`."""

    name: ClassVar[Schedule]

    def __init__(self, settings: ScheduleSettings) -> None:
        self.settings = settings

    def prepare(self, model: nn.Module, mask_generator: torch.Generator, init_generator: torch.Generator) -> None:
        """Give the new model its starting mask and weights (by default dense, initialised)."""
        initialize_(model, init_generator)

    def can_train_seeds_together(self) -> bool:
        """Whether `train` may be handed several seeds' models to fit as one stacked program."""
        return True

    @abstractmethod
    def train(self, models: Sequence[nn.Module], fit: Fit,
              generators: Sequence[torch.Generator]) -> list[TrainingResult]:
        """Train prepared `models` in place, ending at the base's count; `generators` (one per model) are
        for the schedule's own draws (where set regrows)."""

    def store(self, model: nn.Module) -> None:
        """Store the model's layers for the study's engine, in place (call after changing masks)."""
        if set_engine(model, self.settings.engine, self.settings.device_type) is not model:
            raise ValueError("a schedule's model must not be a bare maskable layer")

    def prune(self, model: nn.Module, target: int) -> None:
        """Keep the `target` largest weights by magnitude (the study's scope and allocation), in place."""
        magnitude_prune_(model, target, self.settings.scope, self.settings.allocation)
        self.store(model)
