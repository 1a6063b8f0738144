"""What a random mask keeps or removes, as a study names it (no torch: specs are checked without it)."""

from __future__ import annotations

import enum


class MaskGranularity(str, enum.Enum):
    """What a random mask keeps or removes. Magnitude pruning (posttrain, posttrain-finetune, imp) ranks and
    removes single weights whatever the granularity; set and rigl refuse "kernel"."""

    WEIGHT = "weight"
    """Single weights: unstructured over (out, in, kernel height, kernel width); exact total."""
    KERNEL = "kernel"
    """Whole kernels ((out, in) pairs; Golubeva et al.'s io_only): total within one kernel of the target."""
