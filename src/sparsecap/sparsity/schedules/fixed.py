"""Schedules whose mask never moves while training runs: static, posttrain and posttrain-finetune."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sparsecap.sparsity.schedule_config import Schedule
from sparsecap.sparsity.schedules.base import Fit, SparsitySchedule, fit_survivors
from sparsecap.sparsity.schedules.registry import register_schedule
from sparsecap.sparsity.static import sparse_model_at_init
from sparsecap.training.trainer import TrainingResult


@register_schedule
class Static(SparsitySchedule):
    """The paper's static schedule: a random mask at initialisation (the study's allocation and
    granularity), weights drawn for it, trained with the mask fixed."""

    name = Schedule.STATIC

    def prepare(self, model: nn.Module, mask_generator: torch.Generator, init_generator: torch.Generator) -> None:
        settings = self.settings
        sparse_model_at_init(model, settings.capacity, settings.allocation, mask_generator, init_generator,
                             settings.granularity)

    def train(self, models: Sequence[nn.Module], fit: Fit,
              generators: Sequence[torch.Generator]) -> list[TrainingResult]:
        return fit(models, self.settings.max_epochs)


@register_schedule
class PostTrain(SparsitySchedule):
    """The paper's post-training schedule: dense training, then one-shot magnitude pruning to the base's count."""

    name = Schedule.POSTTRAIN

    def train(self, models: Sequence[nn.Module], fit: Fit,
              generators: Sequence[torch.Generator]) -> list[TrainingResult]:
        results = fit(models, self.settings.max_epochs)
        for model in models:
            self.prune(model, self.settings.capacity)
        return results


@register_schedule
class PostTrainFinetune(PostTrain):
    """`posttrain`, then `finetune_epochs` of training with the mask fixed (fresh momentum, the study's
    learning-rate schedule over those epochs, the same stopping rule): pruning without the paper's
    "no fine-tuning"."""

    name = Schedule.POSTTRAIN_FINETUNE

    def train(self, models: Sequence[nn.Module], fit: Fit,
              generators: Sequence[torch.Generator]) -> list[TrainingResult]:
        return fit_survivors(fit, models, super().train(models, fit, generators), self.settings.dynamic.finetune_epochs)
