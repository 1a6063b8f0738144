"""What `train` tells a per-step hook: the seam through which a schedule acts during training (moving a
mask, say) while the trainer knows nothing of masks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Step:
    """One optimiser step taken, with another about to be: training does not end on a hook's change."""

    number: int
    """Steps taken so far, this one included (1, 2, ...)."""
    planned: int
    """Steps that max_epochs of training take (the run may stop earlier by its stopping rule)."""
    optimizer: torch.optim.Optimizer
    """The optimiser, whose per-parameter state a hook that rearranges parameters must rearrange too."""
    batch_loss: Callable[[], torch.Tensor]
    """The step's batch loss recomputed at the current weights, differentiable (a hook's extra pass)."""


StepHook = Callable[[Step], None]
