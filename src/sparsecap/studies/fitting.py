"""The `Fit` a trial's schedule trains with: the study's training settings, each trial's own data order
(continuing from one round to the next) and the epoch report; one model through `train` (without its unread
units where no hook watches: `sparsecap.sparsity.unread_units`), several seeds' models stacked through
`train_together`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from torch import nn

from sparsecap.data import ImageDataset
from sparsecap.sparsity.schedules import Fit
from sparsecap.sparsity.unread_units import trained_without_unread_units
from sparsecap.studies.generators import trial_generators
from sparsecap.studies.spec import StudySpec
from sparsecap.studies.trials import Trial
from sparsecap.training import TrainingResult, train
from sparsecap.training.multiseed import train_together
from sparsecap.training.step_hook import StepHook


EpochDone = Callable[[float, int], None]
"""Called after each epoch with its training loss (the worst of stacked seeds) and how many models still train."""


def study_fit(spec: StudySpec, dataset: ImageDataset, trials: Sequence[Trial], models: Sequence[nn.Module],
              epoch_done: EpochDone) -> Fit:
    """How `models` (those of `trials`, in order) are trained, whichever subset a schedule hands over."""
    orders = {id(model): trial_generators(trial.seed).data_order for trial, model in zip(trials, models, strict=True)}

    def fit(chosen: Sequence[nn.Module], epochs: int, on_step: StepHook | None = None,
            on_epoch: Callable[[int], None] | None = None) -> list[TrainingResult]:
        config = dataclasses.replace(spec.training.config(), max_epochs=epochs)
        generators = [orders[id(model)] for model in chosen]
        if len(chosen) == 1:

            def one_done(epoch: int, loss: float) -> None:
                epoch_done(loss, 1)
                if on_epoch is not None:
                    on_epoch(epoch)

            if on_step is not None or on_epoch is not None:  # hooks that move masks or read the model
                return [train(chosen[0], dataset.train_images, dataset.train_labels, config, generators[0],
                              one_done, on_step)]
            with trained_without_unread_units(chosen[0]) as narrowed:  # the same run, bit for bit, faster
                return [train(narrowed, dataset.train_images, dataset.train_labels, config, generators[0], one_done)]
        if on_step is not None or on_epoch is not None:
            raise ValueError("stacked seeds are one program until it returns: no step or epoch hook reaches them")

        def stacked_done(epoch: int, losses: list[float]) -> None:
            epoch_done(max(losses), len(losses))

        return train_together(chosen, dataset.train_images, dataset.train_labels, config, generators, stacked_done)

    return fit
