"""When a training run counts as diverged: its numbers are then no model's, and stay out of statistics.

A network that guesses uniformly scores ln(C) on C classes, and a freshly initialised one is near that.
An epoch whose mean training cross-entropy is non-finite, or more than `DIVERGENCE_FACTOR` times
ln(C) (23 for 10 classes, 46 for 100), is a run that blew up, not a model that learns slowly: with a
learning rate of 100 such runs reach 678, 4e12 and 2e24 at chance accuracy. Training stops there.
"""

from __future__ import annotations

import math

DIVERGENCE_FACTOR = 10.0


def divergence_bound(num_classes: int) -> float:
    return DIVERGENCE_FACTOR * math.log(num_classes)


def has_diverged(epoch_loss: float, num_classes: int) -> bool:
    return not math.isfinite(epoch_loss) or epoch_loss > divergence_bound(num_classes)
