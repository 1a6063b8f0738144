"""What a training run is configured with: plain values, no torch, so a spec is checked without importing it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class LearningRateSchedule(str, Enum):
    CONSTANT = "constant"
    """The paper's MLP setting."""
    COSINE = "cosine"
    """Cosine annealing from the initial rate to zero over max_epochs (the paper's CNN setting)."""


class Precision(str, Enum):
    """The arithmetic of training (`sparsecap.training.precision`): it changes the numbers."""

    FLOAT32 = "float32"
    """IEEE float32 everywhere, tensor-float cores off (also for CUDA convolutions, where torch allows them)."""
    TF32 = "tf32"
    """float32 storage, CUDA matrix products and convolutions on TF32 tensor cores (10-bit mantissa inputs);
    elsewhere (CPU, MPS) the same as float32."""
    BFLOAT16 = "bfloat16"
    """Mixed precision: autocast runs products and convolutions in bfloat16; weights, optimiser and losses
    stay float32."""


class BatchNormStatistics(str, Enum):
    """What a trained model's batch norms normalise with when it is evaluated (`[training] batch_norm_statistics`)."""

    RECOMPUTED = "recomputed"
    """Measured again over the training set (no augmentation) with the final weights, after any pruning."""
    RUNNING = "running"
    """The running averages kept during training (PyTorch's default; stale by a few steps, or by a pruning)."""

    @classmethod
    def recorded_value(cls, training: Mapping[str, Any]) -> Any:
        """The setting a recorded (resolved) `[training]` table ran with, as recorded (unchecked, for validation to
        name a bad one): it names the key only where recomputed, so its absence means running (the studies from
        before the setting, and those without batch norms)."""
        return training.get("batch_norm_statistics", cls.RUNNING.value)

    @classmethod
    def recorded_in(cls, training: Mapping[str, Any]) -> BatchNormStatistics:
        """`recorded_value` as a setting."""
        return cls(cls.recorded_value(training))


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
    precision: Precision = Precision.FLOAT32
    compile: bool = False
    """Train through `torch.compile(model)`: the same arithmetic up to float rounding, faster on a GPU."""
