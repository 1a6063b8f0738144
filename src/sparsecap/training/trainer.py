"""Full-batch-in-memory SGD training with the paper's stopping rule.

Images stay uint8 in memory and are scaled per batch; one permutation per epoch from the trial's own
generator fixes the data order, so the same seed gives the same run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as functional
from torch import nn

from sparsecap.training.augmentation import random_crop_and_flip


class LearningRateSchedule(str, Enum):
    CONSTANT = "constant"
    """The paper's MLP setting."""
    COSINE = "cosine"
    """Cosine annealing from the initial rate to zero over max_epochs (the paper's CNN setting)."""


@dataclass(frozen=True)
class TrainingConfig:
    max_epochs: int = 300
    learning_rate: float = 0.01
    momentum: float = 0.9
    batch_size: int = 128
    stop_loss: float = 0.01
    """Stop once an epoch's mean training cross-entropy falls below this."""
    schedule: LearningRateSchedule = LearningRateSchedule.CONSTANT
    augmentation: bool = False
    """Random crop and horizontal flip of every training batch."""


@dataclass
class TrainingResult:
    epoch_losses: list[float] = field(default_factory=list)
    diverged: bool = False
    seconds: float = 0.0

    @property
    def epochs(self) -> int:
        return len(self.epoch_losses)

    @property
    def final_loss(self) -> float | None:
        return self.epoch_losses[-1] if self.epoch_losses else None


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float pixels in [0, 1] (the models' input space)."""
    return images.float().div_(255.0)


EpochCallback = Callable[[int, float], None]


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainingConfig,
    generator: torch.Generator,
    on_epoch: EpochCallback | None = None,
) -> TrainingResult:
    """Train in place with SGD + momentum until max_epochs or the loss threshold; NaN/inf stops as diverged."""
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)
    scheduler = None
    if config.schedule is LearningRateSchedule.COSINE:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    result = TrainingResult()
    started = time.perf_counter()
    model.train()
    for epoch in range(config.max_epochs):
        loss_sum, seen = 0.0, 0
        for batch in torch.randperm(len(labels), generator=generator).split(config.batch_size):
            batch_images = images.index_select(0, batch)  # ~10x faster than images[batch] on uint8
            if config.augmentation:
                batch_images = random_crop_and_flip(batch_images, generator)
            loss = functional.cross_entropy(model(to_pixels(batch_images)), labels[batch])
            if not math.isfinite(loss.item()):
                result.diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
            seen += len(batch)
        if result.diverged:
            result.epoch_losses.append(math.nan)
            break
        result.epoch_losses.append(loss_sum / seen)
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch + 1, result.epoch_losses[-1])
        if result.epoch_losses[-1] < config.stop_loss:
            break
    result.seconds = time.perf_counter() - started
    model.eval()
    return result
