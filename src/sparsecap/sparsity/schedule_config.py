"""What a sparsity schedule is named and configured with: plain values, no torch, so a spec is checked
without importing it (`sparsecap.sparsity.schedules` holds the schedules themselves).

Defaults come from the papers that introduced each schedule: ζ = 0.3 and an update every 100 steps
(SET, Mocanu et al. 2018; RigL, Evci et al. 2020), RigL's updates ending at 75% of training, IMP pruning
20% of the remaining weights per round (the rate Frankle & Carbin 2018 use for fully connected layers)
and rewinding to initialisation (epoch 0, their MLP setting; Renda et al. 2020 rewind to an early epoch).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Schedule(str, enum.Enum):
    """When and how the network becomes sparse (each keeps exactly the base's nonzero count at the end)."""

    STATIC = "static"
    """A random mask drawn at initialisation, kept through training."""
    POSTTRAIN = "posttrain"
    """Dense training, then magnitude pruning to the base's count, no fine-tuning."""
    POSTTRAIN_FINETUNE = "posttrain-finetune"
    """`posttrain`, then `finetune_epochs` of training with the mask fixed."""
    SET = "set"
    """A random mask whose smallest weights are moved to random empty positions every few steps."""
    RIGL = "rigl"
    """A random mask whose smallest weights are moved to the largest dense-gradient positions."""
    IMP = "imp"
    """Iterative magnitude pruning: train dense, prune, rewind to epoch k, retrain, until the base's count."""


DYNAMIC_SCHEDULES = frozenset({Schedule.POSTTRAIN_FINETUNE, Schedule.SET, Schedule.RIGL, Schedule.IMP})
"""The schedules the [dynamic] table configures (a study without them leaves the table out)."""

MOVING_MASK_SCHEDULES = frozenset({Schedule.SET, Schedule.RIGL})
"""The schedules that move single weights during training (so whole-kernel masks cannot hold)."""


@dataclass(frozen=True)
class DynamicConfig:
    """The [dynamic] table: how the mask moves (set, rigl) and how pruning rounds go (imp, posttrain-finetune)."""

    zeta: float = 0.3
    """Fraction of each layer's kept weights dropped and regrown per update (rigl: its cosine's start)."""
    update_interval: int = 100
    """Optimiser steps between mask updates."""
    stop_fraction: float = 0.75
    """rigl: no update after this fraction of max_epochs' steps."""
    rewind_epoch: int = 0
    """imp: the epoch whose weights the kept ones are rewound to (0: the initialisation)."""
    imp_prune_fraction: float = 0.2
    """imp: fraction of the remaining weights pruned per round (the last round stops at the base's count)."""
    imp_rounds: int = 30
    """imp: at most this many prune-and-retrain rounds (30 reach the base from width 2^15 at 20%: 25 needed)."""
    finetune_epochs: int = 10
    """posttrain-finetune: epochs of training after pruning (no paper fixes it; a budget choice)."""


def imp_round_targets(total: int, capacity: int, prune_fraction: float, max_rounds: int) -> list[int]:
    """The kept count after each IMP round: a fraction of the remaining weights pruned per round, the last
    round ending at `capacity` exactly. Raises ValueError, naming what would reach it, if `max_rounds`
    rounds cannot."""
    targets, remaining = [], total
    while remaining > capacity and len(targets) <= max_rounds:
        remaining = max(capacity, math.floor(remaining * (1 - prune_fraction)))  # at least one less
        targets.append(remaining)
    if remaining > capacity or len(targets) > max_rounds:
        needed_fraction = 1 - (capacity / total) ** (1 / max_rounds)
        needed_rounds = math.ceil(math.log(capacity / total) / math.log(1 - prune_fraction))  # enough: floors help
        raise ValueError(
            f"{max_rounds} imp rounds of pruning {prune_fraction} of the remaining weights cannot reach the "
            f"base's {capacity} weights from {total}; valid: imp_rounds >= {needed_rounds} or "
            f"imp_prune_fraction >= {math.ceil(needed_fraction * 1000) / 1000} (and below 1)"
        )
    return targets
