"""What a training run is configured with: plain values, no torch, so a spec is checked without importing it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
