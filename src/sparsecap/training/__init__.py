"""Training: SGD with momentum, the paper's schedules and stopping rules."""

from sparsecap.training.trainer import (
    LearningRateSchedule,
    TrainingConfig,
    TrainingResult,
    to_pixels,
    train,
)

__all__ = ["LearningRateSchedule", "TrainingConfig", "TrainingResult", "to_pixels", "train"]
